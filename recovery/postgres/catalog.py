"""What the planner needs, read from the catalog (and .history files from the store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from catalog.db.models import Source
from catalog.errors import IntegrityError
from catalog.repository import Repository
from recovery.errors import PlanError
from recovery.postgres.planner import BackupPoint, TimelineInfo
from recovery.status import load_pg


@dataclass
class PgState:
    source_id: int
    seg_size: int
    backups: list[BackupPoint]
    segments: dict[tuple[int, int], datetime]
    timelines: dict[int, TimelineInfo]


def load_pg_state(repo: Repository, source: str) -> PgState:
    with repo.catalog.session() as s:
        src = s.scalars(select(Source).where(Source.name == source)).one_or_none()
        if src is None or src.kind != "postgres":
            raise PlanError(f"restore {source}: nothing archived for this source yet")
        source_id, seg_size = src.id, src.wal_segment_size
    facts = load_pg(repo, source_id, seg_size)
    for _oid, why in facts.unreadable.values():
        # A timeline's history decides which WAL recovery reads: never guess it.
        raise IntegrityError(f"restore {source}: {why}")
    return PgState(source_id, facts.seg_size, facts.backups, facts.segments(), facts.timelines)
