"""The Redis stream tailer against real redis-server: exactly-once archiving
across crashes and restarts, gaps, reconnection, stream discovery."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from catalog.db.models import StreamBatch
from catalog.queries import get_source
from catalog.redisformat import parse_id
from catalog.repository import Repository
from recovery.redis.plan import tail_covered
from tests.redissupport import (
    RedisSource,
    TailProcess,
    TailThread,
    instant_of,
    make_source,
    wait_for_entries,
)
from tests.servers import RedisServer, wait_until

S = "cb:stream:events"


@pytest.fixture
def source(redis_server: RedisServer, tmp_path: Path) -> RedisSource:
    return make_source(redis_server, tmp_path)


@pytest.fixture
def repo(source: RedisSource) -> Iterator[Repository]:
    with source.repo() as repo:
        yield repo


def ids_of(source: RedisSource) -> list[tuple[bytes, bytes]]:
    return [(stream, entry_id) for stream, entry_id, _ in source.archived()]


def tail_until(source: RedisSource, repo: Repository, archived: int, **kw: float) -> TailThread:
    """A tailer started on source, once `archived` entries are archived."""
    tail = TailThread(repo, "cache", source.server.url, **kw)
    wait_for_entries(source, archived)
    return tail


def test_sigkill_mid_batch_then_restart_archives_every_entry_once(source: RedisSource) -> None:
    c = source.client()
    args = ("--batch-count", "4", "--batch-seconds", "60")
    tail = TailProcess(source.config, *args)
    try:
        written = [(b"cb:stream:a", c.xadd("cb:stream:a", {"n": i})) for i in range(10)]
        written += [(b"cb:stream:b", c.xadd("cb:stream:b", {"n": i})) for i in range(3)]
        wait_for_entries(source, 8)  # two full batches of a; the rest is only buffered
    finally:
        tail.kill9()
    assert len(source.archived()) == 8

    written += [(b"cb:stream:a", c.xadd("cb:stream:a", {"n": i})) for i in range(10, 15)]
    tail = TailProcess(source.config, *args)
    wait_for_entries(source, 12)
    code, out, err = tail.stop(signal.SIGTERM)
    assert code == 0, err
    assert "stopped" in out

    archived = source.archived()
    got = [(stream, entry_id) for stream, entry_id, _ in archived]
    assert len(got) == len(set(got)), "an entry was archived twice"
    assert sorted(got) == sorted(written)
    fields = {(s, i): f for s, i, f in archived}
    assert fields[written[-1]] == [b"n", b"14"]


def test_a_batch_stored_before_a_crash_is_kept_as_it_is(
    source: RedisSource, repo: Repository
) -> None:
    c = source.client()
    ids = [c.xadd(S, {"n": i}) for i in range(6)]
    tail_until(source, repo, 6, batch_count=3, batch_seconds=60).stop()
    # A crash after the record of the second batch, before its row.
    with repo.catalog.session() as s:
        s.execute(delete(StreamBatch).where(StreamBatch.first_id == ids[3].decode()))
    ids += [c.xadd(S, {"n": i}) for i in range(6, 8)]

    tail = TailThread(repo, "cache", source.server.url, batch_count=100, batch_seconds=60)
    # The resumed position comes from the catalog: wait until the tailer has
    # actually read up to the last entry written, not just loaded its position.
    last = parse_id(ids[-1])
    wait_until(
        lambda: tail.tailer.streams and tail.tailer.streams[S.encode()].read >= last, 30, "a read"
    )
    tail.stop()
    assert ids_of(source) == [(S.encode(), i) for i in ids]
    with repo.catalog.session() as s:
        firsts = s.scalars(select(StreamBatch.first_id).order_by(StreamBatch.first_ms)).all()
    assert firsts == [ids[0].decode(), ids[3].decode(), ids[6].decode()]


def test_entries_trimmed_before_they_were_shipped_are_a_gap(
    source: RedisSource, repo: Repository
) -> None:
    c = source.client()
    first = [c.xadd(S, {"n": i}) for i in range(3)]
    shipped_b = [c.xadd("cb:stream:b", {"n": i}) for i in range(3)]
    tail_until(source, repo, 6, batch_seconds=0.05).stop()

    # While no tailer runs: entries of S come and are trimmed away unseen;
    # b is trimmed only below what was shipped, which loses nothing.
    lost = [c.xadd(S, {"n": i}) for i in range(3, 8)]
    kept = [c.xadd(S, {"n": i}) for i in range(8, 10)]
    c.xtrim(S, maxlen=2, approximate=False)
    c.xtrim("cb:stream:b", maxlen=1, approximate=False)
    tail = tail_until(source, repo, 8, batch_seconds=0.05)

    # And while it runs: entries added and trimmed in one transaction.
    with c.pipeline(transaction=True) as p:
        for i in range(10, 15):
            p.xadd(S, {"n": i})
        p.xtrim(S, maxlen=1, approximate=False)
        p.execute()
    wait_for_entries(source, 9)
    stats = tail.stop()

    gaps = sorted(source.gaps(), key=lambda g: g.detected_at)
    assert [(g.stream, g.from_id) for g in gaps] == [
        (S, first[-1].decode()),
        (S, kept[-1].decode()),
    ]
    assert gaps[0].to_id == kept[0].decode()
    assert all(g.detail.startswith("trimmed") for g in gaps)
    assert f"{len(lost)} entries" in gaps[0].detail and "4 entries" in gaps[1].detail
    assert stats.gaps == 2  # the one found on resume and the one found running
    archived = [i for s, i in ids_of(source) if s == S.encode()]
    assert archived[:5] == first + kept and len(archived) == 6
    assert [i for s, i in ids_of(source) if s == b"cb:stream:b"] == shipped_b


def test_a_recreated_stream_is_a_gap_and_is_followed_from_its_start(
    source: RedisSource, repo: Repository
) -> None:
    c = source.client()
    old = [c.xadd(S, {"n": i}) for i in range(3)]
    tail = tail_until(source, repo, 3, batch_seconds=0.05)
    with c.pipeline(transaction=True) as p:
        p.delete(S)
        p.xadd(S, {"n": "new"}, id="1-1")
        p.xadd(S, {"n": "new"}, id="2-1")
        p.execute()
    wait_for_entries(source, 5)
    tail.stop()
    (gap,) = source.gaps()
    assert gap.detail.startswith("recreated")
    assert (gap.from_id, gap.to_id) == (old[-1].decode(), "1-1")
    assert [i for _, i in ids_of(source)] == [b"1-1", b"2-1", *old]  # ordered by time


def test_the_tailer_reconnects_after_redis_restarts(source: RedisSource, repo: Repository) -> None:
    server = source.server
    c = source.client()
    written = [c.xadd(S, {"n": i}) for i in range(3)]
    tail = TailThread(repo, "cache", server.url, batch_seconds=0.05)
    try:
        wait_for_entries(source, 3)
        server.restart(keep_data=True)
        c = source.client()
        written += [c.xadd(S, {"n": i}) for i in range(3, 6)]
        wait_for_entries(source, 6)
        assert source.gaps() == []

        # Restarted empty: the stream is gone, then written again.
        server.restart(keep_data=False)
        c = source.client()
        written.append(c.xadd(S, {"n": "after"}))
        wait_for_entries(source, 7)
    finally:
        tail.stop()
    assert [i for _, i in ids_of(source)] == written
    (gap,) = source.gaps()
    assert gap.detail.startswith("recreated") and gap.from_id == written[5].decode()
    assert any("retrying" in m for m in tail.messages)


def test_new_streams_are_found_while_running_and_the_heartbeat_follows(
    source: RedisSource, repo: Repository
) -> None:
    c = source.client()
    tail = TailThread(repo, "cache", source.server.url, batch_seconds=0.05)
    try:
        c.xadd("other:stream", {"n": 1})
        last = [c.xadd(f"cb:stream:{n}", {"n": n}) for n in ("x", "y")][-1]
        wait_for_entries(source, 2)

        def covered() -> bool:
            with repo.catalog.session() as s:
                src = get_source(s, "cache")
                assert src is not None
                at = tail_covered(s, src.id)
            return at is not None and at >= instant_of(last)

        wait_until(covered, 30, "the heartbeat to pass the last entry")
    finally:
        tail.stop()
    assert sorted(s for s, _ in ids_of(source)) == [b"cb:stream:x", b"cb:stream:y"]
    assert sum("following" in m for m in tail.messages) == 2


def _batches(repo: Repository) -> list[tuple[str, str, int]]:
    with repo.catalog.session() as s:
        rows = s.execute(select(StreamBatch.first_id, StreamBatch.last_id, StreamBatch.count))
        return sorted(((a, b, n) for a, b, n in rows), key=lambda r: parse_id(r[0]))


def test_a_backlog_ships_in_groups_of_full_batches_and_resumes_across_them(
    source: RedisSource, repo: Repository
) -> None:
    c = source.client()
    with c.pipeline(transaction=False) as p:
        for i in range(62):
            p.xadd(S, {"n": i})
        ids = p.execute()
    # A backlog of 20 full batches (16 of them stored as one group) and two
    # entries that stay buffered: a batch closes by count or by age only.
    tail_until(source, repo, 60, batch_count=3, batch_seconds=60).stop()
    batches = _batches(repo)
    assert [n for _, _, n in batches[:20]] == [3] * 20
    assert [(a, b) for a, b, _ in batches[:20]] == [
        (ids[i].decode(), ids[i + 2].decode()) for i in range(0, 60, 3)
    ]
    # A record keeps the stream's entries-added counter as of its last entry,
    # once known: the tailer learns it when it has read up to the end.
    counters = [
        repo.get_record(f"records/cache/streams/{S.encode().hex()}/{first}")["added_at_last"]
        for first, _, _ in batches[:20]
    ]
    assert counters[16:] == [51, 54, 57, 60]
    assert all(n in (None, 3 * k + 3) for k, n in enumerate(counters))
    assert ids_of(source) == [(S.encode(), i) for i in ids]  # the last two, at the stop

    # A crash after the records of a group, before its rows: the next run,
    # with other batch bounds, adopts the record under its first ID and goes on.
    with repo.catalog.session() as s:
        lost = [first for first, _, _ in batches[5:]]
        s.execute(delete(StreamBatch).where(StreamBatch.first_id.in_(lost)))
    ids += [c.xadd(S, {"n": i}) for i in range(62, 70)]
    tail_until(source, repo, 70, batch_count=5, batch_seconds=0.2).stop()
    got = ids_of(source)
    assert got == [(S.encode(), i) for i in ids]
    assert len(set(got)) == len(got), "an entry was archived twice"
    assert _batches(repo)[: len(batches)] == batches  # the stored ones, adopted as they were
