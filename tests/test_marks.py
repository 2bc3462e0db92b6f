"""pitr mark on a SQLite source and a Redis replication source: the mark
waits for the capture, and a restore to it brings back exactly what was
written before it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from recovery.redis.replay import epochs
from tests.badinput import expect_row
from tests.harness import wait_until
from tests.redisserver import RedisFactory
from tests.redissupport import TailProcess
from tests.redissupport import make_source as make_redis_source
from tests.sqlitesupport import make_source, rows


def test_mark_and_restore_to_it(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    proc = source.tail()
    try:
        source.write(3, name="a")
        before = rows(source.db)
        out = source.pitr("mark", "before-import", "--wait", "20s").stdout
        assert "mark before-import: app (sqlite) archived up to" in out
        source.write(3, name="b")
    finally:
        code, _, err = proc.stop()
    assert code == 0, err
    (mark,) = json.loads(source.pitr("info", "--output", "json").stdout)["sources"][0]["marks"]
    assert mark["name"] == "before-import" and mark["lsn"] is None

    into = tmp_path / "out.db"
    text = source.pitr("restore", "--to", "before-import", "--into", str(into)).stdout
    assert "integrity_check ok" in text
    assert rows(into) == before and len(before) == 3


def test_a_capture_that_is_not_running_fails_the_mark_and_records_nothing(
    tmp_path: Path,
) -> None:
    source = make_source(tmp_path)
    result = source.pitr("mark", "too-soon", "--wait", "1s", check=False)
    expect_row("mark-capture-behind", result)
    assert json.loads(source.pitr("info", "--output", "json").stdout)["sources"][0]["marks"] == []
    assert not list((tmp_path / "repo").glob("records/*/marks/*"))


def test_a_replication_captured_redis_source_is_marked_and_restored_to_it(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    source = make_redis_source(redis_factory(), tmp_path, capture=None)  # the default
    c = source.client()
    c.config_set("repl-ping-replica-period", 1)  # an idle server's heartbeat, every second
    tail = TailProcess(source.config, "--source", "cache")
    try:
        with source.repo() as repo:
            wait_until(lambda: epochs(repo, "cache"), 30, "a replication base")
        c.set("cb:k", "before")
        c.rpush("cb:queue", "a", "b")
        c.hset("cb:h", mapping={"f": "1"})
        out = source.pitr("mark", "before-deploy", "--wait", "20s").stdout
        assert "mark before-deploy: cache (redis) archived up to" in out, out
        c.set("cb:k", "after")
        c.lpop("cb:queue")
        c.hset("cb:h", "g", "2")
        c.set("cb:new", "x")
        time.sleep(0.5)
    finally:
        code, _, err = tail.stop()
    assert code == 0, err
    dst = redis_factory()
    out = source.pitr("restore", "--to", "before-deploy", "--redis-url", dst.url).stdout
    assert "restored 3 keys" in out, out
    d = dst.client()
    assert d.get("cb:k") == b"before" and d.get("cb:new") is None
    assert d.lrange("cb:queue", 0, -1) == [b"a", b"b"] and d.hgetall("cb:h") == {b"f": b"1"}


def test_expire_keeps_what_a_mark_needs_unless_told_otherwise(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    proc = source.tail()
    try:
        source.write(2, name="a")
        before = rows(source.db)
        source.pitr("mark", "old", "--wait", "20s")
        source.write(2, name="b")
        source.pitr("backup", "--source", "app")
        source.write(1, name="c")
        source.pitr("backup", "--source", "app")
    finally:
        code, _, err = proc.stop()
    assert code == 0, err

    def expire(*args: str) -> dict[str, Any]:
        out = source.pitr("expire", "--keep", "1", "--grace", "0s", "--output", "json", *args)
        (plan,) = json.loads(out.stdout)["sources"]
        return dict(plan)

    ignoring = expire("--ignore-marks", "--dry-run")
    plan = expire()
    by_mark = [k["id"] for k in plan["kept"] if k["reason"] == "needed by mark old"]
    assert len(by_mark) == 1 and len(plan["kept"]) == 2
    assert by_mark[0] in [b["id"] for b in ignoring["removed_backups"]]
    into = tmp_path / "old.db"
    source.pitr("restore", "--to", "old", "--into", str(into))
    assert rows(into) == before
