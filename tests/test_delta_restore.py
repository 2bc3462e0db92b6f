"""pitr restore --delta: over a stopped data directory of the same cluster,
only what differs is rewritten, and the result is the directory a full
restore writes; another cluster's directory or a running one is refused."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from tests.pgsupport import Archived, markers_in
from tests.servers import ClusterFactory

PAUSE = 1.0


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root: (sha256 of its bytes, mode). In
    postgresql.auto.conf, the line a restore stamps with its time is left
    out and the spool's name (after the directory's) made the same."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if path.name == "postgresql.auto.conf":
                data = re.sub(rb"# written by pitr restore at .*\n", b"", data)
                data = re.sub(rb"\.\w+\.pitr-spool", b".DIR.pitr-spool", data)
            found[str(path.relative_to(root))] = (
                hashlib.sha256(data).hexdigest(),
                path.stat().st_mode & 0o7777,
            )
    return found


def test_delta_restore_rewrites_only_what_changed_and_equals_a_full_restore(
    archived: Archived,
) -> None:
    archived.cluster.psql(
        "CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 100000) g"
    )
    archived.pitr("backup", "--source", "db")
    target = archived.instant_between_markers(PAUSE)

    full, changed = archived.base / "full", archived.base / "changed"
    archived.pitr("restore", "--to", target, "--pgdata", str(full))
    # A directory of the same cluster that went on living after the target.
    archived.pitr("restore", "--to", target, "--pgdata", str(changed))
    lived = archived.restored(changed)
    # A TID range scan: only the first pages are read (and their hint bits set).
    lived.psql("UPDATE big SET pad = 'changed' WHERE ctid < '(20,0)'")
    lived.psql("DELETE FROM markers; CREATE TABLE newer AS SELECT 1 AS n; CHECKPOINT")
    lived.stop()
    size = sum(p.stat().st_size for p in changed.rglob("*") if p.is_file())

    result = archived.pitr("restore", "--to", target, "--pgdata", str(changed), "--delta")
    m = re.search(r"delta restore of \d+ files .*: (.+) compared, (.+) rewritten", result.stdout)
    assert m, result.stdout
    aside = [p for p in archived.base.iterdir() if p.name.startswith("changed.pitr-aside-")]
    assert len(aside) == 1 and any(aside[0].rglob("*")), "what the backup lacks is set aside"
    assert tree(changed) == tree(full)
    rewritten = _bytes(m.group(2))
    assert 0 < rewritten < size / 4, (m.group(0), size)

    restored = archived.restored(changed)
    try:
        assert markers_in(restored) == [1]
        assert restored.psql("SELECT count(*) FROM big WHERE pad = 'changed'").strip() == "0"
    finally:
        restored.stop()


def _bytes(text: str) -> float:
    number, unit = text.split()
    return float(number) * 1024 ** ["B", "KiB", "MiB", "GiB", "TiB"].index(unit)


def test_delta_refuses_another_cluster_and_a_running_one(
    archived: Archived, pg_cluster_factory: ClusterFactory
) -> None:
    archived.pitr("backup", "--source", "db")
    archived.marker(1)
    archived.switch_and_wait()
    at = archived.marker(2).isoformat()
    archived.switch_and_wait()

    other = pg_cluster_factory(start=False)
    before = tree(other.pgdata)
    refused = archived.pitr(
        "restore", "--to", at, "--pgdata", str(other.pgdata), "--delta", check=False
    )
    assert refused.returncode == 3, refused.stderr
    assert "belongs to system" in refused.stderr and "same cluster" in refused.stderr
    assert tree(other.pgdata) == before

    running = archived.pitr(
        "restore", "--to", at, "--pgdata", str(archived.cluster.pgdata), "--delta", check=False
    )
    assert running.returncode == 3 and "is running on" in running.stderr

    # An empty or new directory: --delta is a full restore.
    fresh = archived.base / "fresh"
    archived.pitr("restore", "--to", at, "--pgdata", str(fresh), "--delta")
    assert (fresh / "PG_VERSION").is_file()
    assert os.stat(fresh).st_mode & 0o777 == 0o700
