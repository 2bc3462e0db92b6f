"""What the catalog knows of a PostgreSQL source, read into the planners'
value types. Damage is tolerated: an unreadable .history file is reported,
not raised, because check and verify must go on."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import select

from catalog.db.models import Backup, WalFile
from catalog.errors import CatalogError, StorageError
from catalog.queries import SourceRow
from catalog.repository import Repository
from catalog.wal import parse_history, parse_lsn
from recovery.postgres.planner import BackupPoint, TimelineInfo


class WalLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def timeline(self) -> int: ...
    @property
    def segno(self) -> int | None: ...


W = TypeVar("W", bound=WalLike)


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
        """Each segment a restore can read, with the newest instant it holds: a
        completed segment, else the newest streamed piece of it."""
        out: dict[tuple[int, int], datetime] = {}
        for w in newest_segment_files(self.wal).values():
            if w.oid not in exclude_oids and w.segno is not None:
                out[(w.timeline, w.segno)] = w.end_time
        return out


def newest_segment_files(wal: Iterable[W]) -> dict[tuple[int, int], W]:
    """(timeline, segno) -> the file that stands for the segment: the
    completed segment when archived, else its newest streamed piece (piece
    names end in the bytes received, fixed-width hex: the greatest is newest)."""
    out: dict[tuple[int, int], W] = {}
    for w in wal:
        if w.segno is None or w.kind not in ("segment", "stream"):
            continue
        have = out.get((w.timeline, w.segno))
        if have is None or (have.kind == "stream" and (w.kind == "segment" or w.name > have.name)):
            out[(w.timeline, w.segno)] = w
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
