"""Which instants a restore can reach, as intervals, with the reason for every
hole: what `info`, `report rpo`, `check` and `verify` print.

The planners choose one backup (PostgreSQL) or snapshot (Redis) per target
and never fall back to an older one, so the answer is piecewise: between two
consecutive "breakpoints" (backups finishing, timelines being created,
snapshots starting) the same backup is chosen, and the instants it can reach
are those up to the end of its unbroken WAL chain. Walking those pieces gives
exactly the targets the planner accepts.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from catalog.redisformat import MAX_SEQ, from_ms, parse_id, to_ms
from catalog.wal import lsn_segno, segment_name
from recovery.postgres.planner import (
    BackupPoint,
    TimelineInfo,
    ancestry,
    choose_timeline,
    on_history,
    timeline_for_segment,
    walk_chain,
)


@dataclass(frozen=True)
class Piece:
    """[start, end]: restorable (ok) or not, and why not. end None: open-ended."""

    start: datetime
    end: datetime | None
    ok: bool
    detail: str = ""


@dataclass
class Coverage:
    pieces: list[Piece] = field(default_factory=list)

    @property
    def restorable(self) -> list[Piece]:
        return [p for p in self.pieces if p.ok]

    @property
    def recoverable_from(self) -> datetime | None:
        ok = self.restorable
        return ok[0].start if ok else None

    @property
    def recoverable_to(self) -> datetime | None:
        ok = self.restorable
        return ok[-1].end if ok else None

    @property
    def gaps(self) -> list[Piece]:
        """Holes inside the window, each with its reason."""
        lo, hi = self.recoverable_from, self.recoverable_to
        if lo is None or hi is None:
            return []
        return [
            p
            for p in self.pieces
            if not p.ok and p.start >= lo and p.end is not None and p.end <= hi
        ]


def _merge(pieces: Iterable[Piece]) -> Coverage:
    out: list[Piece] = []
    for p in pieces:
        if p.end is not None and p.end < p.start:
            continue
        if out and out[-1].ok == p.ok and out[-1].detail == p.detail and out[-1].end == p.start:
            out[-1] = Piece(out[-1].start, p.end, p.ok, p.detail)
        else:
            out.append(p)
    return Coverage(out)


def _fmt(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- PostgreSQL ---------------------------------------------------------------------


def pg_coverage(
    backups: list[BackupPoint],
    segments: Mapping[tuple[int, int], datetime],
    timelines: Mapping[int, TimelineInfo],
    seg_size: int,
    bad_backups: Collection[str] = (),
) -> Coverage:
    """The restorable instants of a PostgreSQL source, as plan_postgres decides
    them; bad_backups are treated as unusable (damaged objects)."""
    if not backups:
        return Coverage()
    first = min(b.finished_at for b in backups)
    points = sorted(
        {b.finished_at for b in backups}
        | {t.created_at for t in timelines.values() if t.created_at > first}
    )
    pieces: list[Piece] = []
    for i, start in enumerate(points):
        end = points[i + 1] if i + 1 < len(points) else None
        pieces.extend(_pg_epoch(start, end, backups, segments, timelines, seg_size, bad_backups))
    return _merge(pieces)


def _pg_epoch(
    start: datetime,
    end: datetime | None,
    backups: list[BackupPoint],
    segments: Mapping[tuple[int, int], datetime],
    timelines: Mapping[int, TimelineInfo],
    seg_size: int,
    bad_backups: Collection[str],
) -> list[Piece]:
    timeline = choose_timeline(start, backups, timelines)
    spans = ancestry(timeline, timelines)
    candidates = [b for b in backups if b.finished_at <= start and on_history(b, spans)]
    if not candidates:
        return [Piece(start, end, False, f"no base backup on timeline {timeline}'s history")]
    backup = max(candidates, key=lambda b: b.finished_at)
    if backup.id in bad_backups:
        return [Piece(start, end, False, f"backup {backup.id} is damaged")]
    chain, missing = walk_chain(backup, spans, segments, seg_size)
    missing_name = segment_name(timeline_for_segment(missing, spans, seg_size), missing, seg_size)
    needed = lsn_segno(backup.stop_lsn - 1, seg_size) - lsn_segno(backup.start_lsn, seg_size) + 1
    if len(chain) < needed:
        return [
            Piece(
                start,
                end,
                False,
                f"backup {backup.id} cannot reach a consistent state: "
                f"WAL segment {missing_name} is missing",
            )
        ]
    reach = max(t for _, t in chain)
    if end is not None and reach >= end:
        return [Piece(start, end, True)]
    out = []
    if reach >= start:
        out.append(Piece(start, reach, True))
    # Open-ended in the last epoch: then simply the next segment to come.
    out.append(
        Piece(
            max(start, reach),
            end,
            False,
            f"WAL segment {missing_name} is missing: backup {backup.id} "
            f"cannot replay past {_fmt(reach)}",
        )
    )
    return out


# -- Redis --------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotRef:
    id: str
    started_at: datetime
    streams: Mapping[str, str]  # stream label -> last entry ID the snapshot holds


@dataclass(frozen=True)
class BatchRef:
    stream: str
    first_id: str
    last_id: str
    first_ms: int


def snapshot_position(snap: SnapshotRef, stream: str) -> tuple[int, int]:
    """The last entry of a stream the snapshot holds; a stream missing from
    it did not exist then, so everything from the snapshot's start is after it."""
    if stream in snap.streams:
        return parse_id(snap.streams[stream])
    return to_ms(snap.started_at) - 1, MAX_SEQ


