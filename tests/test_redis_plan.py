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
    target: float
    snapshots: list[SnapshotPoint]
    # expectations: snapshot id, {stream: (after, reset, first IDs of the batches)}
    snapshot: str | None = None
    replays: dict[str, tuple[str, bool, list[str]]] = field(default_factory=dict)
    batches: list[BatchRef] = field(default_factory=lambda: BATCHES)
    gaps: list[GapFact] = field(default_factory=list)
    covered: float | None = 100
    gap_count: int = 0
    warnings: int = 0
    error: str | None = None


def on_s(after: float, *firsts: float) -> dict[str, tuple[str, bool, list[str]]]:
    """The replay of s: after its entry at second `after`, the batches starting at firsts."""
    return {S: (sid(after), False, [sid(f) for f in firsts])}


def recreated(target: float, snapshot_at: float, replay: tuple[str, bool, list[str]]) -> Case:
    """s recreated between seconds 30 and 60, its new entries archived from 61 on;
    snapshot a taken at snapshot_at."""
    return Case(
        target,
        [snap("a", snapshot_at, {S: snapshot_at})],
        "a",
        {S: replay},
        batches=[batch(S, 0, 30), batch(S, 60, 90, archived=61)],
        gaps=[gap(S, "recreated", 30, 60, detected=60.5)],
    )


A10 = snap("a", 10, {S: 10})
AB = [A10, snap("b", 40, {S: 40})]
# no tailer: snapshots alone, of no streams
UNTAILED = {"batches": [], "covered": None}

CASES = {
    "no snapshot": Case(50, [], error="no snapshot"),
    "before the oldest snapshot": Case(5, [snap("a", 10, {S: 9})], error="before the oldest"),
    "after the newest archived point": Case(
        120, [snap("a", 10, {S: 9})], error="after the newest archived point"
    ),
    "at the snapshot instant: only the batch holding the target's millisecond": Case(
        10, [A10], "a", on_s(10, 10)
    ),
    "between two snapshots: the older one, then entries after its copy": Case(
        34.5, AB, "a", on_s(10, 10, 20, 30)
    ),
    "after the newest snapshot: it, and only later batches": Case(
        55, [A10, snap("b", 40, {S: 42})], "b", on_s(42, 40, 50)
    ),
    "a snapshot taken exactly at the target counts": Case(40, AB, "b", on_s(40, 40)),
    "no tailer: only snapshot instants are reachable": Case(
        40, [snap("a", 10), snap("b", 40)], "b", **UNTAILED
    ),
    "no tailer: after the newest snapshot is refused": Case(
        41,
        [snap("a", 10), snap("b", 40)],
        error="recoverable window: 2025-01-16T12:00:10Z .. 2025-01-16T12:00:40Z",
        **UNTAILED,
    ),
    "a stream created after the snapshot starts at the snapshot": Case(
        65,
        [snap("a", 50, {S: 50})],
        "a",
        on_s(50, 50, 60) | {N: (f"{T0_MS + 49_999}-{(1 << 64) - 1}", False, [sid(55)])},
        batches=[*BATCHES, batch(N, 20, 25), batch(N, 55, 70)],
    ),
    "recreated after the snapshot and before the target: reset": recreated(
        80, 10, ("0-0", True, [sid(60)])
    ),
    "recreated after the target: the old stream goes on to the target": recreated(
        45, 10, (sid(10), False, [sid(0)])
    ),
    "recreated before the snapshot: the snapshot holds the new stream": recreated(
        80, 70, (sid(70), False, [sid(60)])
    ),
    "a trim gap inside the replayed range is refused (exit 3)": Case(
        80,
        [A10],
        gaps=[gap(S, "trimmed", 30, 45, detected=46), gap(S, "trimmed", 2, 5, detected=6)],
        error="across a recorded gap in stream",
    ),
    "a trim gap before the snapshot costs nothing": Case(
        80,
        [A10],
        "a",
        on_s(10, *range(10, 90, 10)),
        gaps=[gap(S, "trimmed", 2, 5, detected=6)],
    ),
    "a trim gap after the target costs nothing": Case(
        25,
        [A10],
        "a",
        on_s(10, 10, 20),
        gaps=[gap(S, "trimmed", 30, 45, detected=46)],
    ),
    "tailer behind the newest snapshot: entries missing are warned about": Case(
        45,
        [A10, snap("b", 60, {S: 60})],
        "a",
        on_s(10, 10),
        batches=[batch(S, 0, 9), batch(S, 10, 19)],
        covered=20,
        warnings=1,
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
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
