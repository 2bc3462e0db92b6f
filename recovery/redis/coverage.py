"""The restorable instants of a Redis source (see recovery.coverage)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from catalog.redisformat import MAX_SEQ, from_ms, parse_id, to_ms
from recovery.coverage import Coverage, Piece, merge


@dataclass(frozen=True)
class SnapshotRef:
    id: str
    started_at: datetime
    streams: Mapping[str, str]  # stream label -> last entry ID the snapshot holds


@dataclass(frozen=True)
class BatchRef:
    """An archived batch of one stream's entries, as the catalog row has it."""

    stream: str
    first_id: str
    last_id: str
    first_ms: int
    last_ms: int
    count: int
    oid: str
    archived_at: datetime


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
    return merge(pieces)
