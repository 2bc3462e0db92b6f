"""Catalog-only facts for the reports: what each source holds, how much it
weighs, when it was last archived, and which rows reference which objects.

Nothing here reads the object store; windows and gaps that need the WAL
chain are computed in recovery.coverage.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog.db.models import (
    Backup,
    BackupObject,
    ReplBatch,
    ReplEpoch,
    ReplEpochObject,
    Source,
    SqliteBatch,
    StoredObject,
    StreamBatch,
    StreamGap,
    WalFile,
)
from catalog.details import Details, backup_details


@dataclass(frozen=True)
class BackupFact:
    id: str
    kind: str  # pg_base | redis_snapshot
    started_at: datetime
    finished_at: datetime
    size_bytes: int
    stored_bytes: int  # new bytes this backup added to the store
    timeline: int | None
    start_lsn: str | None
    stop_lsn: str | None
    details: Details  # PgBackupDetails | SnapshotDetails, by kind

    @property
    def dedup_ratio(self) -> float | None:
        """Logical bytes per byte the backup added (compression and dedup together)."""
        return self.size_bytes / self.stored_bytes if self.stored_bytes else None


@dataclass(frozen=True)
class GapFact:
    stream: str
    from_id: str
    to_id: str
    detail: str
    detected_at: datetime


# How the reports name a Ref's kind, where its name is not plain enough.
REF_KINDS = {
    "wal": "WAL file",
    "stream_batch": "stream batch",
    "repl_epoch": "replication epoch base",
    "repl_batch": "replication batch",
}


@dataclass(frozen=True)
class Ref:
    """A catalog row that needs an object."""

    source: str
    # wal | backup | snapshot | stream_batch | sqlite_batch | repl_epoch | repl_batch
    kind: str
    # WAL file name, backup id, "<stream> <first id>..<last id>", a replication
    # epoch's name, or "<epoch> <start>..<end>" (offsets of a replication batch)
    name: str

    def describe(self) -> str:
        what = REF_KINDS.get(self.kind, self.kind)
        return f"{self.source}: {what} {self.name}"


def sources(session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.name)))


def backups(session: Session, source_id: int) -> list[BackupFact]:
    """Backups and snapshots of a source, oldest first."""
    rows = session.scalars(
        select(Backup).where(Backup.source_id == source_id).order_by(Backup.finished_at, Backup.id)
    )
    return [
        BackupFact(
            b.id,
            b.kind,
            b.started_at,
            b.finished_at,
            b.size_bytes,
            b.stored_bytes,
            b.timeline,
            b.start_lsn,
            b.stop_lsn,
            backup_details(b.kind, b.details),
        )
        for b in rows
    ]


def wal_totals(session: Session, source_id: int) -> dict[str, Any]:
    """Counts and sizes of a source's archived WAL (stored size of its objects)."""
    files, logical, newest_archived = session.execute(
        select(func.count(WalFile.id), func.sum(WalFile.size), func.max(WalFile.archived_at)).where(
            WalFile.source_id == source_id
        )
    ).one()
    stored = session.scalar(
        select(func.sum(StoredObject.stored_size)).where(
            StoredObject.oid.in_(
                select(WalFile.oid).where(WalFile.source_id == source_id).distinct()
            )
        )
    )
    timelines = sorted(
        session.scalars(select(WalFile.timeline).where(WalFile.source_id == source_id).distinct())
    )
    newest = session.scalars(
        select(WalFile.name)
        .where(WalFile.source_id == source_id, WalFile.kind == "segment")
        .order_by(WalFile.segno.desc(), WalFile.timeline.desc())
        .limit(1)
    ).first()
    return {
        "wal_files": int(files or 0),
        "wal_bytes": int(logical or 0),
        "wal_stored_bytes": int(stored or 0),
        "timelines": timelines,
        "newest_segment": newest,
        "streamed": newest_streamed(session, source_id),
        "last_archived_at": _utc(newest_archived),
    }


