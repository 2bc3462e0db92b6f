"""What the catalog knows of a PostgreSQL source, read into the planners'
value types. Damage is tolerated: an unreadable .history file is reported,
not raised, because check and verify must go on."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from catalog.db.models import Backup, WalFile
from catalog.errors import CatalogError, StorageError
from catalog.queries import SourceRow
from catalog.repository import Repository
from catalog.wal import parse_history, parse_lsn
from recovery.postgres.planner import BackupPoint, TimelineInfo


@dataclass(frozen=True)
class WalRef:
    id: int
    name: str
    kind: str
    timeline: int
    segno: int | None
    oid: str
    end_time: datetime
    archived_at: datetime


@dataclass
class PgFacts:
    source_id: int
    seg_size: int
    backups: list[BackupPoint]
    wal: list[WalRef]
    timelines: dict[int, TimelineInfo]
    # timeline -> (oid, why) of a .history file that could not be read
    unreadable: dict[int, tuple[str, str]] = field(default_factory=dict)

    def segments(self, exclude_oids: Collection[str] = ()) -> dict[tuple[int, int], datetime]:
        out: dict[tuple[int, int], datetime] = {}
        for w in self.wal:
            if w.kind == "segment" and w.segno is not None and w.oid not in exclude_oids:
                out[(w.timeline, w.segno)] = w.end_time
        return out


def load_pg(repo: Repository, source_id: int, seg_size: int | None) -> PgFacts:
    with repo.catalog.session() as s:
        backups = [
            BackupPoint(
                b.id,
                b.timeline or 1,
                parse_lsn(b.start_lsn or "0/0"),
                parse_lsn(b.stop_lsn or "0/0"),
                b.finished_at,
            )
            for b in s.scalars(
                select(Backup)
                .where(Backup.source_id == source_id, Backup.kind == "pg_base")
                .order_by(Backup.finished_at, Backup.id)
            )
        ]
        rows = list(s.scalars(select(WalFile).where(WalFile.source_id == source_id)))
    wal = [
        WalRef(w.id, w.name, w.kind, w.timeline, w.segno, w.oid, w.end_time, w.archived_at)
        for w in rows
    ]
    facts = PgFacts(source_id, seg_size or 16 << 20, backups, wal, {})
    for w in rows:
        if w.kind != "history":
            continue
        try:
            history = parse_history(repo.get_chunk(w.oid).decode())
        except StorageError:
            raise
        except (CatalogError, UnicodeDecodeError, ValueError, IndexError) as e:
            facts.unreadable[w.timeline] = (w.oid, f"{w.name} is unreadable: {e}")
            continue
        facts.timelines[w.timeline] = TimelineInfo(w.timeline, tuple(history), w.end_time)
    return facts


def load_source(repo: Repository, src: SourceRow) -> PgFacts:
    return load_pg(repo, src.id, src.wal_segment_size)
