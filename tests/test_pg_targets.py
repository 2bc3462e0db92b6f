"""Marks and every PostgreSQL recovery target form, against a real
PostgreSQL 15, checked with marker rows (tests/pgsupport.py)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from tests.badinput import expect_row
from tests.pgsupport import Archived, markers_in, open_dir, start_archiving
from tests.redissupport import TailProcess, archived_entries_of
from tests.servers import ClusterFactory, PostgresCluster, RedisFactory, wait_until
from tests.sqlitesupport import Writer, rows

M = "app:stream:markers"


def restore(archived: Archived, name: str, *target: str) -> tuple[Path, str]:
    pgdata = archived.base / name
    result = archived.pitr("restore", "--source", "db", *target, "--pgdata", str(pgdata))
    return pgdata, result.stdout


def start(archived: Archived, pgdata: Path, promoted: bool = True) -> PostgresCluster:
    """Start the restored directory without archiving: each restore here
    promotes onto a new timeline, which must not become the next test's
    newest timeline."""
    cluster: PostgresCluster = archived.factory.from_pgdata(pgdata, archive_command="/bin/true")
    if promoted:
        cluster.start_recovered()
    else:
        cluster.start()
    return cluster


def markers_after(archived: Archived, name: str, *target: str) -> list[int]:
    pgdata, _ = restore(archived, name, *target)
    cluster = start(archived, pgdata)
    try:
        return markers_in(cluster)
    finally:
        cluster.stop()


def info_of(archived: Archived, source: str) -> dict[str, Any]:
    out = archived.pitr("info", "--source", source, "--output", "json").stdout
    return dict(json.loads(out)["sources"][0])


def xid_of_marker(archived: Archived, n: int) -> str:
    out = archived.cluster.psql(
        f"INSERT INTO markers(n) VALUES ({n}) RETURNING pg_current_xact_id()::text"
    )
    return out.strip()


def test_mark_restore_to_it_info_and_rebuild(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    archived.marker(1)
    out = archived.pitr("mark", "before-change").stdout
    assert "mark before-change: db (postgres) restore point at LSN" in out
    archived.marker(2)
    archived.pitr("backup", "--source", "db")  # after the mark: not the one to restore
    archived.marker(3)
    archived.switch_and_wait()

    doc = json.loads(archived.pitr("info", "--output", "json").stdout)
    first_backup = min(doc["sources"][0]["backups"], key=lambda b: b["started_at"])["id"]
    (mark,) = doc["sources"][0]["marks"]
    assert mark["name"] == "before-change" and mark["lsn"] and mark["timeline"] == 1
    assert "mark before-change:" in archived.pitr("info").stdout

    # A name is taken once; the refusal writes nothing.
    expect_row("mark-name-taken", archived.pitr("mark", "before-change", check=False))
    expect_row("mark-name-invalid", archived.pitr("mark", "1st try", check=False))

    # The catalog is a projection: rebuilt from the store, the mark is back.
    (archived.repo / "catalog.db").unlink()
    archived.pitr("catalog", "rebuild")
    again = json.loads(archived.pitr("info", "--output", "json").stdout)
    assert again["sources"][0]["marks"] == [mark]

    pgdata, plan = restore(archived, "r-mark", "--to", "before-change")
    assert "stop at restore point 'before-change'" in plan
    assert f"base backup {first_backup}," in plan
    cluster = start(archived, pgdata)
    try:
        assert markers_in(cluster) == [1]
    finally:
        cluster.stop()


def test_every_target_form_restores_exactly_its_markers(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    archived.marker(1)
    archived.pitr("backup", "--source", "db")  # end-of-backup: its consistent point
    archived.marker(2)
    lsn = archived.cluster.psql("SELECT pg_current_wal_insert_lsn()").strip()
    time.sleep(0.1)
    archived.marker(3)
    xid = xid_of_marker(archived, 4)
    archived.marker(5)
    archived.switch_and_wait()

    assert markers_after(archived, "r-lsn", "--to-lsn", lsn) == [1, 2]
    assert markers_after(archived, "r-xid", "--to-xid", xid) == [1, 2, 3, 4]
    # Exclusive stops just before the target transaction: exactly it is missing.
    assert markers_after(archived, "r-xid-ex", "--to-xid", xid, "--exclusive") == [1, 2, 3]
    assert markers_after(archived, "r-latest", "--to", "latest") == [1, 2, 3, 4, 5]
    assert markers_after(archived, "r-eob", "--to", "end-of-backup") == [1]


def test_target_action_pause_leaves_the_server_paused_in_recovery(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    archived.marker(1)
    xid = xid_of_marker(archived, 2)
    archived.marker(3)
    archived.switch_and_wait()
    pgdata, plan = restore(archived, "r-pause", "--to-xid", xid, "--target-action", "pause")
    assert f"stop after transaction {xid} commits, then pause" in plan
    cluster = start(archived, pgdata, promoted=False)
    try:
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = cluster.psql("SELECT pg_get_wal_replay_pause_state()").strip()
            if state == "paused":
                break
            time.sleep(0.2)
        assert state == "paused"
        assert cluster.psql("SELECT pg_is_in_recovery()").strip() == "t"
        assert markers_in(cluster) == [1, 2]
    finally:
        cluster.stop()


def test_bad_targets_one_line_and_nothing_changed(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    archived.marker(1)
    archived.switch_and_wait()
    never = archived.base / "never"
    cases = {
        "restore-mark-unknown": ["--to", "no-such-mark"],
        "restore-lsn-malformed": ["--to-lsn", "0/XYZ"],
        "restore-xid-not-number": ["--to-xid", "abc"],
        "restore-targets-conflict": ["--to", "latest", "--to-lsn", "0/3000000"],
        "restore-exclusive-not-stoppable": ["--to", "end-of-backup", "--exclusive"],
        "restore-action-latest": ["--to", "latest", "--target-action", "pause"],
        "restore-no-target": [],
        "restore-lsn-not-archived": ["--to-lsn", "FF/0"],
    }
    for row, target in cases.items():
        result = archived.pitr(
            "restore", "--source", "db", *target, "--pgdata", str(never), check=False
        )
        expect_row(row, result)
        assert not never.exists()
    assert not list(archived.base.glob(".never.*"))


def test_one_mark_brings_postgres_redis_and_sqlite_back_to_it(
    pg_cluster: PostgresCluster,
    pg_cluster_factory: ClusterFactory,
    redis_factory: RedisFactory,
    shared_tmp: Path,
) -> None:
    archived = start_archiving(pg_cluster, shared_tmp, pg_cluster_factory)
    redis = redis_factory()
    # The SQLite database is written by another process; the capture runs
    # as the postgres user, as the tail below does.
    db, log = open_dir(archived.base / "app") / "app.db", archived.base / "writer.log"
    Writer(db, log, 0, ()).wait()
    with archived.config.open("a") as f:
        f.write(
            f'\n[sources.cache]\nkind = "redis"\nurl = "{redis.url}"\nstreams = ["{M}"]\n'
            'capture = "streams"\n'
        )
        f.write(f'\n[sources.app]\nkind = "sqlite"\npath = "{db}"\n')
    for path in db.parent.iterdir():
        path.chmod(0o666)
    c = redis.client()
    archived.pitr("backup", "--source", "db")
    archived.pitr("backup", "--source", "cache")
    tails = [
        TailProcess(archived.config, "--source", name, "--batch-seconds", "0.2", user="postgres")
        for name in ("cache", "app")
    ]
    try:
        # The SQLite capture's first base copy opens its window.
        wait_until(lambda: info_of(archived, "app")["backups"], 60, "a SQLite base copy")
        archived.marker(1)
        r1 = c.xadd(M, {"marker": "1"})
        Writer(db, log, 2, ("--name", "before")).wait()
        before = rows(db)
        out = archived.pitr("mark", "before-change", "--wait", "30s").stdout
        assert "cache (redis) archived up to" in out and "db (postgres) restore point" in out
        assert "app (sqlite) archived up to" in out
        archived.marker(2)
        c.xadd(M, {"marker": "2"})
        Writer(db, log, 2, ("--name", "after")).wait()
        archived.switch_and_wait()
        wait_until(
            lambda: len(archived_entries_of(archived.config, "cache")) >= 2, 60, "stream entries"
        )
    finally:
        stopped = [tail.stop(signal.SIGTERM) for tail in tails]
    assert [code for code, _, _ in stopped] == [0, 0], stopped

    dst = redis_factory()
    pgdata, into = archived.base / "r-all", archived.base / "r-app.db"
    out = archived.pitr(
        "restore",
        "--to",
        "before-change",
        "--pgdata",
        str(pgdata),
        "--redis-url",
        dst.url,
        "--into",
        str(into),
    ).stdout
    assert "target: mark 'before-change': app at" in out
    assert [fields[b"marker"] for _, fields in dst.client().xrange(M)] == [b"1"]
    assert dst.client().xrange(M)[0][0] == r1
    assert rows(into) == before and {name for name, _ in before} == {"before"}
    cluster = start(archived, pgdata)
    try:
        assert markers_in(cluster) == [1]
    finally:
        cluster.stop()
