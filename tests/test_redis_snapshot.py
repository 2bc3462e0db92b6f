"""Redis keyspace snapshots and their restore, against real redis-server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archiver.redis.keys import sorted_keys
from archiver.redis.snapshot import take_snapshot
from catalog.db.models import Backup, BackupObject
from catalog.queries import get_source
from catalog.records import backup_key
from catalog.repository import Repository
from recovery.errors import TargetNotEmpty
from recovery.redis.plan import load_snapshots, plan_redis
from recovery.redis.restore import RedisRestoreResult, restore_redis
from tests.servers import RedisFactory, RedisServer

PATTERNS = ["cb:*", "cb:stream:*"]


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    repo, _ = Repository.init(
        (tmp_path / "repo").as_uri(), f"sqlite:///{tmp_path / 'repo' / 'catalog.db'}"
    )
    try:
        yield repo
    finally:
        repo.close()


def snapshot(repo: Repository, server: RedisServer, **kwargs: Any) -> Any:
    return take_snapshot(repo, "cache", server.url, ["cb:*"], ["cb:stream:*"], **kwargs)


def restore(
    repo: Repository,
    target: datetime,
    url: str,
    covered: datetime | None = None,
    force: bool = False,
) -> RedisRestoreResult:
    """Plan from the catalog's snapshots (no stream batches) and restore."""
    with repo.catalog.session() as s:
        src = get_source(s, "cache")
        assert src is not None
        snaps = load_snapshots(s, src.id)
    plan = plan_redis("cache", target, snaps, [], [], covered)
    return restore_redis(repo, plan, url, PATTERNS, force=force)


def populate(c: Any) -> None:
    c.set("cb:str", b"\x00binary\xff")
    c.set("cb:int", 42)
    c.hset("cb:hash", mapping={"f": "v", b"\xff": b"\x00"})
    c.hset("cb:bighash", mapping={f"f{i}": "x" * 80 for i in range(200)})
    c.rpush("cb:list", "a", "b", "a", b"\x01")
    c.rpush("cb:biglist", *[f"item-{i}" * 10 for i in range(300)])
    c.sadd("cb:intset", 1, 2, 3)
    c.sadd("cb:set", "x", "y", b"\xfe")
    c.zadd("cb:zset", {"a": 1, "b": 2.5, "c": -3})
    c.set("cb:ttl:long", "stays", px=100_000)
    c.set("cb:ttl:short", "expires", px=10_000)
    c.set("other:key", "not in the patterns")
    s = "cb:stream:orders"
    ids = [c.xadd(s, {"n": str(i), "dup": "1"}) for i in range(4)]
    c.xgroup_create(s, "workers", id="0")
    c.xgroup_create(s, "late", id="$")
    c.xreadgroup("workers", "w1", {s: ">"}, count=2)
    c.xreadgroup("workers", "w2", {s: ">"}, count=1)
    c.xack(s, "workers", ids[0])


def view(c: Any, key: bytes) -> Any:
    """A comparable picture of a key's value (and a stream's groups)."""
    t = c.type(key)
    if t == b"string":
        return c.get(key)
    if t == b"hash":
        return c.hgetall(key)
    if t == b"list":
        return c.lrange(key, 0, -1)
    if t == b"set":
        return c.smembers(key)
    if t == b"zset":
        return c.zrange(key, 0, -1, withscores=True)
    assert t == b"stream"
    groups = []
    for g in c.xinfo_groups(key):
        pending = c.xpending_range(key, g["name"], "-", "+", 100)
        groups.append(
            (
                g["name"],
                g["last-delivered-id"],
                g["pending"],
                [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pending],
            )
        )
    return c.xrange(key), c.xinfo_stream(key)["last-generated-id"], groups


def keyspace(c: Any) -> dict[bytes, Any]:
    return {k: (c.type(k), view(c, k)) for k in sorted(c.keys("*"))}


def test_every_type_round_trips_with_ttls_relative_to_the_target(
    repo: Repository, redis_factory: RedisFactory
) -> None:
    src, dst = redis_factory(), redis_factory()
    c = src.client()
    populate(c)
    before = keyspace(c)
    result = snapshot(repo, src)
    assert result.record.details["keys"] == 12 and len(result.record.details["streams"]) == 1

    target = result.record.started_at + timedelta(seconds=30)
    done = restore(repo, target, dst.url, covered=target + timedelta(seconds=30))
    assert done.keys == 11 and done.expired == 1

    d = dst.client()
    got = keyspace(d)
    expected = {k: v for k, v in before.items() if k not in (b"cb:ttl:short", b"other:key")}
    assert got == expected
    # 100 s at the snapshot, 30 s later at the target: about 70 s left.
    assert 60_000 < d.pttl("cb:ttl:long") <= 70_000
    assert d.pttl("cb:str") == -1
    # The groups: where each one was, and who holds which pending entry.
    groups = got[b"cb:stream:orders"][1][2]
    assert [(g[0], g[2]) for g in groups] == [(b"late", 0), (b"workers", 2)]
    assert [p[1] for p in groups[1][3]] == [b"w1", b"w2"]


