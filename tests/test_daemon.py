"""pitr daemon: WAL pushed ahead of archive_command, answers over its
socket, and what it acknowledged survives its SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator

import pytest

from pitr.daemon_client import (
    OK_ANSWER,
    ask_raw,
    config_identity,
    config_socket_path,
)
from tests.pgsupport import Archived, open_dir, start_daemon
from tests.servers import PITR_BIN, wait_until


@pytest.fixture
def daemon(archived: Archived) -> Iterator[subprocess.Popen[bytes]]:
    """`pitr daemon` as the postgres user (its own process, so SIGKILL reaches it)."""
    proc = start_daemon(archived)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def catalog_has(archived: Archived, name: str) -> bool:
    with archived.catalog_db() as db:
        return db.execute("SELECT 1 FROM wal_files WHERE name = ?", (name,)).fetchone() is not None


def test_the_daemon_pushes_ahead_of_archive_command(archived: Archived, daemon) -> None:
    c = archived.cluster
    c.set_archive_command("/bin/false")  # PostgreSQL itself archives nothing now
    c.psql("CREATE TABLE t AS SELECT generate_series(1, 5000) AS i")
    name = c.psql("SELECT pg_walfile_name(pg_switch_wal())").strip()
    wait_until(lambda: catalog_has(archived, name), 60, f"the daemon to push {name}")
    assert c.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < name

    # What `pitr wal-push` asks when the daemon runs with its config file.
    identity = config_identity(str(archived.config), os.environ)
    assert identity is not None
    request = {"op": "push", "config": identity, "path": str(c.pgdata / "pg_wal" / name)}
    line = json.dumps(request).encode() + b"\n"
    assert ask_raw(config_socket_path(identity), line) == OK_ANSWER
    stale = json.dumps({**request, "config": identity + "x"}).encode() + b"\n"
    assert json.loads(ask_raw(config_socket_path(identity), stale) or b"{}") == {
        "ok": False,
        "retry_by_url": True,
    }

    # archive_command through the daemon now finds it durable already.
    from tests.servers import PITR_BIN as exe

    c.set_archive_command(f"{exe} --config {archived.config} wal-push %p")
    archived.switch_and_wait()
    assert daemon.poll() is None
    assert "failed" not in (archived.base / "daemon.log").read_text()


def test_segments_are_acknowledged_while_the_catalog_is_locked(archived: Archived, daemon) -> None:
    """The store alone acknowledges: with the catalog database locked by
    another writer, the daemon still marks every segment archived. Its
    committer, waiting on the lock meanwhile, then commits all the rows
    that queued up behind it (in one transaction) into its own catalog:
    read here straight from the file, so no command catches it up."""
    c = archived.cluster
    c.set_archive_command("/bin/false")  # the marks are the daemon's alone
    status = c.pgdata / "pg_wal" / "archive_status"
    locker = sqlite3.connect(archived.repo / "catalog.db", isolation_level=None)
    names = []
    try:
        locker.execute("BEGIN IMMEDIATE")  # the write lock, until the rollback below
        for i in range(6):
            c.psql(f"CREATE TABLE burst{i} AS SELECT generate_series(1, 2000) AS i")
            names.append(c.psql("SELECT pg_walfile_name(pg_switch_wal())").strip())

        def marked() -> bool:
            marks = {p.name for p in status.glob("*.pitr-*") if p.suffix != ".lock"}
            return all(any(m.startswith(f"{name}.pitr-") for m in marks) for name in names)

        wait_until(marked, 60, "the daemon to acknowledge the segments")
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    def committed() -> set[str]:
        with sqlite3.connect(archived.repo / "catalog.db") as db:
            found = db.execute("SELECT name FROM wal_files").fetchall()
        return {name for (name,) in found} & set(names)

    # Well within the daemon's periodic catch-up (15 s), which would also make them.
    wait_until(lambda: committed() == set(names), 10, "the committer to commit the rows")
    assert daemon.poll() is None


def use_printed_archive_command(archived: Archived) -> None:
    """archive_command as `pitr archive-command` prints it (marks first)."""
    command = archived.pitr("archive-command").stdout.strip()
    assert command.endswith(f"{PITR_BIN} --config {archived.config} wal-push --source db %p; }}")
    archived.cluster.set_archive_command(command)


@pytest.mark.parametrize("command", ["wal-push", "archive-command"])
def test_an_acknowledged_segment_survives_sigkill_of_the_daemon(
    archived: Archived, daemon, command: str
) -> None:
    c = archived.cluster
    if command == "archive-command":
        use_printed_archive_command(archived)
    c.psql("CREATE TABLE t AS SELECT generate_series(1, 5000) AS i")
    name = c.psql("SELECT pg_walfile_name(pg_switch_wal())").strip()
    wait_until(
        lambda: c.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= name,
        60,
        f"PostgreSQL to archive {name}",
    )
    daemon.send_signal(signal.SIGKILL)  # right after the acknowledgement
    daemon.wait(10)
    assert catalog_has(archived, name)
    out = open_dir(archived.base / "fetched") / name
    archived.pitr("wal-fetch", "--source", "db", name, str(out))  # hash-checked
    assert out.stat().st_size == 16 << 20


def test_a_second_daemon_for_the_same_repository_is_refused(archived: Archived, daemon) -> None:
    result = archived.pitr("daemon", check=False)
    assert result.returncode == 2
    assert "already serves this repository" in result.stderr


def test_archive_command_takes_the_daemons_marks_without_starting_pitr(
    archived: Archived, daemon
) -> None:
    c = archived.cluster
    use_printed_archive_command(archived)
    archived.switch_and_wait()  # first segment: with the daemon and pitr both there
    # From now on the `pitr wal-push` part cannot even read its config: only the
    # daemon's marks can acknowledge (a segment PostgreSQL hands over before the
    # daemon has seen it fails once and is retried a second later).
    mode = archived.config.stat().st_mode
    archived.config.chmod(0o600)  # root's: PostgreSQL runs pitr as postgres
    try:
        assert archived.pitr("archive-command", check=False).returncode == 2
        names = []
        for i in range(3):
            c.psql(f"INSERT INTO markers(n) SELECT generate_series({i * 1000}, {i * 1000 + 999})")
            names.append(c.psql("SELECT pg_walfile_name(pg_switch_wal())").strip())
            archived.switch_and_wait(timeout=90)
    finally:
        archived.config.chmod(mode)
    assert all(catalog_has(archived, n) for n in names)
    status = c.pgdata / "pg_wal" / "archive_status"
    wait_until(
        lambda: not [n for n in os.listdir(status) if ".pitr-" in n and n[:24] in names],
        10,
        "the daemon to forget the marks of archived segments",
    )
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(60)
    assert not [n for n in os.listdir(status) if ".pitr-" in n]
