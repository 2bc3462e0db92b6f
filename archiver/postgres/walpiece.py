"""Streamed pieces: the segment pg_receivewal is still writing, stored as it grows.

A piece is the whole <segment>.partial file as it was read: full-size, its
tail past what has arrived still zeros, which is the form PostgreSQL
replays it in. It is archived as a WAL file of kind "stream" named
<segment>.stream.<valid bytes, 8 hex digits>, so that every piece is its
own immutable fact; the catalog, expiry and rebuild treat it like any
archived file. Once a newer piece (or the completed segment) is durable,
older pieces of the segment are removed: they hold nothing more.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, select

from archiver.errors import BadInput
from archiver.postgres.walfile import StoredWal, check_header, file_identity
from archiver.postgres.walpush import commit_row, source_identity
from catalog.db.models import WalFile
from catalog.queries import ensure_source
from catalog.records import WalRecord, wal_key
from catalog.repository import Repository
from catalog.wal import (
    LONG_HEADER,
    MIN_SEG_SIZE,
    XLOG_BLCKSZ,
    parse_wal_name,
    transaction_times,
    written_length,
)

PIECE_KIND = "stream"
SETTLED = 0.05  # seconds: a file last written this long ago holds all of that write


@dataclass(frozen=True)
class Piece:
    segment: str  # the segment's WAL name
    name: str  # the archived file's name
    valid: int  # bytes received (before the zero tail)
    end_time: datetime  # every commit before it is in this piece or an earlier segment
    identity: tuple[int, int, int, int]  # of the file that was read


def piece_name(segment: str, valid: int) -> str:
    return f"{segment}.{PIECE_KIND}.{valid:08X}"


def piece_prefix(segment: str) -> str:
    return f"{segment}.{PIECE_KIND}."


def store_piece(repo: Repository, source: str, path: Path) -> Piece | None:
    """Archive the current content of a .partial file; None when it holds
    nothing yet that a restore could use."""
    wal = parse_wal_name(path.name, MIN_SEG_SIZE)
    if wal is None or wal.kind != "partial":
        raise BadInput(f"stream {path}: not a .partial WAL file")
    with open(path, "rb") as f:
        before = os.fstat(f.fileno())
        data = f.read()
        after = os.fstat(f.fileno())
    if len(data) < LONG_HEADER or not any(data[:LONG_HEADER]):
        return None  # preallocated, nothing written yet
    named, header = check_header(wal, data[:LONG_HEADER], len(data), path)
    valid = written_length(data)
    end_time = _end_time(data, valid, before, after)
    if end_time is None:
        return None
    segment = named.name[: -len(".partial")]
    name = piece_name(segment, valid)
    chunk = repo.put_chunk(data)
    stored = StoredWal(path, named, chunk, before.st_mtime, file_identity(before), header)
    identity = source_identity(repo, source, stored)
    with repo.catalog.session() as s:
        src = ensure_source(s, source, "postgres")
        known = s.scalars(
            select(WalFile.id).where(WalFile.source_id == src.id, WalFile.name == name)
        ).first()
    piece = Piece(segment, name, valid, end_time, file_identity(before))
    if known is not None:
        return piece
    record = WalRecord(
        source,
        name,
        PIECE_KIND,
        named.timeline,
        named.segno,
        chunk.oid,
        chunk.size,
        end_time=end_time,
        archived_at=datetime.now(UTC),
    )
    if repo.put_fact(record) is None:
        commit_row(repo, record, chunk, identity)
    return piece


def _end_time(
    data: bytes, valid: int, before: os.stat_result, after: os.stat_result
) -> datetime | None:
    """The newest instant the piece is known to hold. A file that did not
    change while it was read, and whose last write had settled, holds every
    commit up to its mtime; otherwise trust only the commits it contains."""
    settled = time.time() - before.st_mtime > SETTLED
    if settled and file_identity(before) == file_identity(after):
        return datetime.fromtimestamp(before.st_mtime, UTC)
    page_end = -(-valid // XLOG_BLCKSZ) * XLOG_BLCKSZ  # the zero pages hold no record
    times = transaction_times(memoryview(data)[:page_end])
    return max(times) if times else None


def drop_pieces(repo: Repository, source: str, segment: str, keep: str | None = None) -> int:
    """Remove the pieces of segment other than keep: their rows first, then
    their records (so that check never sees a row whose record is gone; a
    record left by a crash in between only brings back a piece that a newer
    one supersedes). Their objects are left to expire's garbage collection."""
    with repo.catalog.session() as s:
        src_id = ensure_source(s, source, "postgres").id
        names = [
            n
            for n in s.scalars(
                select(WalFile.name).where(
                    WalFile.source_id == src_id,
                    WalFile.kind == PIECE_KIND,
                    WalFile.name.startswith(piece_prefix(segment), autoescape=True),
                )
            )
            if n != keep
        ]
    if not names:
        return 0
    with repo.catalog.session() as s:
        s.execute(delete(WalFile).where(WalFile.source_id == src_id, WalFile.name.in_(names)))
    for name in names:
        repo.store.delete(wal_key(source, name))
    return len(names)
