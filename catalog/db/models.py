"""SQLAlchemy models. Times are stored as UTC-aware datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class RepoMeta(Base):
    __tablename__ = "repo_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Source(Base):
    """An archived system. Identity fields are set by the first archived fact."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # postgres | redis
    system_identifier: Mapped[str | None] = mapped_column(String(32))
    pg_version: Mapped[int | None] = mapped_column(Integer)  # e.g. 150000 (major only)
    wal_segment_size: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StoredObject(Base):
    """A content-addressed object known to be in the store."""

    __tablename__ = "objects"
    oid: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)  # plaintext bytes
    stored_size: Mapped[int] = mapped_column(BigInteger)  # bytes in the store
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WalFile(Base):
    """An archived PostgreSQL WAL segment, .history, .backup or .partial file."""

    __tablename__ = "wal_files"
    __table_args__ = (UniqueConstraint("source_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # segment | history | backup | partial | stream
    timeline: Mapped[int] = mapped_column(Integer)
    segno: Mapped[int | None] = mapped_column(BigInteger)  # for segment/partial/backup
    oid: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    # When PostgreSQL last wrote the file (its mtime at push): every commit
    # before this instant is in this segment or an earlier one.
    end_time: Mapped[datetime] = mapped_column(UTCDateTime)
    archived_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Backup(Base):
    """A PostgreSQL base backup or a Redis keyspace snapshot."""

    __tablename__ = "backups"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # pg_base | redis_snapshot
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    size_bytes: Mapped[int] = mapped_column(BigInteger)  # logical size
    stored_bytes: Mapped[int] = mapped_column(BigInteger)  # new bytes this backup added
    manifest_oid: Mapped[str] = mapped_column(String(64))
    # PostgreSQL: start/stop LSN and timeline; NULL for Redis.
    timeline: Mapped[int | None] = mapped_column(Integer)
    start_lsn: Mapped[str | None] = mapped_column(String(32))
    stop_lsn: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class BackupObject(Base):
    """Which objects a backup references (for verify, check and expire)."""

    __tablename__ = "backup_objects"
    backup_id: Mapped[str] = mapped_column(
        ForeignKey("backups.id", ondelete="CASCADE"), primary_key=True
    )
    oid: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class StreamBatch(Base):
    """A batch of Redis stream entries shipped by the tailer."""

    __tablename__ = "stream_batches"
    __table_args__ = (UniqueConstraint("source_id", "stream", "first_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    stream: Mapped[str] = mapped_column(String(512))
    first_id: Mapped[str] = mapped_column(String(48))
    last_id: Mapped[str] = mapped_column(String(48))
    first_ms: Mapped[int] = mapped_column(BigInteger)
    last_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    count: Mapped[int] = mapped_column(Integer)
    oid: Mapped[str] = mapped_column(String(64))
    archived_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StreamGap(Base):
    """Entries the tailer knows it could not ship (trimmed, stream recreated)."""

    __tablename__ = "stream_gaps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    stream: Mapped[str] = mapped_column(String(512))
    from_id: Mapped[str] = mapped_column(String(48))  # last entry shipped before the gap
    to_id: Mapped[str] = mapped_column(String(48))  # first entry shipped after it
    detail: Mapped[str] = mapped_column(Text)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqliteBatch(Base):
    """Consecutive committed frames of one SQLite database, in one object."""

    __tablename__ = "sqlitedb_batches"
    __table_args__ = (UniqueConstraint("source_id", "db", "generation", "gfirst"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    db: Mapped[str] = mapped_column(String(255))  # the file's name
    generation: Mapped[str] = mapped_column(String(32))
    gfirst: Mapped[int] = mapped_column(BigInteger)  # frames numbered across the generation
    glast: Mapped[int] = mapped_column(BigInteger)
    cycle: Mapped[str] = mapped_column(String(32))  # the WAL cycle the frames were read from
    first_frame: Mapped[int] = mapped_column(BigInteger)
    last_frame: Mapped[int] = mapped_column(BigInteger)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    commits: Mapped[int] = mapped_column(Integer)
    oid: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    archived_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqliteGap(Base):
    """Commits of a SQLite database that may be missing: the archiver could
    not prove continuity, and a new generation starts after."""

    __tablename__ = "sqlitedb_gaps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    db: Mapped[str] = mapped_column(String(255))
    generation: Mapped[str] = mapped_column(String(32))  # the one that starts after the gap
    from_time: Mapped[datetime] = mapped_column(UTCDateTime)
    to_time: Mapped[datetime] = mapped_column(UTCDateTime)
    detail: Mapped[str] = mapped_column(Text)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Mark(Base):
    """A named instant (pitr mark), one row per source it covers."""

    __tablename__ = "marks"
    __table_args__ = (UniqueConstraint("source_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    lsn: Mapped[str | None] = mapped_column(String(32))  # PostgreSQL restore point
    timeline: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReplEpoch(Base):
    """A full resync of a Redis replication capture: the base RDB its
    command stream starts from (catalog.replication)."""

    __tablename__ = "repl_epochs"
    __table_args__ = (UniqueConstraint("source_id", "epoch"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    epoch: Mapped[str] = mapped_column(String(96))  # <replid>-<offset>
    replid: Mapped[str] = mapped_column(String(64))
    start_offset: Mapped[int] = mapped_column(BigInteger)  # where its command stream starts
    base_chunks: Mapped[int] = mapped_column(Integer)
    base_size: Mapped[int] = mapped_column(BigInteger)
    started_ms: Mapped[int] = mapped_column(BigInteger)
    base_ms: Mapped[int] = mapped_column(BigInteger, index=True)  # its first restorable instant
    previous: Mapped[str | None] = mapped_column(String(96))
    lost_ms: Mapped[int | None] = mapped_column(BigInteger)  # the previous link lost


class ReplEpochObject(Base):
    """The chunks of an epoch's base (for verify, check and expire)."""

    __tablename__ = "repl_epoch_objects"
    epoch_id: Mapped[int] = mapped_column(
        ForeignKey("repl_epochs.id", ondelete="CASCADE"), primary_key=True
    )
    oid: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class ReplBatch(Base):
    """Captured replication stream bytes start..end of an epoch, in one object."""

    __tablename__ = "repl_batches"
    __table_args__ = (UniqueConstraint("source_id", "epoch", "start_offset"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    epoch: Mapped[str] = mapped_column(String(96))
    start_offset: Mapped[int] = mapped_column(BigInteger)
    end_offset: Mapped[int] = mapped_column(BigInteger)
    first_ms: Mapped[int] = mapped_column(BigInteger)  # first and last arrival
    last_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    marks: Mapped[int] = mapped_column(Integer)  # arrival instants it carries
    oid: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    # The link was down from here until first_ms (PSYNC continued).
    resumed_from_ms: Mapped[int | None] = mapped_column(BigInteger)
