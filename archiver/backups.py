"""What a finished base backup or snapshot leaves behind, in order: its
manifest object, its record in the store (the fact a catalog rebuild reads),
then its catalog rows."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select

from catalog.db.models import Backup, BackupObject
from catalog.manifests import Manifest
from catalog.queries import ensure_source, record_objects
from catalog.records import BackupRecord
from catalog.repository import Chunk, Repository


@dataclass(frozen=True)
class Taken:
    """A finished base backup or snapshot: its record, and how long it took."""

    record: BackupRecord
    seconds: float

    @property
    def id(self) -> str:
        return self.record.id


def commit_backup(
    repo: Repository, record: BackupRecord, manifest: Manifest, chunks: list[Chunk]
) -> BackupRecord:
    """Store the manifest, then the record, then the rows; returns the record
    completed with the manifest's object id and the bytes the backup added."""
    manifest_chunk = repo.put_chunk(manifest.encode())
    record = replace(
        record,
        manifest_oid=manifest_chunk.oid,
        stored_bytes=sum(c.stored_size for c in chunks) + manifest_chunk.stored_size,
    )
    repo.put_fact(record)
    with repo.catalog.session() as s:
        src = ensure_source(s, record.source, record.source_kind)
        s.add(record.row(src.id))
        s.flush()
        record_objects(s, [*chunks, manifest_chunk])
        for oid in {c.oid for c in chunks} | {manifest_chunk.oid}:
            s.add(BackupObject(backup_id=record.id, oid=oid))
    return record


def objects_of_latest(repo: Repository, source: str, kind: str) -> set[str]:
    """Objects of the source's newest backup of this kind: known to be
    stored, so not written again."""
    with repo.catalog.session() as s:
        src = ensure_source(s, source, BackupRecord.KINDS[kind][1])
        latest = s.scalars(
            select(Backup.id)
            .where(Backup.source_id == src.id, Backup.kind == kind)
            .order_by(Backup.finished_at.desc())
            .limit(1)
        ).first()
        if latest is None:
            return set()
        return set(s.scalars(select(BackupObject.oid).where(BackupObject.backup_id == latest)))
