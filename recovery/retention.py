"""Retention: which backups, WAL files and stream batches a policy keeps.

The policy says which backups to keep (the N newest, those finished within
a duration, or both); the window they open must stay whole, so the backup
the planner would choose for any instant from the window's start on is kept
too (the newest backup older than the window's start, or one on another
timeline's history). WAL is removed only where it lies before a kept
backup's start on a history that backup is on, and is needed by none:
WAL ahead of every kept backup (where a backup in progress reads) stays.
.history files always stay. Stream batches and recorded gaps go when they
end at or before every kept snapshot's position in their stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from catalog.db.models import Backup, Source, StreamBatch, StreamGap
from catalog.redisformat import parse_id
from catalog.repository import Repository
from catalog.wal import lsn_segno
from recovery.coverage import SnapshotRef, snapshot_position
from recovery.postgres.planner import (
    BackupPoint,
    Span,
    TimelineInfo,
    ancestry,
    choose_timeline,
    on_history,
    timeline_for_segment,
)
from recovery.status import WalRef, load_pg


@dataclass(frozen=True)
class Policy:
    keep: int | None = None  # the N newest backups
    keep_within: timedelta | None = None  # backups finished within this long before now

    @property
    def empty(self) -> bool:
        return self.keep is None and self.keep_within is None


@dataclass(frozen=True)
class Candidate:
    id: str
    finished_at: datetime
    opens_at: datetime  # the first instant a restore from it reaches


@dataclass
class Selection:
    kept: dict[str, str]  # id -> why
    window_start: datetime | None


def _fmt(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def select_backups(
    items: list[Candidate],
    policy: Policy,
    now: datetime,
    chosen_at: Callable[[datetime], str | None],
    breakpoints: Iterable[datetime],
) -> Selection:
    """Backups the policy keeps, plus those the window they open needs.
    chosen_at(t) is the backup the planner restores instant t from."""
    if not items:
        return Selection({}, None)
    if policy.empty:
        return Selection({c.id: "no retention policy given" for c in items}, None)
    kept: dict[str, str] = {}
    starts: list[datetime] = []
    newest = sorted(items, key=lambda c: c.finished_at, reverse=True)
    if policy.keep is not None:
        chosen = newest[: policy.keep]
        why = "the newest" if policy.keep == 1 else f"one of the {policy.keep} newest"
        kept.update((c.id, why) for c in chosen)
        starts.append(min(c.opens_at for c in chosen))
    if policy.keep_within is not None:
        cutoff = now - policy.keep_within
        kept.update(
            (c.id, kept.get(c.id) or f"finished after {_fmt(cutoff)}")
            for c in items
            if c.finished_at >= cutoff
        )
        starts.append(cutoff)
    start = min(starts)
    for t in [start, *sorted(p for p in breakpoints if p > start)]:
        needed = chosen_at(t)
        if needed is not None and needed not in kept:
            kept[needed] = f"needed to restore {_fmt(t)}"
    return Selection(kept, start)


# -- PostgreSQL ---------------------------------------------------------------------


def pg_chooser(
    backups: list[BackupPoint], timelines: Mapping[int, TimelineInfo]
) -> Callable[[datetime], str | None]:
    """The backup plan_postgres picks for an instant, as a function."""

    def chosen(t: datetime) -> str | None:
        spans = ancestry(choose_timeline(t, backups, timelines), timelines)
        candidates = [b for b in backups if b.finished_at <= t and on_history(b, spans)]
        return max(candidates, key=lambda b: b.finished_at).id if candidates else None

    return chosen


def histories(
    kept: Iterable[BackupPoint], timelines: Mapping[int, TimelineInfo], all_tlis: set[int]
) -> list[tuple[list[Span], int]]:
    """(history, first segment) for every kept backup and every timeline
    whose history it lies on."""
    out = []
    for b in kept:
        for tli in sorted(all_tlis | {b.timeline}):
            spans = ancestry(tli, timelines)
            if on_history(b, spans):
                out.append((spans, b.start_lsn))
    return out


def wal_to_expire(
    kept: list[BackupPoint],
    wal: list[WalRef],
    timelines: Mapping[int, TimelineInfo],
    seg_size: int,
) -> list[WalRef]:
    """WAL files no kept backup needs, that lie before some kept backup's start."""
    if not kept:
        return []
    tlis = {1} | set(timelines) | {w.timeline for w in wal}
    hist = [
        (spans, lsn_segno(start, seg_size)) for spans, start in histories(kept, timelines, tlis)
    ]
    out = []
    for w in wal:
        if w.kind == "history" or w.segno is None:
            continue
        on = [
            start
            for spans, start in hist
            if timeline_for_segment(w.segno, spans, seg_size) == w.timeline
        ]
        if on and all(w.segno < start for start in on):
            out.append(w)
    return sorted(out, key=lambda w: w.name)


