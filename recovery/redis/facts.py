"""What the catalog knows of a Redis source: snapshots, and how far the
stream archive reaches."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.db.models import Backup, StreamBatch
from catalog.details import SnapshotDetails
from recovery.redis.coverage import BatchRef, SnapshotRef


@dataclass
class RedisFacts:
    snapshots: list[SnapshotRef]
    covered: datetime | None  # every stream entry up to here is archived


def snapshot_ref(b: Backup) -> SnapshotRef:
    """A snapshot's catalog row, as coverage and expiry see it."""
    return SnapshotRef(b.id, b.started_at, dict(SnapshotDetails.from_json(b.details).streams))


def load_redis(session: Session, source_id: int, name: str) -> RedisFacts:
    rows = session.scalars(
        select(Backup).where(Backup.source_id == source_id, Backup.kind == "redis_snapshot")
    )
    snaps = [snapshot_ref(b) for b in rows]
    from recovery.redis.plan import tail_covered

    return RedisFacts(snaps, tail_covered(session, source_id))


def batch_refs(session: Session, source_id: int, oids: Collection[str]) -> list[BatchRef]:
    """Batches whose object is among oids."""
    wanted = set(oids)
    rows = session.scalars(select(StreamBatch).where(StreamBatch.source_id == source_id))
    return [batch_ref(b) for b in rows if b.oid in wanted]


def batch_ref(b: StreamBatch) -> BatchRef:
    return BatchRef(
        b.stream, b.first_id, b.last_id, b.first_ms, b.last_ms, b.count, b.oid, b.archived_at
    )
