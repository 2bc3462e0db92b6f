"""Retention for Redis: stream batches and gaps no kept snapshot needs (see
recovery.retention)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from catalog.redisformat import parse_id
from recovery.redis.coverage import SnapshotRef, snapshot_position


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
