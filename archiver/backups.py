"""What a finished base backup or snapshot leaves behind, in order: its
manifest object, its record in the store (the fact a catalog rebuild reads),
then its catalog rows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from catalog.db.models import Backup, BackupObject
from catalog.queries import ensure_source, record_objects
from catalog.repository import Chunk, Repository, record_key

# The record kind under records/<source>/ for each backup kind.
RECORD_KIND = {"pg_base": "backups", "redis_snapshot": "snapshots"}
SOURCE_KIND = {"pg_base": "postgres", "redis_snapshot": "redis"}


def commit_backup(
    repo: Repository, fact: dict[str, Any], manifest: dict[str, Any], chunks: list[Chunk]
) -> dict[str, Any]:
    """fact: the backup's own fields (id, kind, source, times, size_bytes, ...);
    returns it completed with the manifest's object id and the stored bytes."""
    manifest_chunk = repo.put_chunk(json.dumps(manifest, separators=(",", ":")).encode())
    fact = {
        **fact,
        "type": "backup",
        "manifest_oid": manifest_chunk.oid,
        "stored_bytes": sum(c.stored_size for c in chunks) + manifest_chunk.stored_size,
    }
    repo.put_record(record_key(fact["source"], RECORD_KIND[fact["kind"]], fact["id"]), fact)
    with repo.catalog.session() as s:
        src = ensure_source(s, fact["source"], SOURCE_KIND[fact["kind"]])
        s.add(backup_row(src.id, fact))
        s.flush()
        record_objects(s, [*chunks, manifest_chunk])
        for oid in {c.oid for c in chunks} | {manifest_chunk.oid}:
            s.add(BackupObject(backup_id=fact["id"], oid=oid))
    return fact


def backup_row(source_id: int, fact: dict[str, Any]) -> Backup:
    """The catalog row of a backup record (also used by catalog rebuild)."""
    return Backup(
        id=fact["id"],
        source_id=source_id,
        kind=fact["kind"],
        started_at=datetime.fromisoformat(fact["started_at"]),
        finished_at=datetime.fromisoformat(fact["finished_at"]),
        size_bytes=fact["size_bytes"],
        stored_bytes=fact["stored_bytes"],
        manifest_oid=fact["manifest_oid"],
        timeline=fact.get("timeline"),
        start_lsn=fact.get("start_lsn"),
        stop_lsn=fact.get("stop_lsn"),
        details=fact.get("details", {}),
    )
