"""The Redis restore planner: a pure function from what the catalog knows
(snapshots, stream batches, gaps, how far the tailer got) and a target
instant to a plan, or a PlanError that says why not; and the loaders that
read those facts from the catalog.

Stream IDs are millisecond timestamps, so "the entries up to T" are the
entries whose ID time is <= T. The newest snapshot started at or before T
gives the keyspace; on top of it each stream gets the archived entries after
the last ID the snapshot holds of it, up to T.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog.db.models import Backup, RepoMeta, Source, StreamBatch, StreamGap
from catalog.details import SnapshotDetails
from catalog.redisformat import (
    GAP_RECREATED,
    GAP_TRIMMED,
    MAX_SEQ,
    StreamId,
    caught_up_key,
    format_id,
    from_ms,
    parse_id,
    to_ms,
)
from catalog.reports import GapFact
from recovery.errors import PlanError
from recovery.redis.coverage import BatchRef
from recovery.redis.facts import batch_ref


@dataclass(frozen=True)
class SnapshotPoint:
    id: str
    started_at: datetime
    finished_at: datetime
    manifest_oid: str
    keys: int
    streams: Mapping[str, str]  # stream label -> last ID the snapshot holds


@dataclass(frozen=True)
class StreamReplay:
    stream: str  # label
    after: str  # replay entries with an ID above this (and ID time <= target)
    reset: bool  # recreated after the snapshot: delete it, then replay its new life
    batches: tuple[BatchRef, ...]


@dataclass(frozen=True)
class RedisRestorePlan:
    source: str
    target: datetime
    target_ms: int
    snapshot: SnapshotPoint
    replays: tuple[StreamReplay, ...]
    gaps: tuple[GapFact, ...]  # entries known lost inside what is replayed
    recoverable_from: datetime
    recoverable_to: datetime
    warnings: tuple[str, ...] = ()

    @property
    def max_entries(self) -> int:
        return sum(b.count for r in self.replays for b in r.batches)

    def describe(self) -> list[str]:
        snap = self.snapshot
        batches = sum(len(r.batches) for r in self.replays)
        lines = [
            f"target {utc(self.target)} (stream entries with ID time <= {self.target_ms})",
            f"snapshot {snap.id} taken {utc(snap.started_at)} ({snap.keys} keys)",
        ]
        if batches:
            streams = sum(1 for r in self.replays if r.batches)
            lines.append(
                f"replay up to {self.max_entries} entries from {batches} batches "
                f"into {streams} streams"
            )
        else:
            lines.append("no archived stream entries to replay")
        for r in self.replays:
            if r.reset:
                lines.append(f"stream {r.stream} was recreated: replaced by its new entries")
        lines += [f"warning: {g.stream}: {g.detail}" for g in self.gaps]
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(
            f"recoverable window: {utc(self.recoverable_from)} .. {utc(self.recoverable_to)}"
        )
        return lines


def utc(value: datetime | None) -> str:
    if value is None:
        return "none"
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- the pure part -------------------------------------------------------------------


def window(
    snapshots: Iterable[SnapshotPoint], covered: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """Earliest and latest instant a restore can reach."""
    starts = [s.started_at for s in snapshots]
    if not starts:
        return None, None
    latest = max(starts)
    if covered is not None and covered > latest:
        latest = covered
    return min(starts), latest


def choose_snapshot(
    source: str, target: datetime, snapshots: Iterable[SnapshotPoint], covered: datetime | None
) -> SnapshotPoint:
    snaps = list(snapshots)
    earliest, latest = window(snaps, covered)
    if earliest is None or latest is None:
        raise PlanError(
            f"restore {source}: there is no snapshot of this redis source yet "
            f"(take one with pitr backup --source {source})"
        )
    span = f"recoverable window: {utc(earliest)} .. {utc(latest)}"
    if target < earliest:
        raise PlanError(
            f"restore {source}: target {utc(target)} is before the oldest snapshot; {span}"
        )
    if target > latest:
        raise PlanError(
            f"restore {source}: target {utc(target)} is after the newest archived point; {span}"
        )
    return max((s for s in snaps if s.started_at <= target), key=lambda s: s.started_at)


def plan_redis(
    source: str,
    target: datetime,
    snapshots: Iterable[SnapshotPoint],
    batches: Iterable[BatchRef],
    gaps: Iterable[GapFact],
    covered: datetime | None,
) -> RedisRestorePlan:
    snaps = list(snapshots)
    snap = choose_snapshot(source, target, snaps, covered)
    earliest, latest = window(snaps, covered)
    assert earliest is not None and latest is not None
    t_ms = to_ms(target)
    snap_ms = to_ms(snap.started_at)
    by_stream: dict[str, list[BatchRef]] = defaultdict(list)
    for b in batches:
        by_stream[b.stream].append(b)
    gaps_by: dict[str, list[GapFact]] = defaultdict(list)
    for g in gaps:
        gaps_by[g.stream].append(g)

    replays: list[StreamReplay] = []
    lost: list[GapFact] = []
    for label in sorted(set(snap.streams) | set(by_stream)):
        recreations = [
            g
            for g in gaps_by[label]
            if g.detail.startswith(GAP_RECREATED)
            and g.detected_at > snap.started_at
            and parse_id(g.to_id)[0] <= t_ms
        ]
        candidates = by_stream[label]
        after: StreamId
        if recreations:
            newest = max(recreations, key=lambda g: g.detected_at)
            after = (0, 0)
            candidates = [b for b in candidates if b.archived_at >= newest.detected_at]
        elif label in snap.streams:
            after = parse_id(snap.streams[label])
        else:
            # Not in the snapshot: it did not exist then, so only entries
            # from the snapshot on belong to it (older ones were deleted).
            after = (snap_ms - 1, MAX_SEQ)
        chosen = sorted(
            (b for b in candidates if parse_id(b.last_id) > after and b.first_ms <= t_ms),
            key=lambda b: parse_id(b.first_id),
        )
        if chosen or recreations:
            replays.append(StreamReplay(label, format_id(after), bool(recreations), tuple(chosen)))
        lost += [
            g
            for g in gaps_by[label]
            if g.detail.startswith(GAP_TRIMMED)
            and parse_id(g.to_id) > after
            and parse_id(g.from_id)[0] <= t_ms
        ]
    if lost:
        # Entries the server trimmed before the tailer read them: the stream
        # cannot be as it was at the target (exit 3, as for any gap).
        g = lost[0]
        raise PlanError(
            f"restore {source}: target {utc(target)} is across a recorded gap in stream "
            f"{g.stream} ({g.detail}); a target before its entries, or one after a "
            f"snapshot taken since, can be met; recoverable window {utc(earliest)} .. "
            f"{utc(latest)}"
        )
    warnings = []
    if by_stream and covered is not None and target > covered:
        warnings.append(
            f"stream entries are archived up to {utc(covered)} only; later ones are missing"
        )
    return RedisRestorePlan(
        source,
        target,
        t_ms,
        snap,
        tuple(replays),
        tuple(lost),
        earliest,
        latest,
        tuple(warnings),
    )


# -- reading the catalog ----------------------------------------------------------------


def tail_covered(session: Session, source_id: int) -> datetime | None:
    """Up to when every stream entry is archived: the tailer's heartbeat, or
    the newest archived entry when there is none."""
    best: datetime | None = None
    name = session.scalars(select(Source.name).where(Source.id == source_id)).first()
    if name is not None:
        beat = session.get(RepoMeta, caught_up_key(name))
        if beat is not None:
            best = datetime.fromisoformat(beat.value).astimezone(UTC)
    last_ms = session.scalars(
        select(func.max(StreamBatch.last_ms)).where(StreamBatch.source_id == source_id)
    ).first()
    if last_ms is not None and (best is None or from_ms(last_ms) > best):
        best = from_ms(last_ms)
    return best


def load_snapshots(session: Session, source_id: int) -> list[SnapshotPoint]:
    rows = session.scalars(
        select(Backup).where(Backup.source_id == source_id, Backup.kind == "redis_snapshot")
    ).all()
    return [
        SnapshotPoint(
            b.id,
            b.started_at,
            b.finished_at,
            b.manifest_oid,
            details.keys,
            dict(details.streams),
        )
        for b in rows
        for details in [SnapshotDetails.from_json(b.details)]
    ]


def redis_window(session: Session, source_id: int) -> tuple[datetime | None, datetime | None]:
    """Earliest and latest instant a restore of this source can reach."""
    return window(load_snapshots(session, source_id), tail_covered(session, source_id))


def load_plan(session: Session, source: str, source_id: int, target: datetime) -> RedisRestorePlan:
    """plan_redis on what the catalog holds, reading only the batches that matter."""
    snapshots = load_snapshots(session, source_id)
    covered = tail_covered(session, source_id)
    snap = choose_snapshot(source, target, snapshots, covered)
    t_ms = to_ms(target)
    lower = min([to_ms(snap.started_at)] + [parse_id(v)[0] for v in snap.streams.values()])
    batch_rows = session.scalars(
        select(StreamBatch).where(
            StreamBatch.source_id == source_id,
            StreamBatch.last_ms >= lower,
            StreamBatch.first_ms <= t_ms,
        )
    ).all()
    gap_rows = session.scalars(select(StreamGap).where(StreamGap.source_id == source_id)).all()
    batches = [batch_ref(b) for b in batch_rows]
    gaps = [GapFact(g.stream, g.from_id, g.to_id, g.detail, g.detected_at) for g in gap_rows]
    return plan_redis(source, target, snapshots, batches, gaps, covered)
