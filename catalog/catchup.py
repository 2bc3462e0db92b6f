"""Bring the catalog database up to date with the records in the store.

The catalog is a projection of the records. A command that reads it first
applies what the journal (catalog.journal) lists since the catalog's last
catch-up; a catalog that has never caught up (new, lost, or older than the
journal) is filled from every record instead, which is what
`pitr catalog rebuild` does after emptying it. Applying a record the catalog
already holds changes nothing, so catch-ups may overlap and repeat.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Integer,
    PrimaryKeyConstraint,
    UniqueConstraint,
    and_,
    exists,
    inspect,
    select,
)
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from catalog.db.engine import holds_a_source
from catalog.db.models import BackupObject, Base, ReplEpoch, RepoMeta, StoredObject
from catalog.errors import FormatError, IntegrityError, ObjectNotFound, StorageError
from catalog.journal import HORIZON, MARGIN, entries_since
from catalog.manifests import manifest_type, read_manifest
from catalog.queries import ensure_source, insert_missing, record_objects
from catalog.records import BackupRecord, IdentityRecord, Record, WalRecord, parse_record
from catalog.replication import ReplBatchRecord, ReplEpochRecord
from catalog.repository import Chunk, Repository, object_key

WATERMARK = "journal_caught_up"  # repo_meta key: when the last catch-up began
WRITER = "journal_writer"  # repo_meta key: this catalog's name in journal entries


def catch_up(repo: Repository) -> Counter[str]:
    """Apply what is new since the last catch-up; counts per record type."""
    for attempt in range(3):
        try:
            return _catch_up(repo)
        except StorageError as e:  # another catch-up inserted the same row first
            if not isinstance(e.__cause__, DBIntegrityError) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _catch_up(repo: Repository) -> Counter[str]:
    now = datetime.now(UTC)
    applied: Counter[str] = Counter()
    with repo.catalog.session() as s:
        since = watermark(s)
        if (since is None and not holds_a_source(s)) or (since and now - since > HORIZON):
            applied = Counter(fill(repo, s, fresh=False).records)
        else:
            # A catalog that never caught up but has sources was kept current
            # by its writers before there was a journal: it reads the whole
            # journal, which holds only what was written since.
            for entry in entries_since(repo, since, now, skip_writer=writer_id(s)):
                record = _fetch(repo, entry.record)
                if record is not None and apply(repo, s, record):
                    applied[record.TYPE] += 1
        if since is None or applied or now - since > MARGIN / 2:
            set_watermark(s, now)
    return applied


@dataclass
class Filled:
    records: dict[str, int] = field(default_factory=dict)  # applied, per type
    objects: int = 0
    skipped: list[str] = field(default_factory=list)  # records of unknown types


def fill(repo: Repository, s: Session, fresh: bool) -> Filled:
    """Every object and record of the store into the catalog (the catch-up
    from nothing); fresh: the catalog is known to be empty."""
    result = Filled()
    objects = [
        {"oid": info.key.rsplit("/", 1)[-1], "size": info.size, "stored_size": info.size}
        for info in repo.store.list("objects/")
    ]
    for i in range(0, len(objects), 500):
        insert_missing(s, StoredObject, objects[i : i + 500], ["oid"])
    result.objects = len(objects)
    s.flush()
    result.records = dict(load_all(repo, s, fresh, result.skipped))
    return result


def load_all(
    repo: Repository, s: Session, fresh: bool, skipped: list[str] | None = None
) -> Counter[str]:
    """Every record of the store; fresh: the catalog is known to be empty.
    skipped collects the keys of records of a type this pitr does not know."""
    records = []
    for key in repo.list_records("records/"):
        try:
            record = parse_record(repo.get_record(key))
        except ObjectNotFound:
            continue  # expired since it was listed
        if record is not None:
            records.append(record)
        elif skipped is not None:
            skipped.append(key)
    # Identities first, so that sources carry their segment size before WAL rows.
    records.sort(key=lambda r: (r.TYPE != IdentityRecord.TYPE, r.TYPE == BackupRecord.TYPE))
    applied: Counter[str] = Counter()
    for record in records:
        if apply(repo, s, record, fresh):
            applied[record.TYPE] += 1
    return applied


def _fetch(repo: Repository, key: str) -> Record | None:
    """The record an entry names. One that fails its check is left out, so
    that every command still runs; catalog rebuild names it and refuses."""
    try:
        return parse_record(repo.get_record(key))
    except ObjectNotFound:
        return None  # expired since it was listed, or its writer died first
    except (FormatError, IntegrityError):
        return None


def apply(repo: Repository, s: Session, record: Record, fresh: bool = False) -> bool:
    """Project one record; False when the catalog held it already."""
    src = ensure_source(s, record.source, record.source_kind)
    if isinstance(record, IdentityRecord):
        identity = (record.system_identifier, record.pg_version, record.wal_segment_size)
        if (src.system_identifier, src.pg_version, src.wal_segment_size) == identity:
            return False
        src.system_identifier, src.pg_version, src.wal_segment_size = identity
        return True
    row = record.row(src.id)
    if not fresh and _held(s, row):
        return False
    s.add(row)
    s.flush()
    if isinstance(record, BackupRecord):
        manifest = read_manifest(repo, record.manifest_oid, manifest_type(record.kind))
        oids = {record.manifest_oid} | manifest.objects()
        s.add_all(BackupObject(backup_id=record.id, oid=oid) for oid in oids)
    elif isinstance(record, ReplEpochRecord) and isinstance(row, ReplEpoch):
        s.add_all(record.object_rows(row.id))
        if not fresh:  # a fill lists every object itself
            # 0: a base chunk's own size is not recorded, only the base's
            _record_stored(repo, s, [(oid, 0) for oid in record.base_chunks])
    elif isinstance(record, WalRecord | ReplBatchRecord) and not fresh:
        _record_stored(repo, s, [(record.oid, record.size)])
    return True


def _record_stored(repo: Repository, s: Session, objects: list[tuple[str, int]]) -> None:
    """Remember the (oid, plaintext size or 0: unknown) objects of a record
    that are in the store, with their stored size (verify compares it)."""
    for oid, size in objects:
        info = repo.store.stat(object_key(oid))
        if info is not None:
            record_objects(s, [Chunk(oid, size, 0, info.size)])


def _held(s: Session, row: Base) -> bool:
    """Whether a row with the same identity is there: the columns of the
    table's unique constraint or its natural primary key, else all of them."""
    mapper = inspect(type(row))
    table: Any = mapper.local_table
    columns = next((list(c.columns) for c in table.constraints if _is_unique(c)), None)
    if columns is None:
        columns = [c for c in table.columns if c.name != "id"]
    values = [c == getattr(row, mapper.get_property_by_column(c).key) for c in columns]
    return bool(s.scalar(select(exists().where(and_(*values)))))


def _is_unique(constraint: object) -> bool:
    if isinstance(constraint, UniqueConstraint):
        return True
    return isinstance(constraint, PrimaryKeyConstraint) and not _surrogate(constraint.columns)


def _surrogate(columns: Iterable[Any]) -> bool:
    """A single integer key the database numbers: says nothing about the fact."""
    cols = list(columns)
    return len(cols) == 1 and isinstance(cols[0].type, Integer)


def watermark(s: Session) -> datetime | None:
    row = s.get(RepoMeta, WATERMARK)
    return None if row is None else datetime.fromisoformat(row.value)


def set_watermark(s: Session, at: datetime) -> None:
    row = s.get(RepoMeta, WATERMARK)
    if row is None:
        s.add(RepoMeta(key=WATERMARK, value=at.isoformat()))
    else:
        row.value = at.isoformat()


def writer_id(s: Session) -> str:
    """This catalog's name in the journal, made on first use."""
    row = s.get(RepoMeta, WRITER)
    if row is not None:
        return row.value
    insert_missing(s, RepoMeta, [{"key": WRITER, "value": os.urandom(4).hex()}], ["key"])
    return str(s.scalars(select(RepoMeta.value).where(RepoMeta.key == WRITER)).one())
