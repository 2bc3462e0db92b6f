"""What the stream tailer writes: batches, gaps and its heartbeat.

Each fact goes to the store as a record first and to the catalog second, so
the catalog can be rebuilt from the store; rows are only added when absent,
so writing the same fact twice (after a crash) changes nothing.

  records/<source>/streams/<hex stream name>/<first id>   a batch of entries
  records/<source>/gaps/<hex stream name>/<from id>        entries known lost
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from catalog.db.models import RepoMeta, StreamBatch, StreamGap
from catalog.queries import ensure_source, record_objects
from catalog.records import BatchRecord, GapRecord, batch_key
from catalog.redisformat import (
    Entry,
    StreamId,
    caught_up_key,
    encode_batch,
    id_text,
    parse_id,
    stream_label,
    stream_name,
)
from catalog.repository import Repository


class StreamArchive:
    """The tailer's writes for one source."""

    def __init__(self, repo: Repository, source: str) -> None:
        self.repo = repo
        self.source = source
        self._source_id: int | None = None

    def _src(self, session: Any) -> int:
        if self._source_id is None:
            self._source_id = ensure_source(session, self.source, "redis").id
        return self._source_id

    def positions(self) -> dict[bytes, tuple[StreamId, int | None]]:
        """Each stream's last archived ID (the end of its newest batch) and
        the stream's entries-added counter as of that entry, when known."""
        with self.repo.catalog.session() as session:
            src_id = self._src(session)
            newest = (
                select(StreamBatch.stream, func.max(StreamBatch.archived_at).label("at"))
                .where(StreamBatch.source_id == src_id)
                .group_by(StreamBatch.stream)
                .subquery()
            )
            rows = session.execute(
                select(StreamBatch.stream, StreamBatch.first_id, StreamBatch.last_id)
                .join(
                    newest,
                    (StreamBatch.stream == newest.c.stream)
                    & (StreamBatch.archived_at == newest.c.at),
                )
                .where(StreamBatch.source_id == src_id)
            ).all()
        out: dict[bytes, tuple[StreamId, int | None]] = {}
        for label, first_id, last_id in rows:
            name = stream_name(label)
            pos = parse_id(last_id)
            if name in out and out[name][0] >= pos:
                continue
            fact = self.repo.get_record(batch_key(self.source, name, first_id))
            counter = fact.get("added_at_last")
            out[name] = (pos, counter if isinstance(counter, int) else None)
        return out

    def ship(
        self, name: bytes, entries: Sequence[Entry], added_at_last: int | None
    ) -> tuple[BatchRecord, list[Entry]]:
        """Archive entries as one batch; returns the batch's record and the
        entries it does not hold (when an earlier run stored a batch with the
        same first ID and different bounds, that batch stands)."""
        chunk = self.repo.put_chunk(encode_batch(name, entries))
        first, last = id_text(entries[0][0]), id_text(entries[-1][0])
        fact = BatchRecord(
            self.source,
            stream_label(name),
            name.hex(),
            first,
            last,
            parse_id(first)[0],
            parse_id(last)[0],
            len(entries),
            chunk.oid,
            chunk.size,
            archived_at=datetime.now(UTC),
            added_at_last=added_at_last,
        )
        existing = self.repo.put_fact(fact)
        leftover: list[Entry] = []
        if existing is not None:
            fact = BatchRecord.from_json(existing)
            end = parse_id(fact.last_id)
            leftover = [e for e in entries if parse_id(e[0]) > end]
        with self.repo.catalog.session() as session:
            self._add_row(session, fact, StreamBatch.first_id == fact.first_id)
            record_objects(session, [chunk])
        return fact, leftover

    def gap(self, name: bytes, from_id: str, to_id: str, detail: str) -> bool:
        """Record entries known lost; False when this gap was already recorded."""
        fact = GapRecord(
            self.source,
            stream_label(name),
            name.hex(),
            from_id,
            to_id,
            detail,
            datetime.now(UTC),
        )
        existing = self.repo.put_fact(fact)
        if existing is not None:
            fact = GapRecord.from_json(existing)
        with self.repo.catalog.session() as session:
            self._add_row(session, fact, StreamGap.from_id == fact.from_id)
        return existing is None

    def _add_row(self, session: Any, fact: BatchRecord | GapRecord, same: Any) -> None:
        """The fact's row unless the stream already has it (same: what else matches)."""
        row = fact.row(self._src(session))
        model = type(row)
        there = session.scalars(
            select(model.id).where(
                model.source_id == row.source_id, model.stream == fact.stream, same
            )
        ).first()
        if there is None:
            session.add(row)

    def heartbeat(self, caught_up_ms: int) -> None:
        """Every entry up to this server instant is archived (for RPO and restore)."""
        value = datetime.fromtimestamp(caught_up_ms / 1000, UTC).isoformat()
        with self.repo.catalog.session() as session:
            self._src(session)
            session.merge(RepoMeta(key=caught_up_key(self.source), value=value))
