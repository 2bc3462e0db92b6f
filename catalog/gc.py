"""Removal of objects no catalog row references.

Archivers write an object first and commit the row that references it
last, so an unreferenced object may simply be one whose row is not
committed yet. Only objects older than a grace period (by the store's own
timestamp) are removed; the grace must exceed the longest write-to-commit
time, which for a base backup is the whole backup.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from catalog.db.models import (
    Backup,
    BackupObject,
    ReplBatch,
    ReplEpochObject,
    SqliteBatch,
    StoredObject,
    StreamBatch,
    WalFile,
)
from catalog.repository import Repository, object_key
from catalog.store import ObjectInfo

_BATCH = 500


# The catalog table of every fact that references one object, by record type.
OBJECT_FACTS: dict[str, type[WalFile | StreamBatch | SqliteBatch | ReplBatch]] = {
    "wal": WalFile,
    "stream_batch": StreamBatch,
    "sqlite_batch": SqliteBatch,
    "repl_batch": ReplBatch,
}
# Record types whose facts reference objects, those of many objects included
# (a replication epoch's base chunks, rows of repl_epoch_objects).
REFERENCING_TYPES = (*OBJECT_FACTS, "repl_epoch")


def referenced_oids(
    session: Session,
    *,
    skip_backups: Collection[str] = (),
    skip_facts: Mapping[str, Collection[int]] | None = None,
) -> set[str]:
    """Every object a catalog row references, leaving out the rows named
    (backups by id, other facts by record type and row id: those about to
    be removed, for a dry run)."""
    skip_b = set(skip_backups)
    refs: set[str] = set()
    for record_type, model in OBJECT_FACTS.items():
        skip = set((skip_facts or {}).get(record_type, ()))
        refs |= {
            oid for fid, oid in session.execute(select(model.id, model.oid)) if fid not in skip
        }
    refs |= {
        oid
        for bid, oid in session.execute(select(Backup.id, Backup.manifest_oid))
        if bid not in skip_b
    }
    refs |= {
        oid
        for bid, oid in session.execute(select(BackupObject.backup_id, BackupObject.oid))
        if bid not in skip_b
    }
    skip_e = set((skip_facts or {}).get("repl_epoch", ()))
    refs |= {
        oid
        for eid, oid in session.execute(select(ReplEpochObject.epoch_id, ReplEpochObject.oid))
        if eid not in skip_e
    }
    return refs


@dataclass
class Garbage:
    objects: list[ObjectInfo] = field(default_factory=list)  # to remove
    young: list[ObjectInfo] = field(default_factory=list)  # unreferenced, within the grace
    stale_rows: list[str] = field(default_factory=list)  # catalog rows of absent objects

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.objects)


def find_garbage(
    repo: Repository,
    now: datetime,
    grace: timedelta,
    *,
    skip_backups: Collection[str] = (),
    skip_facts: Mapping[str, Collection[int]] | None = None,
) -> Garbage:
    # List first, read references second: a row committed in between counts.
    listed = list(repo.store.list("objects/"))
    with repo.catalog.session() as s:
        refs = referenced_oids(s, skip_backups=skip_backups, skip_facts=skip_facts)
        rows = set(s.scalars(select(StoredObject.oid)))
    cutoff = now.timestamp() - grace.total_seconds()
    garbage = Garbage()
    present = set()
    for info in listed:
        oid = info.key.rsplit("/", 1)[-1]
        present.add(oid)
        if oid in refs or info.key != object_key(oid):
            continue
        (garbage.objects if info.mtime < cutoff else garbage.young).append(info)
    garbage.stale_rows = sorted(oid for oid in rows - refs - present)
    return garbage


def remove_garbage(repo: Repository, garbage: Garbage) -> None:
    """Delete the objects, then forget them (and rows of absent objects)."""
    oids = []
    for info in garbage.objects:
        repo.store.delete(info.key)
        oids.append(info.key.rsplit("/", 1)[-1])
    oids += garbage.stale_rows
    for i in range(0, len(oids), _BATCH):
        with repo.catalog.session() as s:
            s.execute(delete(StoredObject).where(StoredObject.oid.in_(oids[i : i + _BATCH])))
