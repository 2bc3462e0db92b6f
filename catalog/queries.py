"""Small catalog queries shared by the archiver, recovery and reports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from catalog.db.models import Source, StoredObject
from catalog.errors import CatalogError
from catalog.repository import Chunk

# Large IN lists are split so that every backend accepts them.
_IN_BATCH = 500


def insert_missing(
    session: Session, model: type[Any], rows: list[dict[str, Any]], keys: list[str]
) -> None:
    """Insert rows, skipping any whose unique keys another writer already stored.

    Several processes share one catalog (wal-push calls, the daemon, backups):
    ON CONFLICT DO NOTHING makes a lost race a no-op instead of an error.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        stmt: Any = postgresql.insert(model).on_conflict_do_nothing(index_elements=keys)
        session.execute(stmt, rows)
        return
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        stmt = sqlite.insert(model).on_conflict_do_nothing(index_elements=keys)
        session.execute(stmt, rows)
        return
    for row in rows:  # other databases: one savepoint per row
        try:
            with session.begin_nested():
                session.add(model(**row))
        except exc.IntegrityError:
            pass


def ensure_source(session: Session, name: str, kind: str) -> Source:
    """The catalog row of a source, created on first use (race-safe)."""
    source = get_source(session, name)
    if source is None:
        insert_missing(session, Source, [{"name": name, "kind": kind}], ["name"])
        source = session.scalars(select(Source).where(Source.name == name)).one()
    if source.kind != kind:
        raise CatalogError(f"source {name}: is recorded as {source.kind}, configured as {kind}")
    return source


def get_source(session: Session, name: str) -> Source | None:
    return session.scalars(select(Source).where(Source.name == name)).one_or_none()


@dataclass(frozen=True)
class SourceRow:
    """A source's catalog row as a plain value, usable after its session."""

    id: int
    name: str
    kind: str
    system_identifier: str | None
    pg_version: int | None
    wal_segment_size: int | None


def source_row(session: Session, name: str) -> SourceRow | None:
    src = get_source(session, name)
    if src is None:
        return None
    return SourceRow(
        src.id, src.name, src.kind, src.system_identifier, src.pg_version, src.wal_segment_size
    )


def known_objects(session: Session, oids: Iterable[str]) -> set[str]:
    """Which of these objects the catalog already knows to be stored."""
    wanted = list(dict.fromkeys(oids))
    found: set[str] = set()
    for i in range(0, len(wanted), _IN_BATCH):
        batch = wanted[i : i + _IN_BATCH]
        found.update(session.scalars(select(StoredObject.oid).where(StoredObject.oid.in_(batch))))
    return found


def record_objects(session: Session, chunks: Iterable[Chunk]) -> None:
    """Remember stored objects; an object already known is left as it is."""
    unique = {c.oid: c for c in chunks}
    known = known_objects(session, unique)
    rows = [
        {"oid": oid, "size": chunk.size, "stored_size": chunk.in_store or chunk.stored_size}
        for oid, chunk in unique.items()
        if oid not in known
    ]
    # Another process may record the same object meanwhile (shared chunks).
    insert_missing(session, StoredObject, rows, ["oid"])
