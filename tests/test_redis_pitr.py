"""Point-in-time restore of Redis through the command line, checked with
marker stream entries; and every source of a config to one instant."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path

from catalog.queries import get_source
from recovery.redis.plan import redis_window
from tests.pgsupport import markers_in, start_archiving
from tests.redissupport import (
    RedisSource,
    TailProcess,
    archived_entries_of,
    between,
    instant_of,
    make_source,
    wait_for_entries,
)
from tests.servers import ClusterFactory, PostgresCluster, RedisFactory, wait_until

M = "cb:stream:markers"
PAUSE = 0.2


def write_markers(c, first: int, last: int) -> list[bytes]:  # type: ignore[no-untyped-def]
    ids = []
    for n in range(first, last + 1):
        time.sleep(PAUSE)
        ids.append(c.xadd(M, {"marker": str(n)}))
    return ids


def markers(c) -> list[tuple[bytes, bytes]]:  # type: ignore[no-untyped-def]
    return [(entry_id, fields[b"marker"]) for entry_id, fields in c.xrange(M)]


def test_restore_to_an_instant_between_two_markers(
    redis_factory: RedisFactory, tmp_path: Path, repository
) -> None:
    src = make_source(redis_factory(), tmp_path, repository=repository)
    c = src.client()
    c.set("cb:health:a", "ok")
    c.hset("cb:metrics:x", mapping={"calls": 3})
    c.set("cb:circuit:y", "open", px=300_000)
    c.set("unrelated", "not archived")
    ids = [c.xadd(M, {"marker": "0"})]
    out = src.pitr("backup", "--source", "cache").stdout
    assert "4 keys (1 streams)" in out

    tail = TailProcess(src.config, "--batch-seconds", "0.2")
    ids += write_markers(c, 1, 5)
    c.set("cb:health:a", "changed after the snapshot")
    wait_for_entries(src, 6)
    code, _, err = tail.stop(signal.SIGTERM)
    assert code == 0, err
    with src.repo() as repo, repo.catalog.session() as s:
        source = get_source(s, "cache")
        assert source is not None
        earliest, latest = redis_window(s, source.id)
    assert earliest is not None and latest is not None
    assert earliest <= instant_of(ids[1]) and latest >= instant_of(ids[-1])

    dst = redis_factory()
    d = dst.client()
    target = between(ids[3], ids[4])  # after marker 3, before marker 4
    args = ("restore", "--source", "cache", "--to", target, "--redis-url", dst.url)
    dry = src.pitr(*args, "--dry-run").stdout
    assert "replay up to" in dry and "dry run" in dry
    assert d.dbsize() == 0

    out = src.pitr(*args).stdout
    assert "restored 4 keys" in out and "replayed 3 stream entries" in out
    assert markers(d) == [(ids[n], str(n).encode()) for n in range(4)]
    assert d.get("cb:health:a") == b"ok"  # keys as the snapshot holds them
    assert d.hgetall("cb:metrics:x") == {b"calls": b"3"}
    assert 0 < d.pttl("cb:circuit:y") <= 300_000
    assert not d.exists("unrelated")

    # Again: the target now holds the source's keys.
    refused = src.pitr(*args, check=3)
    assert "holds 4 keys" in refused.stderr and "--force" in refused.stderr

    d.set("cb:stale", "from before")
    d.set("keep:me", "not the source's")
    last = instant_of(ids[-1]).isoformat()
    src.pitr("restore", "--source", "cache", "--to", last, "--redis-url", dst.url, "--force")
    assert markers(d) == [(ids[n], str(n).encode()) for n in range(6)]
    assert not d.exists("cb:stale")
    assert d.get("keep:me") == b"not the source's"


def test_targets_outside_the_window_are_refused(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    src: RedisSource = make_source(redis_factory(), tmp_path)
    src.client().xadd(M, {"marker": "0"})
    none_yet = src.pitr("restore", "--source", "cache", "--to", "2020-01-01 00:00 UTC", check=3)
    assert "no snapshot" in none_yet.stderr
    src.pitr("backup", "--source", "cache")
    for when in ("2020-01-01 00:00 UTC", "2999-01-01 00:00 UTC"):
        r = src.pitr("restore", "--source", "cache", "--to", when, "--dry-run", check=3)
        assert "recoverable window" in r.stderr


def test_restore_without_source_takes_every_source_to_one_instant(
    pg_cluster: PostgresCluster,
    pg_cluster_factory: ClusterFactory,
    redis_factory: RedisFactory,
    shared_tmp: Path,
    repository,
) -> None:
    archived = start_archiving(pg_cluster, shared_tmp, pg_cluster_factory, repository)
    redis = redis_factory()
    with archived.config.open("a") as f:
        f.write(
            f'\n[sources.cache]\nkind = "redis"\nurl = "{redis.url}"\nstreams = ["{M}"]\n'
            'capture = "streams"\n'
        )
    c = redis.client()
    archived.pitr("backup", "--source", "db")
    archived.pitr("backup", "--source", "cache")
    tail = TailProcess(archived.config, "--batch-seconds", "0.2", user="postgres")
    try:
        pg1, r1 = archived.marker(1), c.xadd(M, {"marker": "1"})
        time.sleep(0.5)
        pg2, r2 = archived.marker(2), c.xadd(M, {"marker": "2"})
        archived.switch_and_wait()
        wait_until(
            lambda: len(archived_entries_of(archived.config, "cache")) >= 2, 60, "stream entries"
        )
    finally:
        code, _, err = tail.stop(signal.SIGTERM)
    assert code == 0, err

    after_1 = max(pg1, instant_of(r1))
    before_2 = min(pg2, instant_of(r2))
    assert before_2 - after_1 > timedelta(milliseconds=10)
    target = (after_1 + (before_2 - after_1) / 2).isoformat()
    dst = redis_factory()
    pgdata = archived.base / "restored"
    out = archived.pitr(
        "restore", "--to", target, "--pgdata", str(pgdata), "--redis-url", dst.url
    ).stdout
    assert "db (postgres)" in out and "cache (redis)" in out
    assert markers(dst.client()) == [(r1, b"1")]
    restored = archived.restored(pgdata)
    try:
        assert markers_in(restored) == [1]
    finally:
        restored.stop()


def test_a_stream_recreated_after_the_snapshot_comes_back_as_its_new_self(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    src = make_source(redis_factory(), tmp_path)
    c = src.client()
    old = [c.xadd(M, {"marker": f"old{n}"}) for n in range(3)]
    src.pitr("backup", "--source", "cache")
    tail = TailProcess(src.config, "--batch-seconds", "0.1")
    try:
        wait_for_entries(src, 3)
        with c.pipeline(transaction=True) as p:
            p.delete(M)
            p.xadd(M, {"marker": "new0"})
            p.execute()
        time.sleep(PAUSE)
        new = [c.xrange(M)[0][0], c.xadd(M, {"marker": "new1"})]
        wait_for_entries(src, 5)
        wait_until(src.gaps, 30, "the recreation to be recorded")
    finally:
        code, _, err = tail.stop(signal.SIGTERM)
    assert code == 0, err
    (gap,) = src.gaps()
    assert gap.detail.startswith("recreated") and gap.to_id == new[0].decode()

    dst = redis_factory()
    d = dst.client()
    base = ("restore", "--source", "cache", "--redis-url", dst.url, "--force")
    out = src.pitr(*base, "--to", instant_of(new[1]).isoformat()).stdout
    assert "was recreated" in out
    assert markers(d) == [(new[0], b"new0"), (new[1], b"new1")]
    # Before the recreation: the old stream, from the snapshot.
    just_before = instant_of(new[0]) - timedelta(milliseconds=1)
    src.pitr(*base, "--to", just_before.isoformat())
    assert markers(d) == [(i, f"old{n}".encode()) for n, i in enumerate(old)]
