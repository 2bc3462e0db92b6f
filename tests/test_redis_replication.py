"""The replication capture against a real redis-server: the whole keyspace
back to instants between phases of writes, across a dropped link and a full
resync, and refused by a user without the PSYNC right (the default capture
then falls back to the stream tailer and snapshots)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from archiver.redis.replication import ReplicationCapture, ReplicationRefused, now_ms
from catalog.replication import repl_batch_key
from catalog.repository import Repository
from recovery.redis.replay import batches, copy_keys, epochs, replay_to
from tests.harness import wait_until
from tests.redisserver import RedisFactory, RedisServer
from tests.redissupport import TailProcess, make_source

QUIET = 0.3


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    repo, _ = Repository.init(
        (tmp_path / "repo").as_uri(), f"sqlite:///{tmp_path / 'repo' / 'catalog.db'}"
    )
    try:
        yield repo
    finally:
        repo.close()


class Running:
    """A capture in a thread of the test."""

    def __init__(self, repo: Repository, url: str) -> None:
        self.capture = ReplicationCapture(repo, "cache", url)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.capture.run(self.stop)
        except BaseException as e:  # the test reads it
            self.error = e

    def wait_synced(self, client: Any) -> None:
        deadline = time.monotonic() + 20
        while client.info("replication")["connected_slaves"] < 1 or not self.capture.epoch:
            assert time.monotonic() < deadline, "the capture never synced"
            time.sleep(0.02)

    def wait_durable(self, client: Any) -> None:
        """Until everything the server propagated so far is stored."""
        goal = client.info("replication")["master_repl_offset"]
        deadline = time.monotonic() + 20
        while self.capture.durable < goal:
            assert time.monotonic() < deadline, f"stuck at {self.capture.durable} < {goal}"
            time.sleep(0.02)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert self.error is None, self.error


def state(client: Any, pattern: str = "*") -> dict[bytes, Any]:
    """The logical content of every key: type, value, and whether it has a TTL."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=pattern):
        kind = client.type(key)
        value: Any
        if kind == b"string":
            value = client.get(key)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"set":
            value = client.smembers(key)
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = client.xrange(key)
        out[key] = (kind, value, client.pttl(key) > 0)
    return out


def phase_one(c: Any) -> None:
    c.set("cb:str", "a")
    c.incrby("cb:counter", 5)
    c.hset("cb:health", mapping={"db": "up", "cache": "up"})
    c.rpush("cb:queue", "j1", "j2", "j3")
    c.sadd("cb:set", "x", "y")
    c.zadd("cb:z", {"m1": 1, "m2": 2})
    c.xadd("cb:stream:ev", {"e": "1"})
    c.set("cb:ttl", "v", px=600_000)
    c.set("other:k", "outside")


def phase_two(c: Any) -> None:
    c.incr("cb:counter")
    c.lpop("cb:queue")
    c.hset("cb:health", "db", "down")
    c.srem("cb:set", "x")
    c.zincrby("cb:z", 5, "m1")
    c.xadd("cb:stream:ev", {"e": "2"})
    tx = c.pipeline(transaction=True)
    tx.set("cb:tx:a", "1")
    tx.set("cb:tx:b", "1")
    tx.execute()
    c.rename("cb:str", "cb:renamed")
    c.delete("cb:set")
    c.persist("cb:ttl")


def phase_three(c: Any) -> None:
    c.set("cb:renamed", "b", px=900_000)
    c.rpush("cb:queue", "j4")
    c.incr("cb:counter")
    c.set("other:k", "changed")


def run_phases(c: Any, phases: list[Callable[[Any], None]]) -> list[tuple[int, dict[bytes, Any]]]:
    """Each phase then a quiet moment: the instant in its middle and the state then."""
    marks = []
    for phase in phases:
        phase(c)
        time.sleep(QUIET / 2)
        marks.append((now_ms(), state(c)))
        time.sleep(QUIET / 2)
    return marks


