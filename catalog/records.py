"""The log of facts: every record pitr writes to the store, typed once.

A record is a small sealed JSON document under records/<source>/<folder>/<name>;
that record being durable is what acknowledges the fact, and the catalog
database is rebuilt from the records alone. Each record type here knows its
key, its JSON form (field names are a stored format: never rename one) and
the catalog row it projects to. Writers build a record and put it; catalog
rebuild and expiry find the type by the record's "type" field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from catalog.marks import MarkRecord
from catalog.recordbase import Record as Record
from catalog.recordbase import record_key as record_key
from catalog.recordbase import source_records_prefix as source_records_prefix
from catalog.replication import ReplBatchRecord, ReplEpochRecord

if TYPE_CHECKING:  # SQLAlchemy loads only when a row is made: wal-fetch never needs it
    from catalog.db.models import (
        Backup,
        SqliteBatch,
        SqliteGap,
        StreamBatch,
        StreamGap,
        WalFile,
    )


@dataclass(frozen=True)
class IdentityRecord(Record):
    """The PostgreSQL system a source archives, from its first WAL header."""

    TYPE: ClassVar[str] = "identity"
    SOURCE_KIND: ClassVar[str] = "postgres"
    system_identifier: str
    pg_version: int
    wal_segment_size: int

    @property
    def key(self) -> str:
        return identity_key(self.source)


def identity_key(source: str) -> str:
    return record_key(source, "identity", "postgres")


@dataclass(frozen=True)
class WalRecord(Record):
    """One archived WAL file (segment, .history, .backup or .partial), or a
    piece of a segment streamed while it was written (archiver.postgres.walpiece)."""

    TYPE: ClassVar[str] = "wal"
    SOURCE_KIND: ClassVar[str] = "postgres"
    name: str
    kind: str  # segment | history | backup | partial | stream (a streamed piece)
    timeline: int
    segno: int | None
    oid: str
    size: int
    end_time: datetime  # the file's mtime: the newest instant it can hold
    archived_at: datetime

    @property
    def key(self) -> str:
        return wal_key(self.source, self.name)

    def row(self, source_id: int) -> WalFile:
        from catalog.db.models import WalFile

        return WalFile(
            source_id=source_id,
            name=self.name,
            kind=self.kind,
            timeline=self.timeline,
            segno=self.segno,
            oid=self.oid,
            size=self.size,
            end_time=self.end_time,
            archived_at=self.archived_at,
        )


def wal_key(source: str, name: str) -> str:
    return record_key(source, "wal", name)


def wal_folder(source: str) -> str:
    """Where a source's WAL records live (restore reads them straight from a
    local store)."""
    return record_key(source, "wal", "")[:-1]


@dataclass(frozen=True)
class BackupRecord(Record):
    """A finished base backup (pg_base) or keyspace snapshot (redis_snapshot)."""

    TYPE: ClassVar[str] = "backup"
    # Each backup kind: its record folder under records/<source>/, and the
    # kind of source that takes it.
    KINDS: ClassVar[dict[str, tuple[str, str]]] = {
        "pg_base": ("backups", "postgres"),
        "redis_snapshot": ("snapshots", "redis"),
        "sqlite_base": ("bases", "sqlite"),
    }
    id: str
    kind: str
    started_at: datetime
    finished_at: datetime
    size_bytes: int
    manifest_oid: str = ""
    stored_bytes: int = 0
    timeline: int | None = None
    start_lsn: str | None = None
    stop_lsn: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return backup_key(self.source, self.kind, self.id)

    @property
    def source_kind(self) -> str:  # by the backup's kind
        return self.KINDS[self.kind][1]

    def row(self, source_id: int) -> Backup:
        from catalog.db.models import Backup

        return Backup(
            id=self.id,
            source_id=source_id,
            kind=self.kind,
            started_at=self.started_at,
            finished_at=self.finished_at,
            size_bytes=self.size_bytes,
            stored_bytes=self.stored_bytes,
            manifest_oid=self.manifest_oid,
            timeline=self.timeline,
            start_lsn=self.start_lsn,
            stop_lsn=self.stop_lsn,
            details=self.details,
        )


def backup_key(source: str, kind: str, backup_id: str) -> str:
    return record_key(source, BackupRecord.KINDS[kind][0], backup_id)


@dataclass(frozen=True)
class BatchRecord(Record):
    """A batch of one Redis stream's entries, first_id..last_id, in one object."""

    TYPE: ClassVar[str] = "stream_batch"
    SOURCE_KIND: ClassVar[str] = "redis"
    stream: str  # label (catalog.redisformat.stream_label)
    stream_hex: str
    first_id: str
    last_id: str
    first_ms: int
    last_ms: int
    count: int
    oid: str
    size: int
    archived_at: datetime
    # the stream's entries-added counter as of last_id (gap detection)
    added_at_last: int | None = None

    @property
    def key(self) -> str:
        return batch_key(self.source, bytes.fromhex(self.stream_hex), self.first_id)

    def row(self, source_id: int) -> StreamBatch:
        from catalog.db.models import StreamBatch

        return StreamBatch(
            source_id=source_id,
            stream=self.stream,
            first_id=self.first_id,
            last_id=self.last_id,
            first_ms=self.first_ms,
            last_ms=self.last_ms,
            count=self.count,
            oid=self.oid,
            archived_at=self.archived_at,
        )


