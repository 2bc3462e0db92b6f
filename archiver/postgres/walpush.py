"""archive_command: store one WAL file durably, exactly once.

Order of durability: the object (archiver.postgres.walfile), then its record
in the store, named first in the journal (catalog.journal). That record is
the acknowledgement: `pitr wal-push` without a daemon stops there and never
opens the catalog database, which catches up from the journal when it is
next read. Captures that hold a catalog (the daemon) commit the row too.
An object stored for a push that is then refused is left for expire to
collect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from archiver.errors import WalIntegrityError
from archiver.postgres.walfile import StoredWal, store_wal
from catalog.errors import ObjectNotFound
from catalog.records import IdentityRecord, WalRecord, identity_key
from catalog.repository import Chunk, Repository

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# Identities found in a store, by (store URL, source): a recorded one never changes.
_identities: dict[tuple[str, str], IdentityRecord] = {}


@dataclass(frozen=True)
class PushResult:
    name: str
    oid: str
    stored_bytes: int
    already: bool  # the same content was archived before


def push_wal(
    repo: Repository,
    source: str,
    path: str | Path,
    stored: StoredWal | None = None,
    project: bool = True,
) -> PushResult:
    """stored: the file's object when store_wal ran already (the daemon);
    project: commit the catalog row too (False: the store alone acknowledges)."""
    done = record_wal(repo, source, path, stored, projected=project)
    if project:
        commit_row(repo, done.record, done.stored.chunk, done.identity)
    return done.result


@dataclass(frozen=True)
class Recorded:
    """A WAL file durable in the store: object and record."""

    result: PushResult
    record: WalRecord  # as stored (an earlier push's when it was there)
    identity: IdentityRecord | None
    stored: StoredWal


def record_wal(
    repo: Repository,
    source: str,
    path: str | Path,
    stored: StoredWal | None = None,
    projected: bool = True,
) -> Recorded:
    """The object and the record, without the catalog; projected: the
    caller commits the row to its catalog (commit_row) right after."""
    stored = stored or store_wal(repo, path)
    wal, oid = stored.wal, stored.chunk.oid
    identity = source_identity(repo, source, stored, projected)
    if identity is not None:  # the name as the source's clusters read it
        wal = wal.sized(identity.wal_segment_size) or wal
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
    earlier = repo.put_fact(record, projected=projected)
    if earlier is not None:
        record = WalRecord.from_json(earlier)
        _same_or_refuse(wal.name, record.oid, oid)
    result = PushResult(wal.name, oid, stored.chunk.stored_size, earlier is not None)
    return Recorded(result, record, identity, stored)


def _same_or_refuse(name: str, archived_oid: str, oid: str) -> None:
    if archived_oid != oid:
        raise WalIntegrityError(
            f"wal-push {name}: already archived with different content; refusing to overwrite"
        )


def source_identity(
    repo: Repository, source: str, stored: StoredWal, project: bool = True
) -> IdentityRecord | None:
    """The system the source archives, recorded from this file's header when
    it is the first to carry one; a file of another system is refused."""
    identity = recorded_identity(repo, source)
    if identity is None and stored.header is not None:
        identity = _record_identity(repo, IdentityRecord(source, *stored.header), project)
    check_identity(source, identity, stored)
    return identity


def recorded_identity(repo: Repository, source: str) -> IdentityRecord | None:
    """The system the source archives, as its identity record in the store says."""
    cached = _identities.get((repo.store.url, source))
    if cached is not None:
        return cached
    try:
        found = IdentityRecord.from_json(repo.get_record(identity_key(source)))
    except ObjectNotFound:
        return None
    _identities[repo.store.url, source] = found
    return found


def _record_identity(repo: Repository, identity: IdentityRecord, project: bool) -> IdentityRecord:
    """The first segment's system becomes the source's, unless a concurrent
    first push recorded another one a moment earlier."""
    earlier = repo.put_fact(identity, projected=project)
    if earlier is not None:
        identity = IdentityRecord.from_json(earlier)
    _identities[repo.store.url, identity.source] = identity
    return identity


def check_identity(source: str, known: IdentityRecord | None, stored: StoredWal) -> None:
    """Refuse WAL of another system or version than the source archives."""
    if stored.header is None or known is None:
        return
    sysid, version, _ = stored.header
    if known.system_identifier != sysid or known.pg_version != version:
        raise WalIntegrityError(
            f"wal-push {stored.path}: WAL of system {sysid} (PostgreSQL {version}), but source "
            f"{source} archives system {known.system_identifier} "
            f"(PostgreSQL {known.pg_version})"
        )


def commit_row(
    repo: Repository, record: WalRecord, chunk: Chunk, identity: IdentityRecord | None
) -> None:
    """The catalog's rows for a record just made durable: the source's
    identity when it is new, the WAL file, its object."""
    from sqlalchemy.exc import IntegrityError as DBIntegrityError

    from catalog.queries import ensure_source

    try:
        with repo.catalog.session() as s:
            _add_rows(repo, s, record, chunk, identity)
    except Exception as e:
        # A concurrent push of the same name won the insert: fine if identical.
        if not isinstance(getattr(e, "__cause__", None), DBIntegrityError):
            raise
        with repo.catalog.session() as s:
            _same_row(s, ensure_source(s, record.source, "postgres").id, record)


def commit_rows(repo: Repository, batch: list[Recorded]) -> None:
    """commit_row for many records in one transaction (one catalog commit,
    not one per segment, while the daemon drains a backlog); one by one
    when the batch is refused."""
    try:
        with repo.catalog.session() as s:
            for done in batch:
                _add_rows(repo, s, done.record, done.stored.chunk, done.identity)
    except Exception:
        for done in batch:  # a concurrent push won an insert: each sorts out its own
            commit_row(repo, done.record, done.stored.chunk, done.identity)


def _add_rows(
    repo: Repository,
    s: Session,
    record: WalRecord,
    chunk: Chunk,
    identity: IdentityRecord | None,
) -> None:
    from catalog.catchup import apply
    from catalog.queries import ensure_source, record_objects

    if identity is not None:
        apply(repo, s, identity)
    source_id = ensure_source(s, record.source, "postgres").id
    if not _same_row(s, source_id, record):
        s.add(record.row(source_id))
        record_objects(s, [chunk])


def _same_row(s: Session, source_id: int, record: WalRecord) -> bool:
    """Whether the catalog has the record's row; refused if with other content."""
    from sqlalchemy import select

    from catalog.db.models import WalFile

    oid = s.scalars(
        select(WalFile.oid).where(WalFile.source_id == source_id, WalFile.name == record.name)
    ).one_or_none()
    if oid is not None:
        _same_or_refuse(record.name, oid, record.oid)
    return oid is not None
