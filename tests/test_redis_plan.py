"""The Redis restore planner, table-driven, without servers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from catalog.redisformat import to_ms
from catalog.reports import GapFact
from recovery.errors import PlanError
from recovery.redis.coverage import BatchRef
from recovery.redis.plan import SnapshotPoint, plan_redis, window

T0 = datetime(2025, 1, 16, 12, 0, tzinfo=UTC)
T0_MS = to_ms(T0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sid(seconds: float, seq: int = 0) -> str:
    """The stream ID of an entry written `seconds` after T0."""
    return f"{T0_MS + int(seconds * 1000)}-{seq}"


def snap(name: str, second: float, streams: dict[str, float] | None = None) -> SnapshotPoint:
    """A snapshot started at `second`, holding each stream up to its entry at a second."""
    last = {s: sid(v) for s, v in (streams or {}).items()}
    return SnapshotPoint(name, at(second), at(second + 1), f"m-{name}", 10, last)


def batch(stream: str, first: float, last: float, archived: float | None = None) -> BatchRef:
    return BatchRef(
        stream,
        sid(first),
        sid(last),
        T0_MS + int(first * 1000),
        T0_MS + int(last * 1000),
        int(last - first) + 1,
        f"o-{stream}-{first}",
        at(archived if archived is not None else last + 0.5),
    )


def gap(stream: str, kind: str, frm: float, to: float, detected: float) -> GapFact:
    return GapFact(stream, sid(frm), sid(to), f"{kind}: test", at(detected))


S = "cb:stream:s"
N = "cb:stream:new"
# the stream s: entries every second from 0 to 100, shipped in batches of 10
BATCHES = [batch(S, a, a + 9) for a in range(0, 100, 10)]


@dataclass
class Case:
    name: str
    target: float
    snapshots: list[SnapshotPoint]
    batches: list[BatchRef] = field(default_factory=lambda: BATCHES)
    gaps: list[GapFact] = field(default_factory=list)
    covered: float | None = 100
    # expectations: snapshot id, {stream: (after, reset, first IDs of the batches)}
    snapshot: str | None = None
    replays: dict[str, tuple[str, bool, list[str]]] = field(default_factory=dict)
    gap_count: int = 0
    warnings: int = 0
    error: str | None = None


CASES = [
    Case("no snapshot", 50, [], error="no snapshot"),
    Case("before the oldest snapshot", 5, [snap("a", 10, {S: 9})], error="before the oldest"),
    Case(
        "after the newest archived point",
        120,
        [snap("a", 10, {S: 9})],
        error="after the newest archived point",
    ),
    Case(
        "at the snapshot instant: only the batch holding the target's millisecond",
        10,
        [snap("a", 10, {S: 10})],
        snapshot="a",
        replays={S: (sid(10), False, [sid(10)])},
    ),
    Case(
        "between two snapshots: the older one, then entries after its copy",
        34.5,
        [snap("a", 10, {S: 10}), snap("b", 40, {S: 40})],
        snapshot="a",
        replays={S: (sid(10), False, [sid(10), sid(20), sid(30)])},
    ),
    Case(
        "after the newest snapshot: it, and only later batches",
        55,
        [snap("a", 10, {S: 10}), snap("b", 40, {S: 42})],
        snapshot="b",
        replays={S: (sid(42), False, [sid(40), sid(50)])},
    ),
    Case(
        "a snapshot taken exactly at the target counts",
        40,
        [snap("a", 10, {S: 10}), snap("b", 40, {S: 40})],
        snapshot="b",
        replays={S: (sid(40), False, [sid(40)])},
    ),
    Case(
        "no tailer: only snapshot instants are reachable",
        40,
        [snap("a", 10), snap("b", 40)],
        batches=[],
        covered=None,
        snapshot="b",
    ),
    Case(
        "no tailer: after the newest snapshot is refused",
        41,
        [snap("a", 10), snap("b", 40)],
        batches=[],
        covered=None,
        error="recoverable window: 2025-01-16T12:00:10Z .. 2025-01-16T12:00:40Z",
    ),
    Case(
        "a stream created after the snapshot starts at the snapshot",
        65,
        [snap("a", 50, {S: 50})],
        batches=[*BATCHES, batch(N, 20, 25), batch(N, 55, 70)],
        snapshot="a",
        replays={
            S: (sid(50), False, [sid(50), sid(60)]),
            N: (f"{T0_MS + 49_999}-{(1 << 64) - 1}", False, [sid(55)]),
        },
    ),
    Case(
        "recreated after the snapshot and before the target: reset",
        80,
        [snap("a", 10, {S: 10})],
        batches=[batch(S, 0, 30), batch(S, 60, 90, archived=61)],
        gaps=[gap(S, "recreated", 30, 60, detected=60.5)],
        snapshot="a",
        replays={S: ("0-0", True, [sid(60)])},
    ),
    Case(
        "recreated after the target: the old stream goes on to the target",
        45,
        [snap("a", 10, {S: 10})],
        batches=[batch(S, 0, 30), batch(S, 60, 90, archived=61)],
        gaps=[gap(S, "recreated", 30, 60, detected=60.5)],
        snapshot="a",
        replays={S: (sid(10), False, [sid(0)])},
    ),
    Case(
        "recreated before the snapshot: the snapshot holds the new stream",
        80,
        [snap("a", 70, {S: 70})],
        batches=[batch(S, 0, 30), batch(S, 60, 90, archived=61)],
        gaps=[gap(S, "recreated", 30, 60, detected=60.5)],
        snapshot="a",
        replays={S: (sid(70), False, [sid(60)])},
    ),
    Case(
        "a trim gap inside the replayed range is reported",
        80,
        [snap("a", 10, {S: 10})],
        gaps=[gap(S, "trimmed", 30, 45, detected=46), gap(S, "trimmed", 2, 5, detected=6)],
        snapshot="a",
        replays={S: (sid(10), False, [sid(a) for a in range(10, 90, 10)])},
        gap_count=1,
    ),
    Case(
        "tailer behind the newest snapshot: entries missing are warned about",
        45,
        [snap("a", 10, {S: 10}), snap("b", 60, {S: 60})],
        batches=[batch(S, 0, 9), batch(S, 10, 19)],
        covered=20,
        snapshot="a",
        replays={S: (sid(10), False, [sid(10)])},
        warnings=1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan(case: Case) -> None:
    covered = at(case.covered) if case.covered is not None else None
    if case.error:
        with pytest.raises(PlanError, match=case.error):
            plan_redis("cache", at(case.target), case.snapshots, case.batches, case.gaps, covered)
        return
    plan = plan_redis("cache", at(case.target), case.snapshots, case.batches, case.gaps, covered)
    assert plan.snapshot.id == case.snapshot
    got = {r.stream: (r.after, r.reset, [b.first_id for b in r.batches]) for r in plan.replays}
    assert got == case.replays
    assert len(plan.gaps) == case.gap_count
    assert len(plan.warnings) == case.warnings
    text = "\n".join(plan.describe())
    assert plan.snapshot.id in text and "recoverable window" in text


def test_errors_name_the_window() -> None:
    with pytest.raises(PlanError) as e:
        plan_redis("cache", at(5), [snap("a", 10, {S: 9})], BATCHES, [], at(100))
    assert "2025-01-16T12:00:10Z .. 2025-01-16T12:01:40Z" in str(e.value)


def test_target_time_is_cut_to_the_millisecond() -> None:
    assert to_ms(T0 + timedelta(microseconds=1999)) == T0_MS + 1
    plan = plan_redis(
        "cache", T0 + timedelta(seconds=20, microseconds=999), [snap("a", 0)], BATCHES, [], at(100)
    )
    assert plan.target_ms == T0_MS + 20_000


def test_window() -> None:
    assert window([], at(3)) == (None, None)
    assert window([snap("a", 10), snap("b", 5)], None) == (at(5), at(10))
    assert window([snap("a", 10)], at(50)) == (at(10), at(50))
    assert window([snap("a", 10)], at(1)) == (at(10), at(10))
