"""Base copies of a SQLite database: page-identical to the database as of
one committed WAL frame, so that archived frames apply on top of it.

With a read transaction held (LiveDatabase.hold), SQLite's checkpoints copy
into the database file only frames our snapshot could see, and never past
the committed frame read from the WAL index after it began; so the file's
pages, each replaced by its newest WAL frame up to that committed frame,
are exactly the database as of that frame. Nobody is blocked meanwhile.

The copy is cut into page-aligned chunks (1 MiB of pages): an unchanged
range of pages is the same object as in the previous copy, stored once.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

from archiver.backups import Taken, commit_backup, objects_of_latest
from archiver.errors import BackupFailed
from archiver.sqlite.archive import Position
from archiver.sqlite.live import LiveDatabase
from catalog.details import SqliteBaseDetails
from catalog.manifests import SqliteBaseManifest
from catalog.records import BackupRecord
from catalog.repository import Chunk, Repository
from catalog.sqliteformat import FRAME_HEADER, Cycle, WalIndex, parse_frame

CHUNK_BYTES = 1 << 20
ATTEMPTS = 3


def newest_frames(live: LiveDatabase, upto: int) -> dict[int, int]:
    """Page number -> the WAL offset of its newest frame among frames 1..upto."""
    where: dict[int, int] = {}
    step = max(1, CHUNK_BYTES // (FRAME_HEADER + live.page_size))
    for first in range(1, upto + 1, step):
        last = min(upto, first + step - 1)
        raw = live.read_frames(first, last)
        size = FRAME_HEADER + live.page_size
        for i in range(last - first + 1):
            page = int.from_bytes(raw[i * size : i * size + 4], "big")
            where[page] = 32 + (first - 1 + i) * size + FRAME_HEADER
    return where


def _pages(live: LiveDatabase, index: WalIndex | None) -> tuple[int, dict[int, int]]:
    if index is None or index.max_frame == 0:
        size = live.path.stat().st_size // live.page_size
        return (index.pages if index and index.pages else size), {}
    return index.pages, newest_frames(live, index.max_frame)


def _copy(
    repo: Repository, live: LiveDatabase, pages: int, wal: dict[int, int], known: set[str]
) -> list[Chunk]:
    per_chunk = max(1, CHUNK_BYTES // live.page_size)
    chunks: list[Chunk] = []
    for first in range(1, pages + 1, per_chunk):
        count = min(per_chunk, pages - first + 1)
        data = bytearray(live.read_pages(first, count))
        if len(data) < count * live.page_size:
            data.extend(bytes(count * live.page_size - len(data)))
        for page in range(first, first + count):
            offset = wal.get(page)
            if offset is not None:
                at = (page - first) * live.page_size
                data[at : at + live.page_size] = live.read_wal(offset, live.page_size)
        chunks.append(repo.put_chunk(bytes(data), known=known))
    return chunks


def take_base_copy(
    repo: Repository, source: str, db: str, live: LiveDatabase, generation: str = ""
) -> tuple[Taken, Position]:
    """Copy the database as of its newest commit, with live.hold() in effect.
    generation: the capture's, or "" for a copy taken on its own (pitr backup),
    which restores attach to a generation by its WAL position."""
    t0 = time.monotonic()
    known = objects_of_latest(repo, source, "sqlite_base")
    for _ in range(ATTEMPTS):
        index = live.index()
        cycle = live.wal_cycle() if index and index.max_frame else None
        seen = datetime.now(UTC)
        pages, wal = _pages(live, index)
        chunks = _copy(repo, live, pages, wal, known)
        # Only a restart of the WAL could have moved frames under us (see live.py).
        if not wal or live.wal_cycle() == cycle:
            break
    else:
        raise BackupFailed(f"base copy of {live.path}: the WAL kept restarting under the copy")
    frame = index.max_frame if index and cycle else 0
    cksum = _frame_cksum(live, frame, cycle)
    manifest = SqliteBaseManifest(live.page_size, pages, tuple(c.oid for c in chunks))
    record = BackupRecord(
        source,
        f"{seen:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}",
        "sqlite_base",
        seen,
        datetime.now(UTC),
        size_bytes=pages * live.page_size,
        details=SqliteBaseDetails(
            db,
            generation,
            cycle.label() if cycle else "",
            frame,
            cksum.hex(),
            live.page_size,
            pages,
            live.header.wal_mode,
            str(live.path),
        ).to_json(),
    )
    committed = commit_backup(repo, record, manifest, chunks)
    position = Position(generation, 0, cycle, frame, cksum, seen)
    return Taken(committed, time.monotonic() - t0), position


def _frame_cksum(live: LiveDatabase, frame: int, cycle: Cycle | None) -> bytes:
    if not frame or cycle is None:
        return b""
    _, salts, cksum = parse_frame(live.read_frames(frame, frame), live.page_size)
    return cksum if salts == cycle.salts else b""
