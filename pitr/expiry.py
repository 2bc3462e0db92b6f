"""Carrying out an expiry plan: the store records of expired facts, then
their catalog rows, then objects nothing references any more.

Records go before rows: after a crash in between, the rows are still there
and the next run removes them, while a record left behind would bring an
expired fact back on `pitr catalog rebuild`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete

from catalog.db.models import (
    Backup,
    BackupObject,
    ReplBatch,
    ReplEpoch,
    ReplEpochObject,
    SqliteBatch,
    SqliteGap,
    StreamBatch,
    StreamGap,
    WalFile,
)
from catalog.gc import (
    OBJECT_FACTS,
    REFERENCING_TYPES,
    Garbage,
    find_garbage,
    referenced_oids,
    remove_garbage,
)
from catalog.repository import Repository
from recovery.retention import SourceExpiry

_BATCH = 500


# The catalog table of each expirable record type.
_MODELS: dict[
    str, type[WalFile | StreamBatch | StreamGap | SqliteBatch | SqliteGap | ReplBatch | ReplEpoch]
] = {
    **OBJECT_FACTS,
    "stream_gap": StreamGap,
    "sqlite_gap": SqliteGap,
    "repl_epoch": ReplEpoch,
}


def apply_plan(repo: Repository, plan: SourceExpiry) -> None:
    for key in [*plan.removed_keys, *(f.key for f in plan.facts)]:
        repo.store.delete(key)
    backup_ids = [bid for bid, _ in plan.removed]
    with repo.catalog.session() as s:
        for i in range(0, len(backup_ids), _BATCH):
            part = backup_ids[i : i + _BATCH]
            s.execute(delete(BackupObject).where(BackupObject.backup_id.in_(part)))
            s.execute(delete(Backup).where(Backup.id.in_(part)))
        epoch_ids = [f.id for f in plan.of_type("repl_epoch")]
        for i in range(0, len(epoch_ids), _BATCH):
            epochs = epoch_ids[i : i + _BATCH]
            s.execute(delete(ReplEpochObject).where(ReplEpochObject.epoch_id.in_(epochs)))
        for record_type, model in _MODELS.items():
            ids = [f.id for f in plan.of_type(record_type)]
            for i in range(0, len(ids), _BATCH):
                s.execute(delete(model).where(model.id.in_(ids[i : i + _BATCH])))


def garbage(
    repo: Repository, plans: list[SourceExpiry], now: datetime, grace: timedelta
) -> Garbage:
    """Objects that are (or, once the plans are applied, will be) unreferenced."""
    return find_garbage(
        repo,
        now,
        grace,
        skip_backups={bid for p in plans for bid, _ in p.removed},
        skip_facts={t: {f.id for p in plans for f in p.of_type(t)} for t in REFERENCING_TYPES},
    )


def sweep(repo: Repository, found: Garbage) -> list[str]:
    """Remove the garbage; return removed objects that a row committed
    meanwhile references (a writer reused them: that writer's data is
    damaged and must be written again)."""
    remove_garbage(repo, found)
    removed = {info.key.rsplit("/", 1)[-1] for info in found.objects}
    with repo.catalog.session() as s:
        return sorted(removed & referenced_oids(s))