def test_the_snapshot_is_recorded_before_the_catalog_row(
    repo: Repository, redis_server: RedisServer
) -> None:
    c = redis_server.client()
    populate(c)
    result = snapshot(repo, redis_server)
    fact = repo.get_record(backup_key("cache", "redis_snapshot", result.id))
    assert fact["type"] == "backup" and fact["kind"] == "redis_snapshot"
    with repo.catalog.session() as s:
        row = s.get(Backup, result.id)
        assert row is not None
        assert row.kind == "redis_snapshot" and row.manifest_oid == fact["manifest_oid"]
        assert row.details == fact["details"]
        objects = set(s.scalars(select(BackupObject.oid).where(BackupObject.backup_id == row.id)))
    manifest = json.loads(repo.get_chunk(fact["manifest_oid"]))
    assert objects == {fact["manifest_oid"], *manifest["chunks"]}
    assert manifest["keys"] == result.record.details["keys"]
    last = c.xinfo_stream("cb:stream:orders")["last-generated-id"].decode()
    assert manifest["streams"]["cb:stream:orders"]["last_id"] == last
    assert fact["details"]["streams"] == {"cb:stream:orders": last}


def test_unchanged_keys_cost_nothing_even_in_another_scan_order(
    repo: Repository, redis_server: RedisServer
) -> None:
    c = redis_server.client()
    for i in range(400):
        c.set(f"cb:k:{i:04d}", hashlib.sha256(str(i).encode()).hexdigest() * 3)
    small = {"min_chunk": 4 << 10, "max_chunk": 64 << 10, "divisor": 4, "batch_keys": 50}
    first = snapshot(repo, redis_server, **small)
    assert first.record.details["chunks"] >= 8

    c.set("cb:k:0200", "changed")
    second = snapshot(repo, redis_server, **small)
    chunks = {}
    with repo.catalog.session() as s:
        for snap_id in (first.id, second.id):
            b = s.get(Backup, snap_id)
            assert b is not None
            chunks[snap_id] = json.loads(repo.get_chunk(b.manifest_oid))["chunks"]
    assert len(set(chunks[second.id]) - set(chunks[first.id])) <= 2
    assert second.record.stored_bytes * 4 < first.record.stored_bytes

    # A restarted server scans in another order; the chunks are the same.
    redis_server.restart(keep_data=True)
    third = snapshot(repo, redis_server, **small)
    with repo.catalog.session() as s:
        b = s.get(Backup, third.id)
        assert b is not None
        assert json.loads(repo.get_chunk(b.manifest_oid))["chunks"] == chunks[second.id]


def test_key_names_are_merged_in_order_from_spilled_runs(redis_server: RedisServer) -> None:
    c = redis_server.client()
    names = [f"k:{i}".encode() for i in range(60)] + [b"k:\xff", b"k:\x00"]
    for n in names:
        c.set(n, 1)
    c.set("other", 1)
    got = list(sorted_keys(c, ["k:*", "k:1*", "k:*"], run_size=7))
    assert got == sorted(names)


def test_a_snapshot_reaching_past_the_target_is_cut_back(
    repo: Repository, redis_factory: RedisFactory
) -> None:
    src, dst = redis_factory(), redis_factory()
    c = src.client()
    now = int(c.time()[0]) * 1000
    s = "cb:stream:future"
    early, late1, late2 = f"{now - 2000}-0", f"{now + 60_000}-0", f"{now + 90_000}-0"
    for entry_id in (early, late1, late2):
        c.xadd(s, {"at": entry_id}, id=entry_id)
    c.xgroup_create(s, "g", id="0")
    c.xreadgroup("g", "w", {s: ">"})
    result = snapshot(repo, src)

    done = restore(repo, result.record.started_at, dst.url)
    assert done.cut == 2
    d = dst.client()
    assert [e[0].decode() for e in d.xrange(s)] == [early]
    assert d.xinfo_stream(s)["last-generated-id"].decode() == early
    (group,) = d.xinfo_groups(s)
    assert group["last-delivered-id"].decode() == early
    assert [p["message_id"].decode() for p in d.xpending_range(s, "g", "-", "+", 10)] == [early]
    # The stream takes new entries right after the kept one.
    d.xadd(s, {"at": "next"}, id=f"{now - 1000}-0")
    assert d.xlen(s) == 2


def test_a_target_with_matching_keys_needs_force(
    repo: Repository, redis_factory: RedisFactory
) -> None:
    src, dst = redis_factory(), redis_factory()
    populate(src.client())
    result = snapshot(repo, src)
    d = dst.client()
    d.set("cb:old:1", "x")
    d.set("cb:old:2", "x")
    d.set("keep:me", "untouched")
    with pytest.raises(TargetNotEmpty, match="holds 2 keys matching"):
        restore(repo, result.record.started_at, dst.url)
    assert d.get("cb:old:1") == b"x" and d.dbsize() == 3

    done = restore(repo, result.record.started_at, dst.url, force=True)
    assert done.replaced == 2
    assert d.exists("cb:old:1", "cb:old:2") == 0
    assert d.get("keep:me") == b"untouched"
    assert d.get("cb:str") == b"\x00binary\xff"
