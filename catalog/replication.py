"""The records of a Redis replication capture (archiver/redis/replication.py):

  records/<source>/repl-epochs/<replid>-<offset>        an epoch: its base RDB chunks
  records/<source>/repl/<replid>-<offset>/<start:020d>  a batch: stream bytes start..end

An epoch begins with each full resync; its batches hold the propagated
command stream, consecutive in replication offsets. The field names are
the ones the capture wrote before these types existed (a stored format:
never rename one), so records written by an older pitr parse the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from catalog.recordbase import Record, record_key

if TYPE_CHECKING:
    from catalog.db.models import ReplBatch, ReplEpoch, ReplEpochObject

EPOCH_FOLDER = "repl-epochs"
BATCH_FOLDER = "repl"


def epoch_name(replid: str, offset: int) -> str:
    return f"{replid}-{offset}"


def epoch_key(source: str, epoch: str) -> str:
    return record_key(source, EPOCH_FOLDER, epoch)


def epochs_prefix(source: str) -> str:
    return record_key(source, EPOCH_FOLDER, "")


def repl_batch_key(source: str, epoch: str, start: int) -> str:
    return record_key(source, BATCH_FOLDER, f"{epoch}/{start:020d}")


def batches_prefix(source: str, epoch: str) -> str:
    """Where an epoch's batch records live; they sort by start offset."""
    return record_key(source, BATCH_FOLDER, f"{epoch}/")


@dataclass(frozen=True)
class ReplEpochRecord(Record):
    """A full resync: the RDB the server sent (the epoch's base) and the
    replication offset its command stream starts at."""

    TYPE: ClassVar[str] = "repl_epoch"
    SOURCE_KIND: ClassVar[str] = "redis"
    epoch: str  # epoch_name(replid, offset)
    replid: str
    offset: int
    base_chunks: list[str]
    base_size: int
    started_ms: int  # when the resync began
    base_ms: int  # when the whole base was stored: the epoch's first instant
    previous: str | None = None  # the epoch before it, if any
    lost_ms: int | None = None  # when the link of the previous epoch was lost

    @property
    def key(self) -> str:
        return epoch_key(self.source, self.epoch)

    def row(self, source_id: int) -> ReplEpoch:
        from catalog.db.models import ReplEpoch

        return ReplEpoch(
            source_id=source_id,
            epoch=self.epoch,
            replid=self.replid,
            start_offset=self.offset,
            base_chunks=len(self.base_chunks),
            base_size=self.base_size,
            started_ms=self.started_ms,
            base_ms=self.base_ms,
            previous=self.previous,
            lost_ms=self.lost_ms,
        )

    def object_rows(self, epoch_id: int) -> list[ReplEpochObject]:
        """The base's chunks, as rows of the epoch's row (gc keeps them)."""
        from catalog.db.models import ReplEpochObject

        return [
            ReplEpochObject(epoch_id=epoch_id, oid=oid) for oid in dict.fromkeys(self.base_chunks)
        ]


@dataclass(frozen=True)
class ReplBatchRecord(Record):
    """Stream bytes start..end of an epoch, in one object, with their
    arrival instants as (end offset, ms) marks."""

    TYPE: ClassVar[str] = "repl_batch"
    SOURCE_KIND: ClassVar[str] = "redis"
    epoch: str
    replid: str  # the server's id as the bytes arrived (a failover changes it)
    start: int
    end: int
    first_ms: int  # first and last arrival
    last_ms: int
    oid: str
    size: int
    marks: list[list[int]] = field(default_factory=list)
    # The link was lost at this instant and resumed (PSYNC +CONTINUE) with
    # this batch: what was written meanwhile arrived late.
    resumed_from_ms: int | None = None

    @property
    def key(self) -> str:
        return repl_batch_key(self.source, self.epoch, self.start)

    def row(self, source_id: int) -> ReplBatch:
        from catalog.db.models import ReplBatch

        return ReplBatch(
            source_id=source_id,
            epoch=self.epoch,
            start_offset=self.start,
            end_offset=self.end,
            first_ms=self.first_ms,
            last_ms=self.last_ms,
            marks=len(self.marks),
            oid=self.oid,
            size=self.size,
            resumed_from_ms=self.resumed_from_ms,
        )
