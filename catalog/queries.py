"""Small catalog queries shared by the archiver, recovery and reports."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.db.models import Source, StoredObject
from catalog.errors import CatalogError
from catalog.repository import Chunk

# Large IN lists are split so that every backend accepts them.
_IN_BATCH = 500


def ensure_source(session: Session, name: str, kind: str) -> Source:
    """The catalog row of a source, created on first use."""
    source = session.scalars(select(Source).where(Source.name == name)).one_or_none()
    if source is None:
        source = Source(name=name, kind=kind)
        session.add(source)
        session.flush()
    elif source.kind != kind:
        raise CatalogError(f"source {name}: is recorded as {source.kind}, configured as {kind}")
    return source


def get_source(session: Session, name: str) -> Source | None:
    return session.scalars(select(Source).where(Source.name == name)).one_or_none()


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
    for oid, chunk in unique.items():
        if oid not in known:
            session.add(StoredObject(oid=oid, size=chunk.size, stored_size=chunk.stored_size))
