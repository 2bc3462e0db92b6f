"""What the planner needs, read from the catalog (and .history files from the store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from catalog.errors import IntegrityError
from catalog.queries import source_row
from catalog.repository import Repository
from recovery.errors import PlanError
from recovery.postgres.facts import load_source
from recovery.postgres.planner import BackupPoint, TimelineInfo


@dataclass
class PgState:
    source_id: int
    seg_size: int
    backups: list[BackupPoint]
    segments: dict[tuple[int, int], datetime]
    timelines: dict[int, TimelineInfo]


def load_pg_state(repo: Repository, source: str) -> PgState:
    with repo.catalog.session() as s:
        src = source_row(s, source)
    if src is None or src.kind != "postgres":
        raise PlanError(f"restore {source}: nothing archived for this source yet")
    facts = load_source(repo, src)
    for _oid, why in facts.unreadable.values():
        # A timeline's history decides which WAL recovery reads: never guess it.
        raise IntegrityError(f"restore {source}: {why}")
    return PgState(src.id, facts.seg_size, facts.backups, facts.segments(), facts.timelines)
