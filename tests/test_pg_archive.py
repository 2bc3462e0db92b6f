"""archive_command and restore_command rules, and deduplicated base backups,
against a real PostgreSQL 15."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest

import archiver.postgres.walfile as walfile
from archiver.errors import BadInput
from catalog.repository import Repository
from tests.pgsupport import Archived, markers_in, open_dir


def archived_names(archived: Archived) -> list[str]:
    with archived.catalog_db() as db:
        return [r[0] for r in db.execute("SELECT name FROM wal_files ORDER BY name")]


def fetch(archived: Archived, name: str, dest: Path) -> int:
    return archived.pitr("wal-fetch", "--source", "db", name, str(dest), check=False).returncode


def test_push_rules_for_segments(archived: Archived, pg_cluster_factory, shared_tmp: Path) -> None:
    archived.cluster.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i")
    archived.switch_and_wait()
    name = [n for n in archived_names(archived) if len(n) == 24][-1]
    work = shared_tmp / "work"
    open_dir(work)

    # Fetch gives back exactly what was archived; pushing that copy again is fine.
    copy = work / name
    assert fetch(archived, name, copy) == 0
    assert archived.pitr("wal-push", str(copy), check=False).returncode == 0

    # Same name, different content: refused, and the archive keeps the original.
    changed_dir = work / "changed"
    open_dir(changed_dir)
    changed = changed_dir / name
    data = bytearray(copy.read_bytes())
    data[5_000_000] ^= 0xFF
    changed.write_bytes(bytes(data))
    result = archived.pitr("wal-push", str(changed), check=False)
    assert result.returncode == 4, result.stderr
    assert "different content" in result.stderr
    again = work / "again"
    assert fetch(archived, name, again) == 0
    assert again.read_bytes() == copy.read_bytes()

    # A segment of another cluster, under a name this source has not archived yet.
    other = pg_cluster_factory()
    spool = shared_tmp / "other-wal"
    open_dir(spool)
    other.set_archive_command(f"cp %p {spool}/%f")
    archived_already = set(archived_names(archived))
    for i in range(6):
        other.psql(f"CREATE TABLE x{i} (i int); SELECT pg_switch_wal()")
    foreign = next(
        p
        for p in sorted(spool.glob("0*"), reverse=True)
        if len(p.name) == 24 and p.name not in archived_already
    )
    result = archived.pitr("wal-push", str(foreign), check=False)
    assert result.returncode == 4, result.stderr
    assert "system" in result.stderr
    assert foreign.name not in archived_names(archived)


def test_push_rules_for_history_files_and_bad_input(archived: Archived, shared_tmp: Path) -> None:
    work = shared_tmp / "hist"
    open_dir(work / "a")
    open_dir(work / "b")
    first = work / "a" / "00000009.history"
    first.write_text("1\t0/3000000\tno recovery target specified\n")
    second = work / "b" / "00000009.history"
    second.write_text("1\t0/4000000\tsomething else\n")
    open_dir(work)
    assert archived.pitr("wal-push", str(first), check=False).returncode == 0
    assert archived.pitr("wal-push", str(first), check=False).returncode == 0
    refused = archived.pitr("wal-push", str(second), check=False)
    assert refused.returncode == 4
    out = work / "fetched.history"
    assert fetch(archived, "00000009.history", out) == 0
    assert out.read_text() == first.read_text()

    not_wal = work / "a" / "notes.txt"
    not_wal.write_text("hello")
    bad = archived.pitr("wal-push", str(not_wal), check=False)
    assert bad.returncode == 2 and "not a WAL file name" in bad.stderr
    truncated = work / "a" / "0000000100000000000000F0"
    truncated.write_bytes(b"\x10\xd1" + b"\x00" * 100)
    assert archived.pitr("wal-push", str(truncated), check=False).returncode == 4


def test_a_segment_sealed_whole_or_in_blocks_is_the_same_object(
    archived: Archived, shared_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archived.cluster.psql("CREATE TABLE s AS SELECT generate_series(1, 50000) AS i")
    archived.switch_and_wait()
    name = [n for n in archived_names(archived) if len(n) == 24][-1]
    segment = shared_tmp / name
    assert fetch(archived, name, segment) == 0
    repo, _ = Repository.init((tmp_path / "r").as_uri(), f"sqlite:///{tmp_path / 'c.db'}")
    try:
        whole = walfile.store_wal(repo, segment).chunk
        monkeypatch.setattr(walfile, "WHOLE_MAX", 1 << 20)  # as for segments over 64 MiB
        in_blocks = walfile.store_wal(repo, segment).chunk
        assert in_blocks.oid == whole.oid and whole.stored_size > 0
        assert repo.get_chunk(whole.oid) == segment.read_bytes()

        # A file longer than when it was looked at is refused, read either way.
        st = segment.stat()
        with segment.open("ab") as f:
            f.write(b"more")
        for whole_max in (1 << 20, 64 << 20):
            monkeypatch.setattr(walfile, "WHOLE_MAX", whole_max)
            with open(segment, "rb", buffering=0) as f, pytest.raises(BadInput, match="changed"):
                walfile._seal_file(repo, f, st, segment)
    finally:
        repo.close()


def test_fetch_of_a_missing_file_exits_1_and_writes_nothing(
    archived: Archived, shared_tmp: Path
) -> None:
    dest = shared_tmp / "RECOVERYXLOG"
    assert fetch(archived, "0000000100000000000000FE", dest) == 1
    assert fetch(archived, "00000005.history", dest) == 1
    assert not dest.exists()


def test_second_backup_after_a_small_change_stores_little(archived: Archived) -> None:
    c = archived.cluster
    c.psql(
        "CREATE TABLE big AS SELECT i, md5(i::text) || md5((i * 7)::text) AS pad "
        "FROM generate_series(1, 200000) AS i; VACUUM FREEZE big; CHECKPOINT"
    )
    archived.pitr("backup", "--source", "db")
    # 1% of the rows, same size: the new versions do not fit in the full pages
    # and go to the table's end. (Updates that shrink rows get scattered by the
    # free space map over many pages; 1 MiB chunks cannot dedup those.)
    c.psql("UPDATE big SET pad = upper(pad) WHERE i BETWEEN 100000 AND 101999; CHECKPOINT")
    archived.pitr("backup", "--source", "db")
    with sqlite3.connect(archived.repo / "catalog.db") as db:
        (first, first_size), (second, second_size) = db.execute(
            "SELECT stored_bytes, size_bytes FROM backups ORDER BY finished_at"
        ).fetchall()
    assert second_size >= first_size  # the second backup is a full backup of the same data
    assert second < first * 0.10, (first, second)


def test_a_backup_pushes_its_own_wal_when_the_archiver_is_stuck(archived: Archived) -> None:
    c = archived.cluster
    archived.marker(1)
    archived.switch_and_wait()
    pitr_command = c.psql("SHOW archive_command").strip()
    c.set_archive_command("false")  # PostgreSQL's archiver archives nothing from now on
    archived.pitr("backup", "--source", "db")
    with sqlite3.connect(archived.repo / "catalog.db") as db:
        ((start_lsn, stop_lsn),) = db.execute("SELECT start_lsn, stop_lsn FROM backups").fetchall()
    wal_of_backup = {
        c.psql(f"SELECT pg_walfile_name('{start_lsn}'::pg_lsn)").strip(),
        c.psql(f"SELECT pg_walfile_name('{stop_lsn}'::pg_lsn - 1)").strip(),
    }
    assert wal_of_backup <= set(archived_names(archived))
    last = c.psql("SELECT last_archived_wal FROM pg_stat_archiver").strip()
    assert last < min(wal_of_backup)  # none of them came through PostgreSQL's archiver

    c.set_archive_command(pitr_command)
    target = archived.marker(2) + timedelta(milliseconds=300)
    time.sleep(0.5)
    archived.marker(3)
    archived.switch_and_wait()
    pgdata = archived.base / "r-self-pushed"
    archived.pitr("restore", "--source", "db", "--to", target.isoformat(), "--pgdata", str(pgdata))
    restored = archived.restored(pgdata)
    try:
        assert markers_in(restored) == [1, 2]
    finally:
        restored.stop()


def test_init_prints_the_archive_command_and_check_warns_of_a_slower_one(
    archived: Archived,
) -> None:
    out = archived.pitr("init").stdout
    assert "db: in postgresql.conf" in out and "  archive_mode = on" in out
    line = archived.pitr("archive-command", "--source", "db").stdout.strip()
    assert f"  archive_command = '{line}'" in out  # (it holds no quote to double)

    # The fixture's archive_command is plain wal-push: check says so, and passes.
    archived.switch_and_wait()
    plain = archived.pitr("check").stdout
    assert "warning: db: archive_command runs plain `pitr wal-push`" in plain
    doc = json.loads(archived.pitr("check", "--output", "json").stdout)
    assert doc["ok"] is True and len(doc["warnings"]) == 1

    archived.cluster.set_archive_command(line)
    archived.switch_and_wait()
    assert "warning" not in archived.pitr("check").stdout