def redis_coverage(
    snapshots: list[SnapshotRef],
    covered: datetime | None,
    bad_snapshots: Collection[str] = (),
    bad_batches: Iterable[BatchRef] = (),
) -> Coverage:
    """The restorable instants of a Redis source: from the oldest snapshot to
    the newest of (latest snapshot, how far the stream archive reaches), as
    recovery.redis.plan.window; damaged snapshots and batches cut holes."""
    if not snapshots:
        return Coverage()
    snaps = sorted(snapshots, key=lambda s: s.started_at)
    latest = max(snaps[-1].started_at, covered or snaps[-1].started_at)
    broken = list(bad_batches)
    pieces: list[Piece] = []
    for i, snap in enumerate(snaps):
        end = snaps[i + 1].started_at if i + 1 < len(snaps) else latest
        if snap.id in bad_snapshots:
            pieces.append(Piece(snap.started_at, end, False, f"snapshot {snap.id} is damaged"))
            continue
        # The first damaged batch this snapshot would have to replay.
        lost: tuple[datetime, str] | None = None
        for b in broken:
            if parse_id(b.last_id) > snapshot_position(snap, b.stream):
                at = max(snap.started_at, from_ms(b.first_ms))
                if lost is None or at < lost[0]:
                    lost = (at, f"stream batch {b.stream} {b.first_id}..{b.last_id} is damaged")
        if lost is None or lost[0] > end:
            pieces.append(Piece(snap.started_at, end, True))
            continue
        if lost[0] > snap.started_at:
            pieces.append(Piece(snap.started_at, lost[0], True))
        pieces.append(Piece(lost[0], end, False, lost[1]))
    return _merge(pieces)


# -- comparing ----------------------------------------------------------------------


def lost_ranges(before: Coverage, after: Coverage) -> list[Piece]:
    """Instants restorable in `before` that `after` can no longer reach, each
    with the reason `after` gives for it."""
    keep = after.restorable
    out: list[Piece] = []
    for good in before.restorable:
        assert good.end is not None
        left = [(good.start, good.end)]
        for k in keep:
            assert k.end is not None
            rest = []
            for lo, hi in left:
                if k.end < lo or k.start > hi:
                    rest.append((lo, hi))
                    continue
                if k.start > lo:
                    rest.append((lo, k.start))
                if k.end < hi:
                    rest.append((k.end, hi))
            left = rest
        out.extend(Piece(lo, hi, False, _reason(after, lo, hi)) for lo, hi in left if lo < hi)
    return out


def _reason(after: Coverage, lo: datetime, hi: datetime) -> str:
    holes = [p for p in after.pieces if not p.ok and p.start < hi and (p.end is None or p.end > lo)]
    covering = [p for p in holes if p.start <= lo]
    chosen = covering[-1] if covering else holes[0] if holes else None
    return chosen.detail if chosen else "beyond what the remaining archive reaches"
