"""What the catalog knows of a Redis replication capture: its epochs with
their batches (rows of catalog.replication's records), the offsets no batch
holds, and the totals the reports print. Nothing here reads the store."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog.db.models import ReplBatch, ReplEpoch, ReplEpochObject, StoredObject


@dataclass(frozen=True)
class BatchFact:
    id: int  # catalog row id
    start: int
    end: int
    first_ms: int
    last_ms: int
    oid: str
    size: int
    resumed_from_ms: int | None


@dataclass
class EpochFact:
    id: int  # catalog row id
    name: str
    replid: str
    offset: int  # where its command stream starts
    base_ms: int
    base_size: int
    lost_ms: int | None  # the previous epoch's link lost
    oids: tuple[str, ...]  # the base's chunks
    batches: list[BatchFact] = field(default_factory=list)  # by start offset

    @property
    def newest_ms(self) -> int:
        """Its newest arrival: how far a restore from it reaches."""
        return max([self.base_ms, *(b.last_ms for b in self.batches)])

    @property
    def end_offset(self) -> int:
        return max([self.offset, *(b.end for b in self.batches)])


def load_epochs(session: Session, source_id: int) -> list[EpochFact]:
    """A source's epochs, oldest base first, each with its batches."""
    rows = session.scalars(
        select(ReplEpoch).where(ReplEpoch.source_id == source_id).order_by(ReplEpoch.base_ms)
    ).all()
    if not rows:
        return []
    oids: dict[int, list[str]] = defaultdict(list)
    for epoch_id, oid in session.execute(
        select(ReplEpochObject.epoch_id, ReplEpochObject.oid).where(
            ReplEpochObject.epoch_id.in_([r.id for r in rows])
        )
    ):
        oids[epoch_id].append(oid)
    epochs = {
        r.epoch: EpochFact(
            r.id,
            r.epoch,
            r.replid,
            r.start_offset,
            r.base_ms,
            r.base_size,
            r.lost_ms,
            tuple(oids[r.id]),
        )
        for r in rows
    }
    for b in session.scalars(
        select(ReplBatch).where(ReplBatch.source_id == source_id).order_by(ReplBatch.start_offset)
    ):
        epoch = epochs.get(b.epoch)
        if epoch is not None:  # a batch whose epoch expired first goes with the next expire
            epoch.batches.append(_batch_fact(b))
    return list(epochs.values())


def _batch_fact(b: ReplBatch) -> BatchFact:
    return BatchFact(
        b.id, b.start_offset, b.end_offset, b.first_ms, b.last_ms, b.oid, b.size, b.resumed_from_ms
    )


def offset_holes(epoch: EpochFact) -> list[tuple[int, int]]:
    """(from, to) of every range of the epoch's command stream that no
    batch holds: a restore past it would miss writes."""
    holes = []
    expected = epoch.offset
    for b in epoch.batches:
        if b.start != expected:
            holes.append((expected, b.start))
        expected = max(expected, b.end)
    return holes


def orphan_batches(session: Session, source_id: int) -> list[ReplBatch]:
    """Batches whose epoch is not in the catalog (left by an expire that stopped)."""
    known = select(ReplEpoch.epoch).where(ReplEpoch.source_id == source_id)
    return list(
        session.scalars(
            select(ReplBatch).where(ReplBatch.source_id == source_id, ReplBatch.epoch.not_in(known))
        )
    )


def repl_totals(session: Session, epochs: list[EpochFact]) -> dict[str, Any]:
    """What `info` prints of a replication capture (the "archive" fields)."""
    oids = {b.oid for e in epochs for b in e.batches} | {o for e in epochs for o in e.oids}
    stored = 0
    wanted = list(oids)
    for i in range(0, len(wanted), 500):
        stored += int(
            session.scalar(
                select(func.sum(StoredObject.stored_size)).where(
                    StoredObject.oid.in_(wanted[i : i + 500])
                )
            )
            or 0
        )
    return {
        "capture": "replication",
        "repl_epochs": len(epochs),
        "repl_batches": sum(len(e.batches) for e in epochs),
        "repl_bytes": sum(b.size for e in epochs for b in e.batches),
        "repl_base_bytes": sum(e.base_size for e in epochs),
        "repl_stored_bytes": stored,
        "repl_resumes": sum(1 for e in epochs for b in e.batches if b.resumed_from_ms),
    }
