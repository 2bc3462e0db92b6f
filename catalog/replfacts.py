"""What the catalog knows of a Redis replication capture: its epochs (rows of
catalog.replication's records) with their batches summed up, and the few
batches where a replay of an epoch could stop. Nothing here reads the store.

A capture writes a batch every 150 ms, half a million a day: the database
sums and compares them, so that a report holds one row per epoch and per
outage or hole, never one per batch.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select, union
from sqlalchemy.orm import Session

from catalog.db.models import ReplBatch, ReplEpoch, ReplEpochObject, StoredObject


@dataclass(frozen=True)
class Resume:
    """A batch that continued its epoch after a lost link (PSYNC +CONTINUE)."""

    lost_ms: int
    first_ms: int  # when the writes of the outage arrived
    start: int


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
    batches: int = 0
    bytes: int = 0
    end_offset: int = 0  # the newest batch's end (the offset, without batches)
    newest_ms: int = 0  # its newest arrival: how far a restore from it reaches
    resumes: list[Resume] = field(default_factory=list)


@dataclass(frozen=True)
class BatchLink:
    """A batch and the one before it in its epoch (none for the first)."""

    epoch: str
    start: int
    end: int
    oid: str
    prev_end: int | None
    prev_last_ms: int | None


def load_epochs(session: Session, source_id: int) -> list[EpochFact]:
    """A source's epochs, oldest base first, with their batches summed up."""
    rows = session.scalars(
        select(ReplEpoch).where(ReplEpoch.source_id == source_id).order_by(ReplEpoch.base_ms)
    ).all()
    oids: dict[int, list[str]] = {r.id: [] for r in rows}
    for epoch_id, oid in session.execute(
        select(ReplEpochObject.epoch_id, ReplEpochObject.oid).where(
            ReplEpochObject.epoch_id.in_(list(oids))
        )
    ):
        oids[epoch_id].append(oid)
    epochs = {r.epoch: _epoch_fact(r, oids[r.id]) for r in rows}
    ofsource = ReplBatch.source_id == source_id
    for name, count, size, end, newest in session.execute(
        select(
            ReplBatch.epoch,
            func.count(ReplBatch.id),
            func.sum(ReplBatch.size),
            func.max(ReplBatch.end_offset),
            func.max(ReplBatch.last_ms),
        )
        .where(ofsource)
        .group_by(ReplBatch.epoch)
    ):
        if (e := epochs.get(name)) is not None:  # a batch whose epoch expired first goes next
            e.batches, e.bytes = int(count), int(size or 0)
            e.end_offset, e.newest_ms = max(e.end_offset, end), max(e.newest_ms, newest)
    for name, lost, first, start in session.execute(
        select(
            ReplBatch.epoch, ReplBatch.resumed_from_ms, ReplBatch.first_ms, ReplBatch.start_offset
        )
        .where(ofsource, ReplBatch.resumed_from_ms.is_not(None))
        .order_by(ReplBatch.start_offset)
    ):
        if (e := epochs.get(name)) is not None and lost is not None:
            e.resumes.append(Resume(lost, first, start))
    return list(epochs.values())


def _epoch_fact(r: ReplEpoch, oids: list[str]) -> EpochFact:
    return EpochFact(
        r.id,
        r.epoch,
        r.replid,
        r.start_offset,
        r.base_ms,
        r.base_size,
        r.lost_ms,
        tuple(oids),
        end_offset=r.start_offset,
        newest_ms=r.base_ms,
    )


def batch_links(
    session: Session, source_id: int, bad_oids: Collection[str] = ()
) -> list[BatchLink]:
    """By epoch and offset: each epoch's first batch, every batch that does
    not start where the one before it ended, and the batches whose object
    is among bad_oids. Where a replay stops is among them."""
    lagged = (
        select(
            ReplBatch.epoch,
            ReplBatch.start_offset,
            ReplBatch.end_offset,
            ReplBatch.oid,
            _before(ReplBatch.end_offset).label("prev_end"),
            _before(ReplBatch.last_ms).label("prev_last_ms"),
        )
        .where(ReplBatch.source_id == source_id)
        .subquery()
    )
    c = lagged.c
    wanted = or_(c.prev_end.is_(None), c.prev_end != c.start_offset)
    if bad_oids:
        wanted = or_(wanted, c.oid.in_(sorted(set(bad_oids))))
    rows = session.execute(select(lagged).where(wanted).order_by(c.epoch, c.start_offset))
    return [BatchLink(*row) for row in rows]


def _before(column: Any) -> Any:
    """The column's value in the batch before, in its epoch (a window function)."""
    return func.lag(column).over(partition_by=ReplBatch.epoch, order_by=ReplBatch.start_offset)


def offset_holes(epoch: EpochFact, links: list[BatchLink]) -> list[tuple[int, int]]:
    """(from, to) of every range of the epoch's command stream that no
    batch holds: a restore past it would miss writes."""
    holes = []
    for link in links:
        expected = epoch.offset if link.prev_end is None else link.prev_end
        if link.epoch == epoch.name and link.start != expected:
            holes.append((expected, link.start))
    return holes


def epoch_batches(session: Session, source_id: int, epoch: str) -> list[tuple[int, int]]:
    """(row id, start offset) of an epoch's batches (what expire removes)."""
    rows = session.execute(
        select(ReplBatch.id, ReplBatch.start_offset).where(
            ReplBatch.source_id == source_id, ReplBatch.epoch == epoch
        )
    )
    return [(int(i), int(start)) for i, start in rows]


def orphan_batches(session: Session, source_id: int) -> list[tuple[int, str, int]]:
    """(row id, epoch, start) of batches whose epoch is not in the catalog
    (left by an expire that stopped)."""
    known = select(ReplEpoch.epoch).where(ReplEpoch.source_id == source_id)
    rows = session.execute(
        select(ReplBatch.id, ReplBatch.epoch, ReplBatch.start_offset).where(
            ReplBatch.source_id == source_id, ReplBatch.epoch.not_in(known)
        )
    )
    return [(int(i), str(e), int(start)) for i, e, start in rows]


def repl_totals(session: Session, source_id: int, epochs: list[EpochFact]) -> dict[str, Any]:
    """What `info` prints of a replication capture (the "archive" fields)."""
    referenced = union(
        select(ReplBatch.oid).where(ReplBatch.source_id == source_id),
        select(ReplEpochObject.oid)
        .join(ReplEpoch, ReplEpoch.id == ReplEpochObject.epoch_id)
        .where(ReplEpoch.source_id == source_id),
    )
    stored = session.scalar(
        select(func.sum(StoredObject.stored_size)).where(StoredObject.oid.in_(referenced))
    )
    return {
        "capture": "replication",
        "repl_epochs": len(epochs),
        "repl_batches": sum(e.batches for e in epochs),
        "repl_bytes": sum(e.bytes for e in epochs),
        "repl_base_bytes": sum(e.base_size for e in epochs),
        "repl_stored_bytes": int(stored or 0),
        "repl_resumes": sum(len(e.resumes) for e in epochs),
    }
