"""What the planner needs, read from the catalog (and .history files from the store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from catalog.db.models import Backup, Source, WalFile
from catalog.repository import Repository
from catalog.wal import parse_history, parse_lsn
from recovery.errors import PlanError
from recovery.planner import BackupPoint, TimelineInfo


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
        seg_size = src.wal_segment_size or 16 << 20
        backups = [
            BackupPoint(
                b.id,
                b.timeline or 1,
                parse_lsn(b.start_lsn or "0/0"),
                parse_lsn(b.stop_lsn or "0/0"),
                b.finished_at,
            )
            for b in s.scalars(
                select(Backup).where(Backup.source_id == src.id, Backup.kind == "pg_base")
            )
        ]
        segments: dict[tuple[int, int], datetime] = {}
        histories = []
        for w in s.scalars(select(WalFile).where(WalFile.source_id == src.id)):
            if w.kind == "segment" and w.segno is not None:
                segments[(w.timeline, w.segno)] = w.end_time
            elif w.kind == "history":
                histories.append((w.timeline, w.oid, w.end_time))
        source_id = src.id
    timelines = {
        tli: TimelineInfo(tli, tuple(parse_history(repo.get_chunk(oid).decode())), created)
        for tli, oid, created in histories
    }
    return PgState(source_id, seg_size, backups, segments, timelines)
