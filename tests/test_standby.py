"""Standbys that live off the archive: one that restores with pitr's
restore_command only and archives again itself (archive_mode = always),
and a cascading one that must fetch a .history file to follow the timeline
a promoted standby started."""

from __future__ import annotations

from pathlib import Path

from tests.harness import PG_BIN, ServerError, wait_until
from tests.pgsupport import Archived, markers_in, open_dir
from tests.servers import PITR_BIN, PostgresCluster


def archive_standby(archived: Archived, name: str) -> PostgresCluster:
    """A copy of the primary (pg_basebackup) that replays from the archive
    only: no primary_conninfo, pitr as restore_command and, with
    archive_mode = always, as its archive_command too (the same files under
    the same names: acknowledged as already archived)."""
    pgdata = open_dir(archived.base / name) / "data"
    primary = archived.cluster
    primary._run_as_postgres(
        [
            PG_BIN / "pg_basebackup",
            "-D",
            pgdata,
            "-h",
            primary.socket_dir,
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-c",
            "fast",
        ],
        "pg_basebackup",
    )
    cmd = f"{PITR_BIN} --config {archived.config}"
    standby: PostgresCluster = archived.factory.from_pgdata(
        pgdata,
        archive_command=f"{cmd} wal-push %p",
        settings={
            "archive_mode": "always",
            "restore_command": f"{cmd} wal-fetch %f %p",
            "recovery_target_timeline": "latest",
            "hot_standby": "on",
        },
    )
    (pgdata / "standby.signal").write_text("")
    return standby


def replayed(cluster: PostgresCluster, n: int, timeout: float = 90) -> None:
    def has() -> bool:
        try:
            return n in markers_in(cluster)
        except ServerError:
            return False  # not yet open for reads, or the table not yet replayed

    wait_until(has, timeout, f"marker {n} on port {cluster.port}")


def test_an_archive_standby_and_a_cascading_one_across_a_promotion(archived: Archived) -> None:
    archived.marker(1)
    archived.switch_and_wait()
    a = archive_standby(archived, "standby-a")
    b = archive_standby(archived, "standby-b")
    a.start()
    archived.marker(2)
    archived.switch_and_wait()
    replayed(a, 2)
    failed = a.psql("SELECT failed_count FROM pg_stat_archiver").strip()
    assert failed == "0", a.log_tail(20)  # its own pushes of the same WAL were accepted

    # A is promoted: timeline 2, whose history file it archives.
    archived.cluster.stop()
    a.psql("SELECT pg_promote()")
    a.wait_promoted()
    a.psql("INSERT INTO markers(n) VALUES (3)")
    name = a.psql("SELECT pg_walfile_name(pg_switch_wal())").strip()
    wait_until(
        lambda: a.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= name,
        60,
        "timeline 2 archived",
    )
    assert name.startswith("00000002")
    assert (archived.repo / "records" / "db" / "wal" / "00000002.history").exists()

    # B, a copy from timeline 1, follows to timeline 2 through the archive.
    b.start()
    replayed(b, 3)
    assert b.psql("SELECT timeline_id FROM pg_control_checkpoint()").strip() in ("1", "2")
    assert markers_in(b) == [1, 2, 3]
    assert Path(b.pgdata / "standby.signal").exists()  # still a standby