def restored(repo: Repository, at_ms: int) -> dict[bytes, Any]:
    scratch, _ = replay_to(repo, "cache", at_ms)
    try:
        return state(scratch.client)
    finally:
        scratch.close()


def test_every_type_back_to_instants_between_phases(
    repo: Repository, redis_server: RedisServer, redis_factory: RedisFactory
) -> None:
    c = redis_server.client()
    c.set("cb:before", "in the base")
    cap = Running(repo, redis_server.url)
    cap.wait_synced(c)
    marks = run_phases(c, [phase_one, phase_two, phase_three])
    cap.wait_durable(c)
    cap.finish()
    assert len(epochs(repo, "cache")) == 1
    for at_ms, expected in marks:
        assert restored(repo, at_ms) == expected
    # Into a target: only the patterns' keys, a key outside them untouched.
    target = redis_factory().client()
    target.set("other:k", "mine")
    at_ms, expected = marks[1]
    scratch, result = replay_to(repo, "cache", at_ms)
    try:
        copy_keys(scratch, target, ["cb:*"], result)
    finally:
        scratch.close()
    assert state(target, "cb:*") == {k: v for k, v in expected.items() if k.startswith(b"cb:")}
    assert target.get("other:k") == b"mine"
    assert result.keys == len([k for k in expected if k.startswith(b"cb:")])


def test_a_cut_inside_multi_exec_keeps_all_or_none(
    repo: Repository, redis_server: RedisServer
) -> None:
    c = redis_server.client()
    cap = Running(repo, redis_server.url)
    cap.wait_synced(c)
    # A script's effects are propagated as MULTI ... EXEC and arrive together.
    script = "for i=1,200 do redis.call('SET', 'cb:s:'..i, i) end return 1"
    for _ in range(20):
        c.eval(script, 0)
    cap.wait_durable(c)
    cap.finish()
    docs = list(batches(repo, "cache", cap.capture.epoch))
    instants = sorted({ms for d in docs for _, ms in d["marks"]})
    for at_ms in [instants[0] - 1, *instants]:
        keys = len(restored(repo, at_ms))
        assert keys in (0, 200), f"a transaction was split at {at_ms}: {keys} keys"


def test_dropped_link_resumes_without_loss(repo: Repository, redis_server: RedisServer) -> None:
    c = redis_server.client()
    cap = Running(repo, redis_server.url)
    cap.wait_synced(c)
    for i in range(3000):
        c.incr("cb:n")
        if i == 1500:
            c.client_kill_filter(_type="replica")
    time.sleep(QUIET)
    cap.wait_durable(c)
    cap.finish()
    assert cap.capture.stats.resumes >= 1
    assert len(epochs(repo, "cache")) == 1  # PSYNC continued the epoch
    docs = list(batches(repo, "cache", cap.capture.epoch))
    assert any(d["resumed_from_ms"] for d in docs), "the outage was not recorded"
    for a, b in zip(docs, docs[1:], strict=False):
        assert a["end"] == b["start"]
    assert restored(repo, now_ms())[b"cb:n"][1] == b"3000"


def test_backlog_too_small_starts_a_new_epoch(repo: Repository, redis_server: RedisServer) -> None:
    c = redis_server.client()
    c.config_set("repl-backlog-size", 16384)
    cap = Running(repo, redis_server.url)
    cap.wait_synced(c)
    c.set("cb:side", "one")
    time.sleep(QUIET)
    before = (now_ms(), state(c))
    cap.stop.set()
    cap.thread.join(30)
    for i in range(2000):  # far more than the backlog holds while away
        c.set(f"cb:fill:{i % 50}", "x" * 100)
    cap.stop.clear()
    cap.thread = threading.Thread(target=cap._run, daemon=True)
    cap.thread.start()
    deadline = time.monotonic() + 20
    while len(epochs(repo, "cache")) < 2:
        assert time.monotonic() < deadline, "no full resync"
        time.sleep(0.05)
    c.set("cb:side", "two")
    time.sleep(QUIET)
    after = (now_ms(), state(c))
    cap.wait_durable(c)
    cap.finish()
    for at_ms, expected in (before, after):
        assert restored(repo, at_ms) == expected


