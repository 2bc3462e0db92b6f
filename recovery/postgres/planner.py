"""The PostgreSQL recovery planner: a pure function from what the catalog
knows and a target instant to a plan, or a PlanError that says why not.

Timelines: the target timeline is the newest one that already existed at the
target (its .history file was written at promotion). Its history says which
ancestor timeline each range of WAL is read from, as PostgreSQL does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from catalog.wal import HistoryEntry, lsn_segno, segment_name
from recovery.errors import PlanError

INFINITE_LSN = 1 << 64


@dataclass(frozen=True)
class BackupPoint:
    id: str
    timeline: int
    start_lsn: int
    stop_lsn: int
    finished_at: datetime


@dataclass(frozen=True)
class TimelineInfo:
    timeline: int
    history: tuple[HistoryEntry, ...]  # ancestors, oldest first
    created_at: datetime  # when the .history file was written (promotion)


@dataclass(frozen=True)
class Span:
    """A stretch of WAL read from one timeline: [begin_lsn, end_lsn)."""

    timeline: int
    begin_lsn: int
    end_lsn: int


@dataclass(frozen=True)
class PgTarget:
    """Where PostgreSQL's replay stops: one recovery_target_* form.

    form: time (recovery_target_time, the plan's target), name (a restore
    point), lsn, xid, latest (no target: all archived WAL) or immediate (the
    backup's consistent point)."""

    form: str = "time"
    name: str | None = None
    lsn: int | None = None
    xid: int | None = None
    inclusive: bool = True
    action: str = "promote"


@dataclass(frozen=True)
class PgPlan:
    target: datetime  # the instant; for other forms, when the WAL replayed ends
    timeline: int
    backup: BackupPoint
    chain: tuple[tuple[str, datetime], ...]  # segment names from the backup on, with end times
    needed: int  # how many of chain's segments reach the target
    recoverable_from: datetime
    recoverable_to: datetime
    goal: PgTarget = PgTarget()

    @property
    def first_segment(self) -> str:
        return self.chain[0][0]

    @property
    def last_needed_segment(self) -> str:
        return self.chain[self.needed - 1][0]


def ancestry(timeline: int, timelines: Mapping[int, TimelineInfo]) -> list[Span]:
    """The spans of WAL that make up a timeline's history."""
    info = timelines.get(timeline)
    history = info.history if info else ()
    spans = []
    begin = 0
    for entry in history:
        spans.append(Span(entry.parent, begin, entry.switch_lsn))
        begin = entry.switch_lsn
    spans.append(Span(timeline, begin, INFINITE_LSN))
    return spans


def timeline_for_segment(segno: int, spans: list[Span], seg_size: int) -> int:
    """The newest timeline whose span begins at or before this segment: the
    file PostgreSQL asks for (a switch segment is read from the new timeline)."""
    tli = spans[0].timeline
    for span in spans:
        if lsn_segno(span.begin_lsn, seg_size) <= segno:
            tli = span.timeline
    return tli


def on_history(backup: BackupPoint, spans: list[Span]) -> bool:
    """Whether the backup's consistent point lies on this history."""
    return any(
        s.timeline == backup.timeline and s.begin_lsn <= backup.stop_lsn <= s.end_lsn for s in spans
    )


def walk_chain(
    backup: BackupPoint,
    spans: list[Span],
    segments: Mapping[tuple[int, int], datetime],
    seg_size: int,
) -> tuple[list[tuple[str, datetime]], int]:
    """Archived segments from the backup's start, in order, up to the first
    missing one; and the number of that first missing segment."""
    chain: list[tuple[str, datetime]] = []
    segno = lsn_segno(backup.start_lsn, seg_size)
    while True:
        tli = timeline_for_segment(segno, spans, seg_size)
        end = segments.get((tli, segno))
        if end is None:
            return chain, segno
        chain.append((segment_name(tli, segno, seg_size), end))
        segno += 1


def choose_timeline(
    target: datetime, backups: Iterable[BackupPoint], timelines: Mapping[int, TimelineInfo]
) -> int:
    existing = {1} | {t.timeline for t in timelines.values() if t.created_at <= target}
    existing |= {b.timeline for b in backups if b.finished_at <= target}
    return max(existing)


def window(
    backups: list[BackupPoint],
    segments: Mapping[tuple[int, int], datetime],
    timelines: Mapping[int, TimelineInfo],
    seg_size: int,
) -> tuple[datetime | None, datetime | None]:
    """Earliest and latest instants any restore can reach."""
    earliest = latest = None
    for b in backups:
        spans = ancestry(_newest_descendant(b, timelines, seg_size), timelines)
        chain, _ = walk_chain(b, spans, segments, seg_size)
        if not reaches_consistency(b, chain, seg_size):
            continue
        end = max(t for _, t in chain)
        if end < b.finished_at:
            continue  # no archived WAL after this backup's end yet
        earliest = b.finished_at if earliest is None else min(earliest, b.finished_at)
        latest = end if latest is None else max(latest, end)
    return earliest, latest


def _newest_descendant(b: BackupPoint, timelines: Mapping[int, TimelineInfo], seg_size: int) -> int:
    best = b.timeline
    for tli in timelines:
        if tli > best and on_history(b, ancestry(tli, timelines)):
            best = tli
    return best


def reaches_consistency(b: BackupPoint, chain: list[tuple[str, datetime]], seg_size: int) -> bool:
    needed = lsn_segno(b.stop_lsn - 1, seg_size) - lsn_segno(b.start_lsn, seg_size) + 1
    return len(chain) >= needed


def fmt(t: datetime | None) -> str:
    return "none" if t is None else t.isoformat().replace("+00:00", "Z")


def plan_postgres(
    source: str,
    target: datetime,
    backups: list[BackupPoint],
    segments: Mapping[tuple[int, int], datetime],
    timelines: Mapping[int, TimelineInfo],
    seg_size: int = 16 << 20,
) -> PgPlan:
    """Newest base backup that ended before the target on the target's
    timeline, and the archived WAL from its start through the target."""
    if not backups:
        raise PlanError(f"restore {source}: no base backup is archived (run pitr backup)")
    w_from, w_to = window(backups, segments, timelines, seg_size)
    win = f"recoverable window: {fmt(w_from)} .. {fmt(w_to)}"
    timeline = choose_timeline(target, backups, timelines)
    spans = ancestry(timeline, timelines)
    candidates = sorted(
        (b for b in backups if b.finished_at <= target and on_history(b, spans)),
        key=lambda b: b.finished_at,
        reverse=True,
    )
    if not candidates:
        if w_from is not None and target < w_from:
            raise PlanError(
                f"restore {source}: target {fmt(target)} is before the oldest backup; {win}"
            )
        raise PlanError(
            f"restore {source}: no backup on timeline {timeline}'s history ended before "
            f"{fmt(target)}; {win}"
        )
    backup = candidates[0]
    chain, missing = walk_chain(backup, spans, segments, seg_size)
    missing_name = segment_name(timeline_for_segment(missing, spans, seg_size), missing, seg_size)
    if not reaches_consistency(backup, chain, seg_size):
        raise PlanError(
            f"restore {source}: WAL of backup {backup.id} is incomplete: segment "
            f"{missing_name} is missing; {win}"
        )
    chain_end = max(t for _, t in chain)
    if target > chain_end:
        on_spans = {x.timeline for x in spans}
        if any(s > missing and tli in on_spans for (tli, s) in segments):
            raise PlanError(
                f"restore {source}: gap at segment {missing_name}: WAL after "
                f"{fmt(chain_end)} cannot be replayed; {win}"
            )
        raise PlanError(
            f"restore {source}: target {fmt(target)} is after the newest archived point "
            f"({fmt(chain_end)}); {win}"
        )
    needed = next((i + 1 for i, (_, t) in enumerate(chain) if t >= target), len(chain))
    stop = lsn_segno(backup.stop_lsn - 1, seg_size) - lsn_segno(backup.start_lsn, seg_size) + 1
    return PgPlan(
        target=target,
        timeline=timeline,
        backup=backup,
        chain=tuple(chain),
        needed=max(needed, stop),
        recoverable_from=backup.finished_at if w_from is None else w_from,
        recoverable_to=chain_end,
    )
