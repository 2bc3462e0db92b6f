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

from tests.badinput import expect_row
from tests.pgsupport import Archived, markers_in, open_dir, start_archiving
from tests.servers import PITR_BIN, PostgresCluster, clean_env, wait_until


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
        backups = db.execute("SELECT count(*) FROM backups").fetchone()[0]
    assert backups == 2 or (killed and backups == 1)  # a killed backup leaves no row...
    archived.pitr("check")  # ...and nothing the catalog refers to is missing

    pgdata = archived.base / "restored"
    target = (t3 + timedelta(milliseconds=200)).isoformat()
    proc = as_postgres(archived, "restore", "--to", target, "--pgdata", str(pgdata))
    if kill_after(proc, 0.8):
        # Nothing half-written where PostgreSQL would look: absent, or complete.
        assert not pgdata.exists() or (pgdata / "recovery.signal").exists()
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
    ("row", "args"),
    [
        ("time-invalid-date", ["restore", "--to", "2025-02-30 10:00"]),
        ("time-unparseable", ["restore", "--to", "next tuesday"]),
        ("time-unknown-zone", ["restore", "--to", "2025-01-16 12:00 Mars/Olympus"]),
        ("source-unknown-restore", ["restore", "--source", "nope", "--to", "2025-01-16 12:00"]),
        ("source-unknown-backup", ["backup", "--source", "nope"]),
        ("source-unknown-wal-push", ["wal-push", "--source", "nope", "/dev/null"]),
    ],
)
def test_bad_input_is_one_line_and_its_exit_code(
    archived: Archived, row: str, args: list[str]
) -> None:
    expect_row(row, archived.pitr(*args, check=False))


def test_a_repository_of_a_newer_format_is_refused(archived: Archived) -> None:
    meta = archived.repo / "pitr-repository.json"
    meta.write_text(meta.read_text().replace('"format_version": 1', '"format_version": 2'))
    result = archived.pitr("backup", "--source", "db", check=False)
    assert result.returncode == 2 and "format version 2" in result.stderr


@pytest.fixture
def small_disk(shared_tmp: Path):  # type: ignore[no-untyped-def]
    """A 12 MiB tmpfs, writable by everyone: a repository that fills up."""
    mount = open_dir(shared_tmp / "small-disk")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m,mode=0777", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def archived_segments(archived: Archived) -> list[str]:
    with archived.catalog_db() as db:
        rows = db.execute("SELECT name FROM wal_files WHERE kind = 'segment' ORDER BY name")
        return [r[0] for r in rows]


def test_a_full_disk_fails_the_push_loses_nothing_and_archiving_resumes(
    pg_cluster: PostgresCluster, pg_cluster_factory, small_disk: Path
) -> None:
    archived = start_archiving(pg_cluster, small_disk, pg_cluster_factory)
    c = archived.cluster
    c.psql(
        "CREATE TABLE noise AS SELECT i, md5(random()::text) || md5(random()::text) AS pad "
        "FROM generate_series(1, 300000) AS i"
    )
    last = c.psql("SELECT pg_walfile_name(pg_switch_wal())").strip()
    wait_until(
        lambda: int(c.psql("SELECT failed_count FROM pg_stat_archiver")) > 0,
        120,
        "archive_command to fail on the full disk",
    )
    assert "No space left on device" in c.log_tail(200)
    assert "Traceback" not in c.log_tail(200)

    subprocess.run(["mount", "-o", "remount,size=512m", str(small_disk)], check=True)
    wait_until(
        lambda: c.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= last,
        180,
        "archiving to catch up once there is space",
    )
    names = archived_segments(archived)
    numbers = [int(n[16:], 16) for n in names]
    assert numbers == list(range(numbers[0], numbers[-1] + 1))  # no segment is missing
    assert names[-1] == last
    fetched = open_dir(small_disk / "fetched")
    for name in names:  # every acknowledged segment is whole
        archived.pitr("wal-fetch", "--source", "db", name, str(fetched / name))
        (fetched / name).unlink()


def test_postgres_restarting_during_a_backup_fails_it_cleanly(archived: Archived) -> None:
    c = archived.cluster
    c.psql("CREATE TABLE pad AS SELECT i, md5(i::text) FROM generate_series(1, 400000) i")
    proc = subprocess.Popen(
        as_postgres(archived, "backup", "--source", "db").args,
        user=pwd.getpwnam("postgres").pw_uid,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    time.sleep(0.6)
    c.restart("fast")
    _, err = proc.communicate(timeout=120)
    if proc.returncode != 0:  # the backup did not finish before the restart
        assert proc.returncode == 5, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        with sqlite3.connect(archived.repo / "catalog.db") as db:
            assert db.execute("SELECT count(*) FROM backups").fetchone()[0] == 0
    archived.pitr("backup", "--source", "db")  # and the next one works


def test_a_lost_catalog_is_rebuilt_from_the_store_and_restores(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    t1 = archived.marker(1)
    time.sleep(0.3)
    archived.marker(2)
    time.sleep(0.3)
    archived.switch_and_wait()
    for path in archived.repo.glob("catalog.db*"):
        path.unlink()
    out = archived.pitr("catalog", "rebuild").stdout
    assert "1 backup" in out and "wal" in out
    pgdata = archived.base / "from-rebuilt"
    archived.pitr(
        "restore", "--to", (t1 + timedelta(milliseconds=150)).isoformat(), "--pgdata", str(pgdata)
    )
    restored = archived.restored(pgdata)
    try:
        assert markers_in(restored) == [1]
    finally:
        restored.stop()