def test_a_user_without_psync_is_refused(repo: Repository, redis_server: RedisServer) -> None:
    c = redis_server.client()
    c.acl_setuser(
        "app", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", "-psync"]
    )
    url = f"redis://app:secret@127.0.0.1:{redis_server.port}/0"
    with pytest.raises(ReplicationRefused, match="PSYNC"):
        ReplicationCapture(repo, "cache", url).run(threading.Event())


def test_a_killed_archiver_continues_its_epoch(redis_factory: RedisFactory, tmp_path: Path) -> None:
    src = make_source(redis_factory(), tmp_path, capture="replication")
    c = src.client()
    tail = TailProcess(src.config, "--source", "cache")
    with src.repo() as repo:
        wait_until(lambda: epochs(repo, "cache"), 30, "a replication base")
        for i in range(2000):
            c.incr("cb:n")
            if i == 1000:
                tail.kill9()
                tail = TailProcess(src.config, "--source", "cache")
        (epoch,) = epochs(repo, "cache")

        def stored() -> int:
            return len(list(batches(repo, "cache", epoch.name)))

        def grew(before: int) -> bool:
            return stored() > before

        for _ in range(3):  # quiet moments: each write waits for a batch of its own
            before = stored()
            c.incr("cb:n")
            wait_until(partial(grew, before), 30, "a batch of its own")
        code, _, err = tail.stop(signal.SIGTERM)
        assert code == 0, err
        docs = list(batches(repo, "cache", epoch.name))
        assert all(a["end"] == b["start"] for a, b in zip(docs, docs[1:], strict=False))
        assert any(d["resumed_from_ms"] for d in docs)
        assert restored(repo, now_ms())[b"cb:n"][1] == b"2003"
    assert src.pitr("check", "--source", "cache").returncode == 0
    # A batch lost from the store is a hole in its epoch's offsets, once the
    # catalog (check reads it) is rebuilt from what the store holds.
    assert len(docs) >= 3
    middle = docs[-2]
    (tmp_path / "repo" / repl_batch_key("cache", epoch.name, middle["start"])).unlink()
    src.pitr("catalog", "rebuild", "--force")
    out = src.pitr("check", "--source", "cache", check=3).stdout
    assert f"no batch holds offsets {middle['start']}..{middle['end']}" in out, out


def test_keys_alive_at_the_target_come_back_though_their_ttl_ran_out_since(
    repo: Repository, redis_server: RedisServer, redis_factory: RedisFactory
) -> None:
    """Restored after the keys' TTLs have run out in real time: the base's
    key, a counter incremented while alive, and a key expired before T."""
    c = redis_server.client()
    c.config_set("repl-diskless-sync-delay", 0)  # the base at once, before its key expires
    set_at = {"cb:in-base": now_ms()}
    c.set("cb:in-base", "b", px=3000)
    cap = Running(repo, redis_server.url)
    cap.wait_synced(c)
    set_at["cb:counter"] = now_ms()
    c.set("cb:counter", 5, px=3000)
    c.set("cb:gone", "x", px=100)
    time.sleep(0.3)
    c.incr("cb:counter")  # keeps its TTL
    at = now_ms()
    time.sleep(QUIET / 2)
    c.set("cb:after", "later")
    cap.wait_durable(c)
    cap.finish()
    wait_until(lambda: now_ms() > max(set_at.values()) + 3500, 10, "every TTL to run out")
    scratch, result = replay_to(repo, "cache", at)
    target = redis_factory().client()
    try:
        copy_keys(scratch, target, ["cb:*"], result)
    finally:
        scratch.close()
    assert target.get("cb:in-base") == b"b" and target.get("cb:counter") == b"6"
    assert target.get("cb:gone") is None and target.get("cb:after") is None
    assert result.keys == 2 and result.expired == 0
    for key, when in set_at.items():  # at most what was left at T: the SET came after `when`
        assert 0 < target.pttl(key) <= when + 3000 - at + 50, key
