"""What SQLite capture writes: frame batches, gaps and a heartbeat per
database. Each fact goes to the store as a record first and to the catalog
second (a catalog rebuild reads the records), and a row is only added when
absent, so writing a fact twice after a crash changes nothing.

  records/<source>/sqlite/<db>/<generation>/<first frame>   a batch of frames
  records/<source>/sqlite-gaps/<db>/<generation>            commits possibly missed
  records/<source>/bases/<id>                               a base copy
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.db.models import Backup, RepoMeta, SqliteBatch, StoredObject
from catalog.details import SqliteBaseDetails
from catalog.queries import ensure_source, insert_missing
from catalog.records import SqliteBatchRecord, SqliteGapRecord, sqlite_batch_key
from catalog.repository import Repository
from catalog.sqliteformat import Batch, Cycle, caught_up_key, encode_batch

KIND = "sqlite"


@dataclass(frozen=True)
class Position:
    """How far a database is archived: every frame up to `frame` of `cycle`
    (frame `gpos` of the generation), the newest commit seen at `seen`."""

    generation: str
    gpos: int
    cycle: Cycle | None  # None: no WAL frames were in use
    frame: int
    cksum: bytes  # the stored checksum of that frame (b"" at frame 0)
    seen: datetime

    def gframe(self, frame: int) -> int:
        """The generation's number for a frame of the same cycle."""
        return self.gpos + frame - self.frame


@dataclass(frozen=True)
class CleanStop:
    """A capture that stopped with every frame up to gpos shipped and copied
    into the database file, whose (device, inode, size, mtime in ns) were
    `file` then. Finding the file so again proves nobody changed it since."""

    gpos: int
    file: tuple[int, ...]


class SqliteArchive:
    """Capture's writes for one source."""

    def __init__(self, repo: Repository, source: str) -> None:
        self.repo = repo
        self.source = source
        self._source_id: int | None = None

    def _src(self, session: Session) -> int:
        if self._source_id is None:
            self._source_id = ensure_source(session, self.source, KIND).id
        return self._source_id

    def ship(self, db: str, pos: Position, cycle: Cycle, batch: Batch, cksum: bytes) -> Position:
        """Archive frames pos.frame+1.. of cycle as one batch; the new position."""
        chunk = self.repo.put_chunk(encode_batch(batch))
        last = pos.frame + len(batch.frames)
        seen = [datetime.fromtimestamp(us / 1e6, UTC) for _, us in batch.commits]
        now = datetime.now(UTC)
        fact = SqliteBatchRecord(
            self.source,
            db,
            pos.generation,
            gfirst=pos.gpos + 1,
            glast=pos.gframe(last),
            cycle=cycle.label(),
            first_frame=pos.frame + 1,
            last_frame=last,
            last_cksum=cksum.hex(),
            first_seen=seen[0] if seen else now,
            last_seen=seen[-1] if seen else now,
            commits=len(batch.commits),
            oid=chunk.oid,
            size=chunk.size,
            archived_at=now,
        )
        self.repo.put_fact(fact)
        with self.repo.catalog.session() as s:
            # Core inserts that skip what an earlier run already added: the
            # catalog costs little per batch.
            row = fact.row(self._src(s))
            values = {c.key: getattr(row, c.key) for c in SqliteBatch.__table__.columns}
            values.pop("id")
            insert_missing(s, SqliteBatch, [values], ["source_id", "db", "generation", "gfirst"])
            stored = {"oid": chunk.oid, "size": chunk.size, "stored_size": chunk.stored_size}
            insert_missing(s, StoredObject, [stored], ["oid"])
        return Position(pos.generation, fact.glast, cycle, last, cksum, fact.last_seen)

    def gap(self, db: str, generation: str, since: datetime, until: datetime, why: str) -> None:
        fact = SqliteGapRecord(self.source, db, generation, since, until, why, datetime.now(UTC))
        if self.repo.put_fact(fact) is not None:
            return  # recorded by an earlier run
        with self.repo.catalog.session() as s:
            s.add(fact.row(self._src(s)))

    def heartbeat(
        self, db: str, generation: str, at: datetime, stopped: CleanStop | None = None
    ) -> None:
        """Every commit of the generation up to `at` is archived; stopped: the
        capture ended cleanly, leaving the database file as described."""
        beat: dict[str, object] = {"generation": generation, "at": at.isoformat()}
        if stopped is not None:
            beat["stopped"] = {"gpos": stopped.gpos, "file": list(stopped.file)}
        with self.repo.catalog.session() as s:
            self._src(s)
            s.merge(RepoMeta(key=caught_up_key(self.source, db), value=json.dumps(beat)))

    def _beat(self, db: str) -> dict[str, Any] | None:
        """The database's newest heartbeat, as written by heartbeat()."""
        with self.repo.catalog.session() as s:
            row = s.get(RepoMeta, caught_up_key(self.source, db))
            return None if row is None else dict(json.loads(row.value))

    def caught_up(self, db: str, generation: str) -> datetime | None:
        """The newest heartbeat of the generation."""
        beat = self._beat(db)
        if not beat or beat["generation"] != generation:
            return None
        return datetime.fromisoformat(beat["at"])

    def clean_stop(self, db: str) -> tuple[str, CleanStop] | None:
        """The generation and clean stop the newest heartbeat records, if any."""
        beat = self._beat(db)
        if not beat or "stopped" not in beat:
            return None
        stop = beat["stopped"]
        return beat["generation"], CleanStop(int(stop["gpos"]), tuple(stop["file"]))

    def resume_point(self, db: str) -> Position | None:
        """Where the newest generation of the database ends, as archived."""
        with self.repo.catalog.session() as s:
            src = self._src(s)
            batch = s.scalars(
                select(SqliteBatch)
                .where(SqliteBatch.source_id == src, SqliteBatch.db == db)
                .order_by(SqliteBatch.archived_at.desc(), SqliteBatch.glast.desc())
                .limit(1)
            ).first()
            bases = [
                (b.started_at, d)
                for b in s.scalars(
                    select(Backup).where(Backup.source_id == src, Backup.kind == "sqlite_base")
                )
                for d in [SqliteBaseDetails.from_json(b.details)]
                if d.db == db and d.generation
            ]
        base = max(bases, key=lambda b: b[0], default=None)
        if batch is not None and (base is None or batch.generation >= base[1].generation):
            key = sqlite_batch_key(self.source, db, batch.generation, batch.gfirst)
            record = SqliteBatchRecord.from_json(self.repo.get_record(key))
            return Position(
                record.generation,
                record.glast,
                Cycle.from_label(record.cycle),
                record.last_frame,
                bytes.fromhex(record.last_cksum),
                record.last_seen,
            )
        if base is None:
            return None
        started_at, d = base
        cycle = Cycle.from_label(d.cycle) if d.cycle else None
        return Position(d.generation, 0, cycle, d.frame, bytes.fromhex(d.cksum), started_at)