# -- Redis --------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamFact:
    id: int
    kind: str  # batch | gap
    stream: str
    first_id: str  # a gap's from_id
    last_id: str  # a gap's to_id
    at: datetime  # archived or detected


def facts_to_expire(kept: list[SnapshotRef], facts: list[StreamFact]) -> list[StreamFact]:
    """Batches and gaps that end at or before every kept snapshot's position
    in their stream, and were written before the oldest kept snapshot began
    (a stream recreated later may reuse low IDs)."""
    if not kept:
        return []
    oldest = min(s.started_at for s in kept)
    out = []
    for f in facts:
        end = parse_id(f.last_id)
        if f.at < oldest and all(end <= snapshot_position(s, f.stream) for s in kept):
            out.append(f)
    return out


# -- a source's plan ----------------------------------------------------------------


@dataclass
class SourceExpiry:
    name: str
    kind: str
    kept: dict[str, str] = field(default_factory=dict)  # backup id -> why
    removed: list[tuple[str, datetime]] = field(default_factory=list)  # (backup id, finished)
    window_start: datetime | None = None
    wal: list[WalRef] = field(default_factory=list)
    stream_facts: list[StreamFact] = field(default_factory=list)

    @property
    def removed_ids(self) -> set[str]:
        return {bid for bid, _ in self.removed}

    @property
    def empty(self) -> bool:
        return not self.removed and not self.wal and not self.stream_facts


def plan_expiry(repo: Repository, name: str, policy: Policy, now: datetime) -> SourceExpiry:
    with repo.catalog.session() as s:
        src = s.scalars(select(Source).where(Source.name == name)).one_or_none()
        if src is None:
            return SourceExpiry(name, "")
        kind, source_id, seg_size = src.kind, src.id, src.wal_segment_size
        rows = list(s.scalars(select(Backup).where(Backup.source_id == source_id)))
        stream_facts: list[StreamFact] = []
        if kind == "redis":
            stream_facts = [
                StreamFact(b.id, "batch", b.stream, b.first_id, b.last_id, b.archived_at)
                for b in s.scalars(select(StreamBatch).where(StreamBatch.source_id == source_id))
            ] + [
                StreamFact(g.id, "gap", g.stream, g.from_id, g.to_id, g.detected_at)
                for g in s.scalars(select(StreamGap).where(StreamGap.source_id == source_id))
            ]
    plan = SourceExpiry(name, kind)
    finished = {b.id: b.finished_at for b in rows}
    if policy.empty:
        # No retention asked for: no fact goes, not even WAL older than every backup.
        plan.kept = {b.id: "no retention policy given" for b in rows}
        return plan
    if kind == "postgres":
        facts = load_pg(repo, source_id, seg_size)
        items = [Candidate(b.id, b.finished_at, b.finished_at) for b in facts.backups]
        breakpoints = [b.finished_at for b in facts.backups] + [
            t.created_at for t in facts.timelines.values()
        ]
        sel = select_backups(
            items, policy, now, pg_chooser(facts.backups, facts.timelines), breakpoints
        )
        kept_points = [b for b in facts.backups if b.id in sel.kept]
        plan.wal = wal_to_expire(kept_points, facts.wal, facts.timelines, facts.seg_size)
    else:
        snaps = {
            b.id: SnapshotRef(b.id, b.started_at, dict((b.details or {}).get("streams", {})))
            for b in rows
            if b.kind == "redis_snapshot"
        }
        items = [Candidate(b.id, b.finished_at, b.started_at) for b in rows if b.id in snaps]

        def chosen(t: datetime) -> str | None:
            before = [v for v in snaps.values() if v.started_at <= t]
            return max(before, key=lambda v: v.started_at).id if before else None

        sel = select_backups(items, policy, now, chosen, [v.started_at for v in snaps.values()])
        kept_snaps = [v for v in snaps.values() if v.id in sel.kept]
        plan.stream_facts = facts_to_expire(kept_snaps, stream_facts)
    plan.kept = sel.kept
    plan.window_start = sel.window_start
    plan.removed = sorted(
        ((c.id, finished[c.id]) for c in items if c.id not in sel.kept), key=lambda r: r[1]
    )
    return plan
