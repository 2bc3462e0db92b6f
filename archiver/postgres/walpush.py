"""archive_command: store one WAL file durably, exactly once.

Order of durability: the object (archiver.postgres.walfile), then its record in the
store (the fact rebuild reads), then the catalog row. Exit 0 is allowed only
after all three. An object stored for a push that is then refused is left
for expire to collect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from archiver.errors import WalIntegrityError
from archiver.postgres.walfile import StoredWal, store_wal
from catalog.db.models import Source, WalFile
from catalog.queries import ensure_source, record_objects
from catalog.records import IdentityRecord, WalRecord
from catalog.repository import Chunk, Repository


@dataclass(frozen=True)
class PushResult:
    name: str
    oid: str
    stored_bytes: int
    already: bool  # the same content was archived before


def push_wal(
    repo: Repository, source: str, path: str | Path, stored: StoredWal | None = None
) -> PushResult:
    """stored: the file's object when store_wal ran already (the daemon)."""
    stored = stored or store_wal(repo, path)
    wal, oid = stored.wal, stored.chunk.oid
    with repo.catalog.session() as s:
        src = ensure_source(s, source, "postgres")
        if src.wal_segment_size:  # the name as the source's clusters read it
            wal = wal.sized(src.wal_segment_size) or wal
        row = s.scalars(
            select(WalFile).where(WalFile.source_id == src.id, WalFile.name == wal.name)
        ).one_or_none()
        if row is not None:
            return _same_or_refuse(wal.name, row.oid, oid, 0)
        identity = check_identity(src, stored)

    record = WalRecord(
        source,
        wal.name,
        wal.kind,
        wal.timeline,
        wal.segno,
        oid,
        stored.chunk.size,
        end_time=datetime.fromtimestamp(stored.mtime, UTC),
        archived_at=datetime.now(UTC),
    )
    earlier = repo.put_fact(record)
    if earlier is not None:
        # Archived before, but the catalog had lost the row: the store decides.
        record = WalRecord.from_json(earlier)
        _same_or_refuse(wal.name, record.oid, oid, 0)
    commit_row(repo, record, stored.chunk, identity)
    return PushResult(wal.name, oid, stored.chunk.stored_size, earlier is not None)


def _same_or_refuse(name: str, archived_oid: str, oid: str, stored: int) -> PushResult:
    if archived_oid != oid:
        raise WalIntegrityError(
            f"wal-push {name}: already archived with different content; refusing to overwrite"
        )
    return PushResult(name, oid, stored, True)


def check_identity(src: Source, stored: StoredWal) -> tuple[str, int, int] | None:
    """Refuse WAL of another system or version; return the identity to record
    when this is the first segment the source sees."""
    if stored.header is None:
        return None
    sysid, version, _ = stored.header
    if src.system_identifier is None:
        return stored.header
    if src.system_identifier != sysid or src.pg_version != version:
        raise WalIntegrityError(
            f"wal-push {stored.path}: WAL of system {sysid} (PostgreSQL {version}), but source "
            f"{src.name} archives system {src.system_identifier} "
            f"(PostgreSQL {src.pg_version})"
        )
    return None


def commit_row(
    repo: Repository,
    record: WalRecord,
    chunk: Chunk,
    identity: tuple[str, int, int] | None,
) -> None:
    source = record.source
    if identity is not None:
        repo.put_fact(IdentityRecord(source, *identity))
    try:
        with repo.catalog.session() as s:
            src = ensure_source(s, source, "postgres")
            if identity is not None and src.system_identifier is None:
                src.system_identifier, src.pg_version, src.wal_segment_size = identity
            s.add(record.row(src.id))
            record_objects(s, [chunk])
    except Exception as e:
        # A concurrent push of the same name won the insert: fine if identical.
        if not isinstance(getattr(e, "__cause__", None), DBIntegrityError):
            raise
        with repo.catalog.session() as s:
            src = ensure_source(s, source, "postgres")
            row = s.scalars(
                select(WalFile).where(WalFile.source_id == src.id, WalFile.name == record.name)
            ).one()
            _same_or_refuse(record.name, row.oid, record.oid, 0)
