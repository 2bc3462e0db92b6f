"""WAL streaming (`stream = true`): the daemon runs pg_receivewal and ships
the segment still being written, so that a commit is recoverable within
seconds with archive_timeout off; without streaming it is not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archiver.postgres.receiver import ReceiverSettings, receiver_argv
from archiver.postgres.slotwatch import SlotState
from recovery.postgres.facts import WalRef, newest_segment_files
from recovery.postgres.spool import never_archived, write_index
from tests.pgsupport import Archived, daemon_log, markers_in, midpoint, start_daemon
from tests.servers import PostgresCluster, alive, children, wait_until

WITHIN = 20.0  # seconds a streamed commit may take to become recoverable (it takes ~1)


def stream_config(archived: Archived, stream: bool) -> None:
    text = archived.config.read_text()
    archived.config.write_text(text + f"stream = {'true' if stream else 'false'}\n")


@pytest.fixture
def daemon(archived: Archived, request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[bytes]]:
    stream_config(archived, request.param)
    proc = start_daemon(archived)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def plan_to(archived: Archived, target: datetime, check: bool | int = True) -> str:
    result = archived.pitr(
        "restore", "--source", "db", "--to", target.isoformat(), "--dry-run", check=check
    )
    return str(result.stdout + result.stderr)


def recoverable(archived: Archived, target: datetime) -> bool:
    return (
        archived.pitr(
            "restore", "--source", "db", "--to", target.isoformat(), "--dry-run", check=False
        ).returncode
        == 0
    )


def two_markers(archived: Archived, first: int) -> datetime:
    """Markers first and first+1, half a second apart: the instant between them."""
    t1 = archived.marker(first)
    time.sleep(0.5)
    t2 = archived.marker(first + 1)
    return midpoint(t1, t2)


def restore_aside(archived: Archived, target: datetime, name: str) -> PostgresCluster:
    """Restore to target and start it, archiving nowhere: promoted into the
    same source, its new timeline would be the one later instants restore."""
    pgdata = archived.base / name
    archived.pitr("restore", "--source", "db", "--to", target.isoformat(), "--pgdata", str(pgdata))
    restored: PostgresCluster = archived.factory.from_pgdata(pgdata, archive_command="/bin/true")
    restored.start_recovered()
    return restored


def pieces(archived: Archived) -> list[str]:
    """Names of the streamed pieces the catalog holds."""
    with archived.catalog_db() as db:
        rows = db.execute("SELECT name FROM wal_files WHERE kind = 'stream' ORDER BY name")
        return [name for (name,) in rows]


def wal_kind(archived: Archived, name: str) -> str | None:
    with archived.catalog_db() as db:
        row = db.execute("SELECT kind FROM wal_files WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def receivers_of(daemon: subprocess.Popen[bytes]) -> list[int]:
    """pids of the pg_receivewal processes the daemon started."""
    return children(daemon.pid, "pg_receivewal")


@pytest.mark.parametrize("daemon", [True], indirect=True)
def test_a_streamed_commit_is_recoverable_within_seconds(
    archived: Archived, daemon: subprocess.Popen[bytes]
) -> None:
    archived.pitr("backup", "--source", "db")
    between = two_markers(archived, 1)  # no segment switch, no archive_timeout
    wait_until(lambda: recoverable(archived, between), WITHIN, "the streamed markers")
    assert "streamed WAL: " in plan_to(archived, between)  # its last segment: streamed

    (src,) = json.loads(archived.pitr("info", "--output", "json").stdout)["sources"]
    streamed = src["archive"]["streamed"]
    assert streamed["received_bytes"] > 0
    assert datetime.fromisoformat(streamed["newest_at"]) > between
    assert any(n.startswith("streams WAL: segment ") for n in src["notes"])
    assert len(pieces(archived)) == 1  # an older piece goes once a newer one is durable

    # restore_command without a spool serves the segment from its piece, full-size.
    segment = streamed["segment"]
    archived.pitr("wal-fetch", "--source", "db", segment, str(archived.base / segment))
    fetched = (archived.base / segment).read_bytes()
    assert len(fetched) == 16 << 20 and len(fetched.rstrip(b"\0")) >= streamed["received_bytes"]

    restored = restore_aside(archived, between, "r-stream")
    try:
        assert markers_in(restored) == [1]
    finally:
        restored.stop()

    # Completed, the segment is archived whole by both paths, with no conflict.
    archived.switch_and_wait()
    wait_until(
        lambda: segment not in {p.split(".")[0] for p in pieces(archived)},
        WITHIN,
        f"the pieces of {segment} to go",
        detail=lambda: daemon_log(archived),
    )
    assert wal_kind(archived, segment) == "segment"
    assert "streaming:" not in daemon_log(archived)  # no error shipping what arrived

    # The pieces are facts in the store like any WAL file: a rebuilt catalog knows them.
    later = two_markers(archived, 3)
    wait_until(
        lambda: recoverable(archived, later),
        WITHIN,
        "markers 3 and 4",
        detail=lambda: daemon_log(archived) + plan_to(archived, later, check=False),
    )
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(60)
    archived.pitr("catalog", "rebuild", "--force")
    assert pieces(archived) and recoverable(archived, later)


@pytest.mark.parametrize("daemon", [False], indirect=True)
def test_without_streaming_the_commit_waits_for_its_segment(
    archived: Archived, daemon: subprocess.Popen[bytes]
) -> None:
    archived.pitr("backup", "--source", "db")
    between = two_markers(archived, 1)
    time.sleep(3)  # what streaming needs about a second for
    out = plan_to(archived, between, check=3)
    assert "after the newest archived point" in out
    assert not receivers_of(daemon)


@pytest.mark.parametrize("daemon", [True], indirect=True)
def test_a_killed_receiver_is_restarted_with_no_gap(
    archived: Archived, daemon: subprocess.Popen[bytes]
) -> None:
    archived.pitr("backup", "--source", "db")
    wait_until(
        lambda: receivers_of(daemon), 30, "pg_receivewal", detail=lambda: daemon_log(archived)
    )
    (first,) = receivers_of(daemon)
    os.kill(first, signal.SIGKILL)
    wait_until(
        lambda: [p for p in receivers_of(daemon) if p != first],
        30,
        "pg_receivewal to be restarted",
        detail=lambda: daemon_log(archived),
    )
    assert "pg_receivewal was killed by signal 9" in daemon_log(archived)

    between = two_markers(archived, 1)
    wait_until(lambda: recoverable(archived, between), WITHIN, "the markers after the restart")
    archived.pitr("check")
    report = archived.pitr("report", "rpo").stdout
    assert "streams WAL" in report
    assert "db: slot pitr_db: active, " in report  # the restarted receiver is on it

    restored = restore_aside(archived, between, "r-restarted")
    try:
        assert markers_in(restored) == [1]
    finally:
        restored.stop()


def test_stream_keys_are_checked(archived: Archived) -> None:
    text = archived.config.read_text()
    archived.config.write_text(text + 'stream = true\nslot = "Bad-Slot"\n')
    out = archived.pitr("info", check=False)
    assert out.returncode == 2
    assert "slot must be" in out.stderr
    archived.config.write_text(text + "stream = 1\n")
    out = archived.pitr("info", check=False)
    assert out.returncode == 2
    assert "stream must be true or false" in out.stderr


@pytest.mark.parametrize("daemon", [True], indirect=True)
def test_the_slot_keeps_what_arrives_while_the_daemon_is_killed(
    archived: Archived, daemon: subprocess.Popen[bytes]
) -> None:
    archived.pitr("backup", "--source", "db")
    before = two_markers(archived, 1)
    wait_until(lambda: recoverable(archived, before), WITHIN, "markers 1 and 2")
    (receiver,) = receivers_of(daemon)
    daemon.kill()
    daemon.wait(30)
    wait_until(lambda: not alive(receiver), 30, "pg_receivewal to go with its daemon")

    down = two_markers(archived, 3)  # written with nobody receiving: the slot keeps them
    again = start_daemon(archived)
    try:
        wait_until(
            lambda: recoverable(archived, down),
            WITHIN,
            "markers 3 and 4",
            detail=lambda: daemon_log(archived) + plan_to(archived, down, check=False),
        )
        archived.pitr("check")
        restored = restore_aside(archived, down, "r-again")
        try:
            assert markers_in(restored) == [1, 2, 3]
        finally:
            restored.stop()
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(60)


def test_synchronous_streaming_makes_commits_wait_for_the_receiver(archived: Archived) -> None:
    archived.config.write_text(archived.config.read_text() + "stream = true\nsynchronous = true\n")
    c = archived.cluster
    daemon = start_daemon(archived)
    try:
        # pitr does not touch the server's settings: it says what is missing.
        wait_until(
            lambda: "does not name pitr_db" in daemon_log(archived),
            30,
            "the synchronous_standby_names line",
            detail=lambda: daemon_log(archived),
        )
        c.psql("ALTER SYSTEM SET synchronous_standby_names = 'pitr_db'")
        c.psql("SELECT pg_reload_conf()")
        state = "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'pitr_db'"
        wait_until(lambda: c.psql(state).strip() == "sync", 30, "the receiver as a sync standby")
        archived.pitr("backup", "--source", "db")  # its commits wait for the receiver too
        between = two_markers(archived, 1)
        wait_until(lambda: recoverable(archived, between), WITHIN, "the synchronous markers")
    finally:
        c.psql("ALTER SYSTEM RESET synchronous_standby_names")  # or stopping would wait
        c.psql("SELECT pg_reload_conf()")
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)


# -- the pure parts ---------------------------------------------------------------


def test_the_slot_warns_before_max_slot_wal_keep_size_invalidates_it() -> None:
    mib = 1 << 20
    assert SlotState("reserved", 16 * mib, None, -1).warning() is None
    assert SlotState("extended", 900 * mib, 300 * mib, 1024 * mib).warning() is None
    near = SlotState("extended", 900 * mib, 100 * mib, 1024 * mib).warning()
    assert near is not None and "100 MiB left" in near
    lost = SlotState("lost", None, None, 1024 * mib).warning()
    assert lost is not None and "lost" in lost


def test_the_receiver_is_named_for_synchronous_standby_names_in_either_dsn_form() -> None:
    for dsn in ("host=/run/pg port=5432 user=postgres", "postgresql://postgres@/x?host=/run/pg"):
        argv = receiver_argv(ReceiverSettings("pg_receivewal", dsn, "/d", "pitr_db", "pitr_db"))
        (given,) = [a for a in argv if a.startswith("--dbname=")]
        assert "application_name=pitr_db" in given
        assert "--synchronous" in argv and "--slot=pitr_db" in argv


def test_a_completed_segment_stands_for_itself_else_its_newest_piece() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    seg = "000000010000000000000003"

    def ref(name: str, kind: str, segno: int) -> WalRef:
        return WalRef(0, name, kind, 1, segno, name, at, at)

    wal = [ref(f"{seg}.stream.00001000", "stream", 3), ref(f"{seg}.stream.00020000", "stream", 3)]
    assert newest_segment_files(wal)[(1, 3)].name == f"{seg}.stream.00020000"
    wal.append(ref(seg, "segment", 3))
    assert newest_segment_files(wal)[(1, 3)].name == seg


def test_a_planned_segment_without_its_own_record_is_not_answered_absent(tmp_path: Path) -> None:
    """A streamed segment has piece records only (<segment>.stream.N): the
    restore's index, not the record under its name, says it is archived."""
    records = tmp_path / "records" / "db" / "wal"
    records.mkdir(parents=True)
    seg = "000000010000000000000004"
    (records / f"{seg}.stream.00012000").write_bytes(b"sealed record")
    spool = str(tmp_path / "spool")
    write_index(spool, "db", [(seg, "ab" * 32)], plain_ids=True, records_dir=str(records))
    assert not never_archived(spool, seg)
    assert never_archived(spool, "000000010000000000000005")


