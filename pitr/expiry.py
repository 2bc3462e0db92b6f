"""Carrying out an expiry plan: the store records of expired facts, then
their catalog rows, then objects nothing references any more.

Records go before rows: after a crash in between, the rows are still there
and the next run removes them, while a record left behind would bring an
expired fact back on `pitr catalog rebuild`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete

from catalog.db.models import Backup, BackupObject, StreamBatch, StreamGap, WalFile
from catalog.gc import Garbage, find_garbage, referenced_oids, remove_garbage
from catalog.repository import Repository
from recovery.retention import SourceExpiry

_BATCH = 500


def record_keys(plan: SourceExpiry) -> list[str]:
    """Store records of the facts a plan removes (key layouts of the archiver)."""
    from archiver.postgres.backup import backup_record_key
    from archiver.postgres.walpush import wal_record_key
    from archiver.redis.archive import batch_record_key, gap_record_key
    from archiver.redis.snapshot import snapshot_record_key
    from catalog.redisformat import stream_name

    keys = [wal_record_key(plan.name, w.name) for w in plan.wal]
    for bid, _ in plan.removed:
        keys.append(
            backup_record_key(plan.name, bid)
            if plan.kind == "postgres"
            else snapshot_record_key(plan.name, bid)
        )
    for f in plan.stream_facts:
        key = batch_record_key if f.kind == "batch" else gap_record_key
        keys.append(key(plan.name, stream_name(f.stream), f.first_id))
    return keys


def apply_plan(repo: Repository, plan: SourceExpiry) -> None:
    for key in record_keys(plan):
        repo.store.delete(key)
    wal_ids = [w.id for w in plan.wal]
    backup_ids = [bid for bid, _ in plan.removed]
    batch_ids = [f.id for f in plan.stream_facts if f.kind == "batch"]
    gap_ids = [f.id for f in plan.stream_facts if f.kind == "gap"]
    with repo.catalog.session() as s:
        for i in range(0, len(backup_ids), _BATCH):
            part = backup_ids[i : i + _BATCH]
            s.execute(delete(BackupObject).where(BackupObject.backup_id.in_(part)))
            s.execute(delete(Backup).where(Backup.id.in_(part)))
        for model, ids in ((WalFile, wal_ids), (StreamBatch, batch_ids), (StreamGap, gap_ids)):
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
        skip_wal={w.id for p in plans for w in p.wal},
        skip_backups={bid for p in plans for bid, _ in p.removed},
        skip_batches={f.id for p in plans for f in p.stream_facts if f.kind == "batch"},
    )


def sweep(repo: Repository, found: Garbage) -> list[str]:
    """Remove the garbage; return removed objects that a row committed
    meanwhile references (a writer reused them: that writer's data is
    damaged and must be written again)."""
    remove_garbage(repo, found)
    removed = {info.key.rsplit("/", 1)[-1] for info in found.objects}
    with repo.catalog.session() as s:
        return sorted(removed & referenced_oids(s))
