"""Recreate the catalog database from the object store alone.

Every fact the catalog holds was first written to the store as a record
(records/<source>/<kind>/<name>); each record type has a loader here that
turns the fact back into rows. Objects are listed from the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from catalog.db.models import BackupObject, Base, StoredObject
from catalog.manifests import manifest_type, read_manifest
from catalog.queries import ensure_source
from catalog.records import BackupRecord, IdentityRecord, Record, parse_record
from catalog.repository import Repository


@dataclass
class RebuildResult:
    records: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    skipped: list[str] = field(default_factory=list)


def catalog_is_empty(repo: Repository) -> bool:
    with repo.catalog.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    if "sources" not in tables:
        return True
    with repo.catalog.session() as s:
        return (
            s.query(StoredObject).first() is None
            and s.execute(Base.metadata.tables["sources"].select().limit(1)).first() is None
        )


def reset_catalog(repo: Repository) -> None:
    """Drop every table and create the schema again."""
    Base.metadata.drop_all(repo.catalog.engine)
    with repo.catalog.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    repo.catalog.upgrade()


def _load(repo: Repository, s: Session, record: Record) -> None:
    src = ensure_source(s, record.source, record.source_kind)
    if isinstance(record, IdentityRecord):
        src.system_identifier = record.system_identifier
        src.pg_version = record.pg_version
        src.wal_segment_size = record.wal_segment_size
        return
    s.add(record.row(src.id))
    if isinstance(record, BackupRecord):
        s.flush()
        manifest = read_manifest(repo, record.manifest_oid, manifest_type(record.kind))
        oids = {record.manifest_oid} | manifest.objects()
        s.add_all(BackupObject(backup_id=record.id, oid=oid) for oid in oids)


def rebuild_catalog(repo: Repository) -> RebuildResult:
    result = RebuildResult()
    records: list[Record] = []
    for key in repo.list_records("records/"):
        record = parse_record(repo.get_record(key))
        if record is None:
            result.skipped.append(key)
            continue
        records.append(record)
    # Identities first, so that sources carry their segment size before WAL rows.
    records.sort(key=lambda r: (r.TYPE != IdentityRecord.TYPE, r.TYPE == BackupRecord.TYPE))
    with repo.catalog.session() as s:
        for info in repo.store.list("objects/"):
            oid = info.key.rsplit("/", 1)[-1]
            s.add(StoredObject(oid=oid, size=info.size, stored_size=info.size))
            result.objects += 1
        s.flush()
        for record in records:
            _load(repo, s, record)
            result.records[record.TYPE] = result.records.get(record.TYPE, 0) + 1
    return result
