"""`synchronous = true`: a commit returns only once its WAL is in the store
(archiver/postgres/ackgate.py), so that losing everything but PostgreSQL,
the receiver's own directory included, loses no acknowledged commit."""

from __future__ import annotations

import os
import shutil
import signal

from archiver.postgres.ackgate import gate_refusal
from tests.pgsupport import Archived, daemon_log, markers_in, open_dir, start_daemon
from tests.servers import wait_until
from tests.test_wal_stream import receivers_of

SYNC_STATE = "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'pitr_db'"


def test_every_acknowledged_commit_survives_losing_the_daemon_and_its_directory(
    archived: Archived,
) -> None:
    received = open_dir(archived.base / "received")
    archived.config.write_text(
        archived.config.read_text()
        + f"stream = true\nsynchronous = true\nstream_dir = '{received}'\n"
    )
    c = archived.cluster
    c.psql("ALTER SYSTEM SET synchronous_standby_names = 'pitr_db'")
    c.psql("SELECT pg_reload_conf()")
    daemon = start_daemon(archived)
    try:
        wait_until(
            lambda: c.psql(SYNC_STATE).strip() == "sync",
            30,
            "the receiver as a sync standby",
            detail=lambda: daemon_log(archived),
        )
        archived.pitr("backup", "--source", "db")
        for n in range(1, 6):
            archived.marker(n)  # returns once PostgreSQL has the standby's flush
        receivers = receivers_of(daemon)
        assert receivers, daemon_log(archived)
        for pid in [daemon.pid, *receivers]:
            os.kill(pid, signal.SIGKILL)
        daemon.wait(30)
    finally:
        c.psql("ALTER SYSTEM RESET synchronous_standby_names")
        c.psql("SELECT pg_reload_conf()")
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(30)
    shutil.rmtree(received)  # nothing is left to ship: the store must hold it all

    pgdata = archived.base / "r-sync"
    archived.pitr("restore", "--source", "db", "--to", "latest", "--pgdata", str(pgdata))
    restored = archived.factory.from_pgdata(pgdata, archive_command="/bin/true")
    restored.start_recovered()
    try:
        assert markers_in(restored) == [1, 2, 3, 4, 5]
    finally:
        restored.stop()


def test_the_gate_cannot_read_a_tls_connection() -> None:
    refused = gate_refusal("host=db.example port=5432 sslmode=verify-full")
    assert refused is not None and "sslmode=verify-full" in refused
    assert gate_refusal("host=/run/postgresql port=5432 user=postgres") is None