DROP_SLOT = """
DO $$
BEGIN
  PERFORM pg_terminate_backend(active_pid) FROM pg_replication_slots
    WHERE slot_name = 'pitr_db' AND active_pid IS NOT NULL;
  FOR i IN 1..200 LOOP  -- until the walsender has gone (before the receiver is back)
    EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_replication_slots
                          WHERE slot_name = 'pitr_db' AND active);
    PERFORM pg_sleep(0.01);
  END LOOP;
  PERFORM pg_drop_replication_slot('pitr_db');
END $$
"""


@pytest.mark.parametrize("daemon", [True], indirect=True)
def test_a_slot_dropped_by_hand_is_made_again_in_one_line(
    archived: Archived, daemon: subprocess.Popen[bytes]
) -> None:
    archived.pitr("backup", "--source", "db")
    slot = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pitr_db' AND active"
    wait_until(lambda: archived.cluster.psql(slot).strip() == "1", 30, "the receiver's slot")
    archived.cluster.psql(DROP_SLOT)
    wait_until(
        lambda: "replication slot pitr_db is gone" in daemon_log(archived),
        30,
        "the daemon to notice",
        detail=lambda: daemon_log(archived),
    )
    wait_until(lambda: archived.cluster.psql(slot).strip() == "1", 30, "a new slot in use")
    assert daemon_log(archived).count("replication slot pitr_db is gone") == 1
    between = two_markers(archived, 1)
    wait_until(lambda: recoverable(archived, between), WITHIN, "streaming on the new slot")
    archived.pitr("check")  # archive_command filled what the slot's absence missed
