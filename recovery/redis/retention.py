"""Retention for Redis: stream batches and gaps no kept snapshot needs, and
replication epochs no kept instant falls in (see recovery.retention)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from catalog.redisformat import from_ms, parse_id
from catalog.replfacts import EpochFact
from recovery.redis.coverage import SnapshotRef, snapshot_position
from recovery.retention import Candidate, Policy, select_backups

if TYPE_CHECKING:
    from catalog.marks import MarkPoint


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


def epochs_to_keep(
    epochs: list[EpochFact], policy: Policy, now: datetime, marks: Iterable[MarkPoint]
) -> dict[str, str]:
    """The epochs of a replication capture a policy keeps (name -> why): an
    epoch's base is to it what a snapshot is to the stream tailer, so the
    policy counts epochs as it counts backups, and an epoch stays while a
    kept instant or a mark falls in it. The newest always stays: the
    capture goes on in it."""
    if not epochs:
        return {}
    items = [Candidate(e.name, from_ms(e.base_ms), from_ms(e.base_ms)) for e in epochs]

    def chosen(t: datetime) -> str | None:
        before = [e for e in epochs if from_ms(e.base_ms) <= t]
        return before[-1].name if before else None

    sel = select_backups(items, policy, now, chosen, [c.opens_at for c in items], marks)
    kept = dict(sel.kept)
    kept.setdefault(epochs[-1].name, "the newest epoch")
    return kept