def newest_streamed(session: Session, source_id: int) -> dict[str, Any] | None:
    """The newest piece of WAL streamed (kind "stream": the segment still
    being received), or None: a source that does not stream, or whose
    streamed segment has just been completed and archived whole."""
    row = session.scalars(
        select(WalFile)
        .where(WalFile.source_id == source_id, WalFile.kind == "stream")
        .order_by(WalFile.end_time.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    segment, _, received = row.name.rpartition(".")
    return {
        "segment": segment.rsplit(".", 1)[0],
        "received_bytes": int(received, 16),
        "newest_at": row.end_time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


def stream_totals(session: Session, source_id: int) -> dict[str, Any]:
    """Counts of a Redis source's archived stream batches and entries."""
    batches, entries, streams, newest_archived = session.execute(
        select(
            func.count(StreamBatch.id),
            func.sum(StreamBatch.count),
            func.count(func.distinct(StreamBatch.stream)),
            func.max(StreamBatch.archived_at),
        ).where(StreamBatch.source_id == source_id)
    ).one()
    logical, stored = session.execute(
        select(func.sum(StoredObject.size), func.sum(StoredObject.stored_size)).where(
            StoredObject.oid.in_(
                select(StreamBatch.oid).where(StreamBatch.source_id == source_id).distinct()
            )
        )
    ).one()
    gaps = session.scalar(select(func.count(StreamGap.id)).where(StreamGap.source_id == source_id))
    return {
        "streams": int(streams or 0),
        "stream_batches": int(batches or 0),
        "stream_entries": int(entries or 0),
        "stream_bytes": int(logical or 0),
        "stream_stored_bytes": int(stored or 0),
        "stream_gaps": int(gaps or 0),
        "last_archived_at": _utc(newest_archived),
    }


def stream_gaps(session: Session, source_id: int) -> list[GapFact]:
    rows = session.scalars(
        select(StreamGap).where(StreamGap.source_id == source_id).order_by(StreamGap.detected_at)
    )
    return [GapFact(g.stream, g.from_id, g.to_id, g.detail, g.detected_at) for g in rows]


def repository_totals(session: Session) -> dict[str, int]:
    count, logical, stored = session.execute(
        select(
            func.count(StoredObject.oid),
            func.sum(StoredObject.size),
            func.sum(StoredObject.stored_size),
        )
    ).one()
    return {
        "objects": int(count or 0),
        "bytes": int(logical or 0),
        "stored_bytes": int(stored or 0),
    }


def object_refs(session: Session, only: set[str] | None = None) -> dict[str, list[Ref]]:
    """Every object the catalog references, with the rows that need it
    (only the named sources when `only` is given)."""
    refs: dict[str, list[Ref]] = defaultdict(list)
    names = {s.id: s.name for s in sources(session) if only is None or s.name in only}
    for sid, name, oid in session.execute(
        select(WalFile.source_id, WalFile.name, WalFile.oid).order_by(WalFile.name)
    ):
        if sid in names:
            refs[oid].append(Ref(names[sid], "wal", name))
    kinds = {"pg_base": "backup", "redis_snapshot": "snapshot", "sqlite_base": "base_copy"}
    backup_rows = session.execute(
        select(Backup.id, Backup.source_id, Backup.kind, Backup.manifest_oid)
    )
    owners = {}
    for bid, sid, kind, manifest in backup_rows:
        if sid in names:
            owners[bid] = Ref(names[sid], kinds.get(kind, kind), bid)
            refs[manifest].append(owners[bid])
    for bid, oid in session.execute(select(BackupObject.backup_id, BackupObject.oid)):
        ref = owners.get(bid)
        if ref is not None and ref not in refs[oid]:
            refs[oid].append(ref)
    for sid, stream, first, last, oid in session.execute(
        select(
            StreamBatch.source_id,
            StreamBatch.stream,
            StreamBatch.first_id,
            StreamBatch.last_id,
            StreamBatch.oid,
        )
    ):
        if sid in names:
            refs[oid].append(Ref(names[sid], "stream_batch", f"{stream} {first}..{last}"))
    for sid, db, generation, gfirst, glast, oid in session.execute(
        select(
            SqliteBatch.source_id,
            SqliteBatch.db,
            SqliteBatch.generation,
            SqliteBatch.gfirst,
            SqliteBatch.glast,
            SqliteBatch.oid,
        )
    ):
        if sid in names:
            name = f"{db} {generation} {gfirst}..{glast}"
            refs[oid].append(Ref(names[sid], "sqlite_batch", name))
    _replication_refs(session, names, refs)
    return dict(refs)


def _replication_refs(session: Session, names: dict[int, str], refs: dict[str, list[Ref]]) -> None:
    """The base chunks of replication epochs and their batches' objects."""
    for sid, epoch, oid in session.execute(
        select(ReplEpoch.source_id, ReplEpoch.epoch, ReplEpochObject.oid).join(
            ReplEpochObject, ReplEpochObject.epoch_id == ReplEpoch.id
        )
    ):
        if sid in names:
            refs[oid].append(Ref(names[sid], "repl_epoch", epoch))
    for sid, epoch, start, end, oid in session.execute(
        select(
            ReplBatch.source_id,
            ReplBatch.epoch,
            ReplBatch.start_offset,
            ReplBatch.end_offset,
            ReplBatch.oid,
        )
    ):
        if sid in names:
            refs[oid].append(Ref(names[sid], "repl_batch", f"{epoch} {start}..{end}"))


def object_sizes(session: Session) -> dict[str, tuple[int, int]]:
    """oid -> (plaintext size, stored size) as recorded when it was written.
    A stored size of 0 means the writer found the object already there."""
    return {
        oid: (size, stored)
        for oid, size, stored in session.execute(
            select(StoredObject.oid, StoredObject.size, StoredObject.stored_size)
        )
    }


def _utc(value: datetime | None) -> datetime | None:
    # Aggregates bypass the column type on SQLite: give them their zone back.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