def batch_key(source: str, stream: bytes, first_id: str) -> str:
    return record_key(source, "streams", f"{stream.hex()}/{first_id}")


@dataclass(frozen=True)
class GapRecord(Record):
    """Entries of a Redis stream known lost between from_id and to_id."""

    TYPE: ClassVar[str] = "stream_gap"
    SOURCE_KIND: ClassVar[str] = "redis"
    stream: str
    stream_hex: str
    from_id: str  # last entry shipped before the gap
    to_id: str  # first entry shipped after it
    detail: str
    detected_at: datetime

    @property
    def key(self) -> str:
        return gap_key(self.source, bytes.fromhex(self.stream_hex), self.from_id)

    def row(self, source_id: int) -> StreamGap:
        from catalog.db.models import StreamGap

        return StreamGap(
            source_id=source_id,
            stream=self.stream,
            from_id=self.from_id,
            to_id=self.to_id,
            detail=self.detail,
            detected_at=self.detected_at,
        )


def gap_key(source: str, stream: bytes, from_id: str) -> str:
    return record_key(source, "gaps", f"{stream.hex()}/{from_id}")


@dataclass(frozen=True)
class SqliteBatchRecord(Record):
    """Committed frames of one SQLite database, consecutive in its generation."""

    TYPE: ClassVar[str] = "sqlite_batch"
    SOURCE_KIND: ClassVar[str] = "sqlite"
    db: str  # the database file's name
    generation: str
    gfirst: int  # frames numbered from the generation's start, first..last
    glast: int
    cycle: str  # catalog.sqliteformat.Cycle.label() of the WAL they were read from
    first_frame: int  # their frame numbers in that WAL
    last_frame: int
    last_cksum: str  # the last frame's checksum (hex): where a restarted archiver resumes
    first_seen: datetime  # when the archiver saw the first and last commit
    last_seen: datetime
    commits: int
    oid: str
    size: int
    archived_at: datetime

    @property
    def key(self) -> str:
        return sqlite_batch_key(self.source, self.db, self.generation, self.gfirst)

    def row(self, source_id: int) -> SqliteBatch:
        from catalog.db.models import SqliteBatch

        return SqliteBatch(
            source_id=source_id,
            db=self.db,
            generation=self.generation,
            gfirst=self.gfirst,
            glast=self.glast,
            cycle=self.cycle,
            first_frame=self.first_frame,
            last_frame=self.last_frame,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            commits=self.commits,
            oid=self.oid,
            size=self.size,
            archived_at=self.archived_at,
        )


def sqlite_batch_key(source: str, db: str, generation: str, gfirst: int) -> str:
    return record_key(source, "sqlite", f"{db}/{generation}/{gfirst:012d}")


@dataclass(frozen=True)
class SqliteGapRecord(Record):
    """Instants of a SQLite database that cannot be restored, from_time to
    to_time: commits possibly missed (a new generation starts after), or
    commits archived while their instants are unknown (the same goes on)."""

    TYPE: ClassVar[str] = "sqlite_gap"
    SOURCE_KIND: ClassVar[str] = "sqlite"
    db: str
    generation: str  # the generation after the gap
    from_time: datetime  # the newest instant known archived before the gap
    to_time: datetime  # the new generation's base copy
    detail: str
    detected_at: datetime

    @property
    def key(self) -> str:
        return sqlite_gap_key(self.source, self.db, self.generation, self.from_time)

    def row(self, source_id: int) -> SqliteGap:
        from catalog.db.models import SqliteGap

        return SqliteGap(
            source_id=source_id,
            db=self.db,
            generation=self.generation,
            from_time=self.from_time,
            to_time=self.to_time,
            detail=self.detail,
            detected_at=self.detected_at,
        )


def sqlite_gap_key(source: str, db: str, generation: str, since: datetime) -> str:
    return record_key(source, "sqlite-gaps", f"{db}/{generation}/{since:%Y%m%dT%H%M%S%fZ}")


RECORD_TYPES: dict[str, type[Record]] = {
    t.TYPE: t
    for t in (
        IdentityRecord,
        WalRecord,
        BackupRecord,
        BatchRecord,
        GapRecord,
        SqliteBatchRecord,
        SqliteGapRecord,
        MarkRecord,
        ReplEpochRecord,
        ReplBatchRecord,
    )
}


def parse_record(doc: dict[str, Any]) -> Record | None:
    """The typed record of a stored document; None for a type this pitr does
    not know (written by a newer one)."""
    cls = RECORD_TYPES.get(str(doc.get("type")))
    return None if cls is None else cls.from_json(doc)
