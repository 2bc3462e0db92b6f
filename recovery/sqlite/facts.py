"""What the catalog holds about a SQLite source, per database: base copies,
frame batches, gaps and the capture's heartbeat, read once for the planner
and the reports.

A base copy taken by `pitr backup` has no generation of its own: it belongs
to the generation whose batches hold the WAL frame it was taken at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.db.models import Backup, RepoMeta, SqliteBatch, SqliteGap
from catalog.details import SqliteBaseDetails
from catalog.sqliteformat import caught_up_key


@dataclass(frozen=True)
class BaseRef:
    id: str
    db: str
    generation: str
    gpos: int  # the generation's frame the copy is as of
    cycle: str
    frame: int
    seen: datetime  # the instant the copy is of
    manifest_oid: str
    pages: int
    path: str = ""  # the file it was copied from


@dataclass(frozen=True)
class BatchRef:
    id: int
    generation: str
    gfirst: int
    glast: int
    cycle: str
    first_frame: int
    last_frame: int
    first_seen: datetime
    last_seen: datetime
    commits: int
    oid: str


@dataclass(frozen=True)
class GapRef:
    id: int
    generation: str
    since: datetime
    until: datetime
    detail: str


@dataclass
class DbFacts:
    db: str
    bases: list[BaseRef] = field(default_factory=list)
    batches: list[BatchRef] = field(default_factory=list)  # by generation, then frame
    gaps: list[GapRef] = field(default_factory=list)
    caught_up: dict[str, datetime] = field(default_factory=dict)  # generation -> heartbeat

    def generations(self) -> list[str]:
        return sorted({b.generation for b in self.bases})

    def batches_of(self, generation: str) -> list[BatchRef]:
        return [b for b in self.batches if b.generation == generation]


def load_sqlite(s: Session, source_id: int, source: str) -> dict[str, DbFacts]:
    """Every database of the source by name."""
    dbs: dict[str, DbFacts] = {}

    def of(db: str) -> DbFacts:
        return dbs.setdefault(db, DbFacts(db))

    for r in s.scalars(
        select(SqliteBatch)
        .where(SqliteBatch.source_id == source_id)
        .order_by(SqliteBatch.generation, SqliteBatch.gfirst)
    ):
        of(r.db).batches.append(
            BatchRef(
                r.id, r.generation, r.gfirst, r.glast, r.cycle, r.first_frame, r.last_frame,
                r.first_seen, r.last_seen, r.commits, r.oid,
            )
        )  # fmt: skip
    for g in s.scalars(select(SqliteGap).where(SqliteGap.source_id == source_id)):
        of(g.db).gaps.append(GapRef(g.id, g.generation, g.from_time, g.to_time, g.detail))
    for b in s.scalars(
        select(Backup).where(Backup.source_id == source_id, Backup.kind == "sqlite_base")
    ):
        d = SqliteBaseDetails.from_json(b.details)
        base = BaseRef(
            b.id, d.db, d.generation, 0, d.cycle, d.frame, b.started_at, b.manifest_oid, d.pages,
            d.path,
        )  # fmt: skip
        of(base.db).bases.append(base)
    for facts in dbs.values():
        facts.bases = sorted((_attach(b, facts.batches) for b in facts.bases), key=lambda b: b.seen)
        facts.gaps.sort(key=lambda g: g.since)
        row = s.get(RepoMeta, caught_up_key(source, facts.db))
        if row is not None:
            beat = json.loads(row.value)
            facts.caught_up[beat["generation"]] = datetime.fromisoformat(beat["at"])
    return dbs


def _attach(base: BaseRef, batches: list[BatchRef]) -> BaseRef:
    """A base copy with its generation and frame in it."""
    if base.generation:
        return base
    for b in batches:
        if b.cycle == base.cycle and b.first_frame - 1 <= base.frame <= b.last_frame:
            gpos = b.gfirst - 1 + base.frame - (b.first_frame - 1)
            return replace(base, generation=b.generation, gpos=gpos)
    return replace(base, generation=f"copy-{base.id}")  # on its own: restores to its instant
