"""What the stream tailer writes: batches, gaps and its heartbeat.

Each fact goes to the store as a record first and to the catalog second, so
the catalog can be rebuilt from the store; rows are only added when absent,
so writing the same fact twice (after a crash) changes nothing.

  records/<source>/streams/<hex stream name>/<first id>   a batch of entries
  records/<source>/gaps/<hex stream name>/<from id>        entries known lost
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
from catalog.repository import Chunk, Repository

WRITERS = 4  # batch objects written at once
GROUP = 16  # batches whose rows go in one catalog transaction


class StreamArchive:
    """The tailer's writes for one source."""

    def __init__(self, repo: Repository, source: str) -> None:
        self.repo = repo
        self.source = source
        self._source_id: int | None = None
        self._writers: ThreadPoolExecutor | None = None

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
        self,
        name: bytes,
        entries: Sequence[Entry],
        added_at_last: int | None,
        batch_count: int | None = None,
    ) -> tuple[list[BatchRecord], list[Entry]]:
        """Archive entries, in order, as batches of batch_count (one batch
        when None); added_at_last is the stream's entries-added counter as of
        the last entry, or None. Returns the batches' records and the entries
        they do not hold: when an earlier run stored a batch under the same
        first ID with other bounds, that batch stands, and what comes after
        it is returned to be shipped again."""
        size = batch_count or len(entries)
        cuts = [entries[i : i + size] for i in range(0, len(entries), size)]
        behind = len(entries)
        batches = []
        for batch in cuts:
            behind -= len(batch)
            batches.append((batch, None if added_at_last is None else added_at_last - behind))
        facts: list[BatchRecord] = []
        start = 0
        while start < len(batches):
            # A record already there (a crash before its row) comes first:
            # it is met alone, before objects are written for what follows.
            first = id_text(batches[start][0][0][0])
            key = batch_key(self.source, name, first)
            stored = len(batches) - start > 1 and self.repo.store.stat(key) is not None
            group = batches[start : start + (1 if stored else GROUP)]
            done, adopted = self._ship_group(name, group)
            facts += done
            if adopted:
                end = parse_id(done[-1].last_id)
                rest = [e for b, _ in batches[start + len(done) - 1 :] for e in b]
                return facts, [e for e in rest if parse_id(e[0]) > end]
            start += len(group)
        return facts, []

    def _ship_group(
        self, name: bytes, batches: Sequence[tuple[Sequence[Entry], int | None]]
    ) -> tuple[list[BatchRecord], bool]:
        """Archive consecutive batches of one stream, each with the stream's
        entries-added counter as of its last entry. Their objects are sealed
        and written side by side (compressing, hashing and fsync leave the
        GIL); their records one after another, in order, each once its
        object is durable, so that no record exists without the records of
        the batches before it (the position to resume from is the newest
        batch); their rows go in one transaction at the end.

        Returns the records, and True when the last one is a record an
        earlier run stored under the same first ID with other bounds: it
        stands, and the batches after it are not stored."""
        pool = self._pool()
        pending = [pool.submit(self._put_object, name, e) for e, _ in batches]
        facts: list[BatchRecord] = []
        chunks: list[Chunk] = []
        adopted = False
        try:
            for (entries, added), job in zip(batches, pending, strict=True):
                chunk = job.result()
                chunks.append(chunk)
                fact, adopted = self._put_record(name, entries, added, chunk)
                facts.append(fact)
                if adopted:
                    break
        finally:
            for job in pending:
                job.cancel()
        with self.repo.catalog.session() as session:
            src_id = self._src(session)
            there = set(
                session.scalars(
                    select(StreamBatch.first_id).where(
                        StreamBatch.source_id == src_id,
                        StreamBatch.stream == facts[0].stream,
                        StreamBatch.first_id.in_([f.first_id for f in facts]),
                    )
                )
            )
            session.add_all(f.row(src_id) for f in facts if f.first_id not in there)
            record_objects(session, chunks)
        return facts, adopted

    def _pool(self) -> ThreadPoolExecutor:
        if self._writers is None:
            self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="tail-put")
        return self._writers

    def close(self) -> None:
        if self._writers is not None:
            self._writers.shutdown(wait=True, cancel_futures=True)
            self._writers = None

    def _put_object(self, name: bytes, entries: Sequence[Entry]) -> Chunk:
        return self.repo.put_chunk(encode_batch(name, entries))

    def _put_record(
        self, name: bytes, entries: Sequence[Entry], added_at_last: int | None, chunk: Chunk
    ) -> tuple[BatchRecord, bool]:
        """The batch's record, and True when one stored before with other
        bounds stands instead."""
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
        if existing is None:
            return fact, False
        stored = BatchRecord.from_json(existing)
        return stored, stored.last_id != last

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
