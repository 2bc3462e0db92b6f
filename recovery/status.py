"""Per-source status for the reports: what is archived, the recoverable
window with its gaps, and how recent the newest archived fact is.

The loaders here read the catalog (and .history files from the store) into
the planners' value types, tolerating damage: an unreadable .history file
is reported, not raised, because check and verify must go on.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import reports
from catalog.db.models import Backup, Source, StreamBatch, WalFile
from catalog.errors import CatalogError, StorageError
from catalog.redisformat import from_ms, parse_id
from catalog.repository import Repository
from catalog.wal import parse_history, parse_lsn
from recovery.coverage import (
    BatchRef,
    Coverage,
    Piece,
    SnapshotRef,
    pg_coverage,
    redis_coverage,
)
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


@dataclass
class RedisFacts:
    snapshots: list[SnapshotRef]
    covered: datetime | None  # every stream entry up to here is archived


def load_redis(session: Session, source_id: int, name: str) -> RedisFacts:
    rows = session.scalars(
        select(Backup).where(Backup.source_id == source_id, Backup.kind == "redis_snapshot")
    )
    snaps = [
        SnapshotRef(b.id, b.started_at, dict((b.details or {}).get("streams", {}))) for b in rows
    ]
    from recovery.redis.plan import tail_covered

    return RedisFacts(snaps, tail_covered(session, source_id))


def batch_refs(session: Session, source_id: int, oids: Collection[str]) -> list[BatchRef]:
    """Batches whose object is among oids."""
    wanted = set(oids)
    rows = session.execute(
        select(
            StreamBatch.stream,
            StreamBatch.first_id,
            StreamBatch.last_id,
            StreamBatch.first_ms,
            StreamBatch.oid,
        ).where(StreamBatch.source_id == source_id)
    )
    return [BatchRef(st, f, la, fm) for st, f, la, fm, oid in rows if oid in wanted]


@dataclass
class SourceStatus:
    name: str
    kind: str
    configured: bool
    identity: dict[str, Any] = field(default_factory=dict)
    backups: list[reports.BackupFact] = field(default_factory=list)
    coverage: Coverage = field(default_factory=Coverage)
    stream_gaps: list[reports.GapFact] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    last_archived_at: datetime | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def last_backup_at(self) -> datetime | None:
        return max((b.finished_at for b in self.backups), default=None)

    @property
    def gaps(self) -> list[Piece]:
        """Holes in the window and stream entries known lost, oldest first."""
        out = list(self.coverage.gaps)
        for g in self.stream_gaps:
            out.append(
                Piece(
                    from_ms(parse_id(g.from_id)[0]),
                    from_ms(parse_id(g.to_id)[0]),
                    False,
                    f"stream {g.stream}: {g.detail}",
                )
            )
        return sorted(out, key=lambda p: p.start)


def source_status(repo: Repository, name: str, kind: str, configured: bool) -> SourceStatus:
    """Everything the reports say about one source (kind: the configured one,
    used when nothing is archived yet)."""
    with repo.catalog.session() as s:
        src = s.scalars(select(Source).where(Source.name == name)).one_or_none()
        if src is None:
            return SourceStatus(name, kind, configured, notes=["nothing archived yet"])
        status = SourceStatus(name, src.kind, configured)
        status.backups = reports.backups(s, src.id)
        if src.kind == "postgres":
            status.identity = {
                "system_identifier": src.system_identifier,
                "pg_version": src.pg_version,
                "wal_segment_size": src.wal_segment_size,
            }
            status.totals = reports.wal_totals(s, src.id)
            status.last_archived_at = status.totals.pop("last_archived_at")
            source_id, seg_size = src.id, src.wal_segment_size
        else:
            status.totals = reports.stream_totals(s, src.id)
            status.stream_gaps = reports.stream_gaps(s, src.id)
            redis = load_redis(s, src.id, name)
            status.coverage = redis_coverage(redis.snapshots, redis.covered)
            # Snapshots and the tailer's heartbeat count as archiving too.
            candidates = [
                status.totals.pop("last_archived_at"),
                redis.covered,
                status.last_backup_at,
            ]
            status.last_archived_at = max((c for c in candidates if c), default=None)
    if status.kind == "postgres":
        facts = load_pg(repo, source_id, seg_size)
        status.notes += [why for _, why in facts.unreadable.values()]
        status.coverage = pg_coverage(
            facts.backups, facts.segments(), facts.timelines, facts.seg_size
        )
    if not status.backups:
        status.notes.append("no backup yet: nothing can be restored")
    elif status.coverage.recoverable_from is None and status.kind == "postgres":
        status.notes.append(
            "no WAL archived after a backup ended yet: the window opens with the next "
            "archived segment (see archive_timeout)"
        )
    return status


def known_sources(
    repo: Repository, configured: dict[str, str], only: str | None = None
) -> list[tuple[str, str, bool]]:
    """(name, kind, configured) of every source in the config or the catalog."""
    with repo.catalog.session() as s:
        recorded = {src.name: src.kind for src in reports.sources(s)}
    merged = {**recorded, **configured}
    return [
        (name, merged[name], name in configured)
        for name in sorted(merged)
        if only is None or name == only
    ]


def load_pg_named(repo: Repository, name: str) -> PgFacts | None:
    """load_pg for a source by name; None when the catalog has no such source."""
    with repo.catalog.session() as s:
        src = s.scalars(select(Source).where(Source.name == name)).one_or_none()
        if src is None or src.kind != "postgres":
            return None
        source_id, seg_size = src.id, src.wal_segment_size
    return load_pg(repo, source_id, seg_size)
