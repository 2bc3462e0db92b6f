"""Recreate the catalog database from the object store alone.

Every fact the catalog holds was first written to the store as a record
(records/<source>/<kind>/<name>); each record type has a loader here that
turns the fact back into rows. Objects are listed from the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from catalog.db.models import BackupObject, Base, StoredObject
from catalog.queries import ensure_source
from catalog.repository import Repository

Loader = Callable[[Repository, Session, dict[str, Any]], None]


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


def _identity(repo: Repository, s: Session, fact: dict[str, Any]) -> None:
    src = ensure_source(s, fact["source"], "postgres")
    src.system_identifier = fact["system_identifier"]
    src.pg_version = fact["pg_version"]
    src.wal_segment_size = fact["wal_segment_size"]


def _wal(repo: Repository, s: Session, fact: dict[str, Any]) -> None:
    from archiver.postgres.walpush import wal_row

    src = ensure_source(s, fact["source"], "postgres")
    s.add(wal_row(src.id, fact))


def _backup(repo: Repository, s: Session, fact: dict[str, Any]) -> None:
    from archiver.backups import backup_row

    kind = "postgres" if fact["kind"] == "pg_base" else "redis"
    src = ensure_source(s, fact["source"], kind)
    s.add(backup_row(src.id, fact))
    s.flush()
    manifest = json.loads(repo.get_chunk(fact["manifest_oid"]))
    oids = {fact["manifest_oid"]} | manifest_objects(manifest)
    s.add_all(BackupObject(backup_id=fact["id"], oid=oid) for oid in oids)


def _stream_batch(repo: Repository, s: Session, fact: dict[str, Any]) -> None:
    from archiver.redis.archive import batch_row

    s.add(batch_row(ensure_source(s, fact["source"], "redis").id, fact))


def _stream_gap(repo: Repository, s: Session, fact: dict[str, Any]) -> None:
    from archiver.redis.archive import gap_row

    s.add(gap_row(ensure_source(s, fact["source"], "redis").id, fact))


def manifest_objects(manifest: dict[str, Any]) -> set[str]:
    """Objects a backup manifest references: file chunks (PostgreSQL) or
    snapshot chunks (Redis)."""
    oids = {oid for entry in manifest.get("entries", []) for oid in entry.get("chunks", [])}
    oids.update(manifest.get("chunks", []))
    return oids


LOADERS: dict[str, Loader] = {
    "identity": _identity,
    "wal": _wal,
    "backup": _backup,
    "stream_batch": _stream_batch,
    "stream_gap": _stream_gap,
}


def rebuild_catalog(repo: Repository) -> RebuildResult:
    result = RebuildResult()
    facts = []
    for key in repo.list_records("records/"):
        fact = repo.get_record(key)
        if fact.get("type") not in LOADERS:
            result.skipped.append(key)
            continue
        facts.append(fact)
    # Identities first, so that sources carry their segment size before WAL rows.
    facts.sort(key=lambda f: (f["type"] != "identity", f["type"] == "backup"))
    with repo.catalog.session() as s:
        for info in repo.store.list("objects/"):
            oid = info.key.rsplit("/", 1)[-1]
            s.add(StoredObject(oid=oid, size=info.size, stored_size=info.size))
            result.objects += 1
        s.flush()
        for fact in facts:
            LOADERS[fact["type"]](repo, s, fact)
            result.records[fact["type"]] = result.records.get(fact["type"], 0) + 1
    return result
