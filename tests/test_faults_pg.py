"""Faults and bad input around PostgreSQL: processes killed at random points,
damaged objects, a busy catalog. Nothing acknowledged is lost, nothing
damaged is restored, and every refusal is one line with its exit code."""

from __future__ import annotations

import pwd
import random
import signal
import sqlite3
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.pgsupport import Archived, markers_in, open_dir, start_archiving
from tests.servers import PITR_BIN, PostgresCluster, clean_env


@pytest.fixture
def archived(pg_cluster: PostgresCluster, pg_cluster_factory, shared_tmp: Path) -> Archived:
    return start_archiving(pg_cluster, shared_tmp, pg_cluster_factory)


def as_postgres(archived: Archived, *args: str) -> subprocess.Popen[bytes]:
    """pitr as its own process owned by postgres, so that SIGKILL reaches it."""
    pw = pwd.getpwnam("postgres")
    return subprocess.Popen(
        [str(PITR_BIN), "--config", str(archived.config), *args],
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        env=clean_env({"HOME": pw.pw_dir}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_after(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """SIGKILL proc after `seconds` unless it finished; True if it was killed."""
    try:
        proc.wait(seconds)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        return True


def test_wal_push_killed_at_random_points_then_rerun(archived: Archived) -> None:
    c = archived.cluster
    spool = open_dir(archived.base / "segments")
    c.set_archive_command(f"cp %p {spool}/%f")  # keep copies to push by hand
    c.psql("CREATE TABLE t AS SELECT i, md5(i::text) FROM generate_series(1, 100000) i")
    archived.switch_and_wait()
    segments = sorted(p for p in spool.iterdir() if len(p.name) == 24)
    rng = random.Random(7)
    for segment in segments:
        kill_after(as_postgres(archived, "wal-push", str(segment)), rng.uniform(0.0, 0.5))
        archived.pitr("wal-push", str(segment))  # the retry PostgreSQL would make
        out = open_dir(archived.base / "fetched") / segment.name
        archived.pitr("wal-fetch", "--source", "db", segment.name, str(out))
        assert out.read_bytes() == segment.read_bytes()


def test_backup_killed_then_rerun_and_restore_killed_then_rerun(archived: Archived) -> None:
    c = archived.cluster
    c.psql("CREATE TABLE pad AS SELECT i, md5(i::text) FROM generate_series(1, 200000) i")
    archived.marker(1)
    killed = kill_after(as_postgres(archived, "backup", "--source", "db"), 0.7)
    assert c.psql("SELECT count(*) FROM markers") == "1"  # the server is fine
    archived.pitr("backup", "--source", "db")
    time.sleep(0.3)
    archived.marker(2)
    t3 = archived.marker(3)
    time.sleep(0.5)
    archived.switch_and_wait()
    with sqlite3.connect(archived.repo / "catalog.db") as db:
        assert db.execute("SELECT count(*) FROM backups").fetchone()[0] == (1 if killed else 2)

    pgdata = archived.base / "restored"
    target = (t3 + timedelta(milliseconds=200)).isoformat()
    proc = as_postgres(archived, "restore", "--to", target, "--pgdata", str(pgdata))
    if kill_after(proc, 0.8):
        assert not pgdata.exists()  # nothing half-written where PostgreSQL would look
    archived.pitr("restore", "--to", target, "--pgdata", str(pgdata), "--force")
    assert not list(archived.base.glob(".restored.pitr-restoring-*"))
    restored = archived.restored(pgdata)
    try:
        assert markers_in(restored) == [1, 2, 3]
    finally:
        restored.stop()


def test_a_damaged_object_is_never_restored(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    t1 = archived.marker(1)
    archived.switch_and_wait()
    with sqlite3.connect(archived.repo / "catalog.db") as db:
        oid = db.execute(
            "SELECT o.oid FROM backup_objects o JOIN objects s ON s.oid = o.oid "
            "ORDER BY s.size DESC LIMIT 1"
        ).fetchone()[0]
    path = archived.repo / "objects" / oid[:2] / oid
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    pgdata = archived.base / "never"
    result = archived.pitr("restore", "--to", t1.isoformat(), "--pgdata", str(pgdata), check=False)
    assert result.returncode == 4, result.stderr
    assert oid[:16] in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not pgdata.exists()
    assert not list(archived.base.glob(".never.pitr-restoring-*"))


def test_wal_push_waits_out_a_briefly_locked_catalog(archived: Archived) -> None:
    c = archived.cluster
    spool = open_dir(archived.base / "segments")
    c.set_archive_command(f"cp %p {spool}/%f")
    c.psql("CREATE TABLE t (i int); INSERT INTO t VALUES (1)")
    archived.switch_and_wait()
    segment = sorted(p for p in spool.iterdir() if len(p.name) == 24)[-1]
    locker = subprocess.Popen(
        [
            "python3",
            "-c",
            "import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1], isolation_level=None);"
            "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(3);"
            "db.execute('COMMIT')",
            str(archived.repo / "catalog.db"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    archived.pitr("wal-push", str(segment))  # waits for the lock, then succeeds
    assert locker.wait(10) == 0


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["restore", "--to", "2025-02-30 10:00"], 2, "invalid time"),
        (["restore", "--to", "next tuesday"], 2, "invalid time"),
        (["restore", "--to", "2025-01-16 12:00 Mars/Olympus"], 2, "unknown time zone"),
        (["restore", "--source", "nope", "--to", "2025-01-16 12:00"], 2, "unknown source"),
        (["backup", "--source", "nope"], 2, "unknown source"),
        (["wal-push", "--source", "nope", "/dev/null"], 2, "unknown source"),
    ],
)
def test_bad_input_is_one_line_and_its_exit_code(
    archived: Archived, args: list[str], code: int, says: str
) -> None:
    result = archived.pitr(*args, check=False)
    assert result.returncode == code, result.stderr
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_a_repository_of_a_newer_format_is_refused(archived: Archived) -> None:
    meta = archived.repo / "pitr-repository.json"
    meta.write_text(meta.read_text().replace('"format_version": 1', '"format_version": 2'))
    result = archived.pitr("backup", "--source", "db", check=False)
    assert result.returncode == 2 and "format version 2" in result.stderr
