"""The SQLite file formats pitr reads, and the batch objects it writes.

A SQLite database in WAL mode appends every committed page to its -wal file
as a frame (a 24-byte header and the page). The -shm file holds the WAL
index, whose header says how many frames are committed (mxFrame) and with
which salts: that header is what tells a committed frame from one a writer
is still writing. All of it is documented at https://sqlite.org/fileformat.html
and https://sqlite.org/walformat.html.

A batch object holds consecutive committed frames of one database and the
instant pitr saw each commit:

    magic "PITRSQLB" | u32 page size | u32 frames | u32 commits
    frames x (u32 page number, u32 database size in pages or 0, page)
    commits x (u32 index of its commit frame in the batch, u64 microseconds)
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

DB_MAGIC = b"SQLite format 3\x00"
WAL_HEADER = 32
FRAME_HEADER = 24
WAL_MAGICS = (0x377F0682, 0x377F0683)
BATCH_MAGIC = b"PITRSQLB"
_INDEX_HEADER = 48  # one copy of the WAL-index header; the -shm holds two


def caught_up_key(source: str, db: str) -> str:
    """RepoMeta key of a database's heartbeat (64 characters at most)."""
    key = f"sqlite_caught_up:{source}/{db}"
    if len(key) <= 64:
        return key
    return "sqlite_caught_up:#" + hashlib.sha256(f"{source}/{db}".encode()).hexdigest()[:40]


class NotSqlite(ValueError):
    """The file is not a SQLite database."""


@dataclass(frozen=True)
class DbHeader:
    page_size: int
    wal_mode: bool  # read and write versions are 2
    pages: int  # the in-header size (valid unless an old writer left it stale)


def parse_db_header(head: bytes) -> DbHeader:
    if len(head) < 100 or head[:16] != DB_MAGIC:
        raise NotSqlite("is not a SQLite database")
    size = struct.unpack(">H", head[16:18])[0]
    page_size = 65536 if size == 1 else size
    if page_size < 512 or page_size & (page_size - 1):
        raise NotSqlite(f"has an invalid page size {page_size}")
    return DbHeader(page_size, head[18] == 2 and head[19] == 2, struct.unpack(">I", head[28:32])[0])


@dataclass(frozen=True)
class Cycle:
    """One use of the WAL file from its start: a writer that restarts the WAL
    after a complete checkpoint writes a new header with new salts."""

    ckpt_seq: int
    salts: bytes  # salt-1 and salt-2 as stored (8 bytes)

    @property
    def salt1(self) -> int:
        return int(struct.unpack(">I", self.salts[:4])[0])

    def follows(self, prior: Cycle) -> bool:
        """This cycle is the one SQLite starts when it restarts prior's WAL:
        salt-1 goes up by one. (The sequence number is each writer's own
        count, so a writer that opened late writes 1 again: not a test.)"""
        return self.salt1 == (prior.salt1 + 1) % (1 << 32)

    def label(self) -> str:
        return f"{self.ckpt_seq}-{self.salts.hex()}"

    @classmethod
    def from_label(cls, label: str) -> Cycle:
        seq, salts = label.split("-", 1)
        return cls(int(seq), bytes.fromhex(salts))


def parse_wal_header(head: bytes) -> tuple[int, Cycle] | None:
    """(page size, cycle) of a WAL file header; None when there is no valid one."""
    if len(head) < WAL_HEADER:
        return None
    magic, version, page_size, seq = struct.unpack(">IIII", head[:16])
    if magic not in WAL_MAGICS or version != 3007000:
        return None
    return page_size, Cycle(seq, bytes(head[16:24]))


@dataclass(frozen=True)
class WalIndex:
    """The committed state of the WAL, from the -shm header."""

    change: int  # incremented by every transaction
    max_frame: int  # frames committed in the current cycle
    pages: int  # database size in pages as of max_frame
    salts: bytes
    frame_cksum: bytes  # checksum of frame max_frame, as its header stores it


def parse_wal_index(head: bytes) -> WalIndex | None:
    """The WAL-index header, or None while it is being written (its two copies
    differ) or not initialised. Fields are in the machine's byte order."""
    if len(head) < 2 * _INDEX_HEADER:
        return None
    first, second = head[:_INDEX_HEADER], head[_INDEX_HEADER : 2 * _INDEX_HEADER]
    if first != second or first[12] != 1:
        return None
    if checksum(first[:40], native=True) != struct.unpack("=II", first[40:48]):
        return None
    change, max_frame, pages = struct.unpack("=I4xII", first[8:24])
    cksum = struct.pack(">II", *struct.unpack("=II", first[24:32]))
    return WalIndex(change, max_frame, pages, bytes(first[32:40]), cksum)


def checksum(
    data: bytes, native: bool = False, big_endian: bool = True, seed: tuple[int, int] = (0, 0)
) -> tuple[int, int]:
    """SQLite's WAL checksum of data (a multiple of 8 bytes)."""
    order = "=" if native else (">" if big_endian else "<")
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    s1, s2 = seed
    for i in range(0, len(words), 2):
        s1 = (s1 + words[i] + s2) & 0xFFFFFFFF
        s2 = (s2 + words[i + 1] + s1) & 0xFFFFFFFF
    return s1, s2


@dataclass(frozen=True)
class Frame:
    page: int
    commit_pages: int  # the database size after this commit; 0 inside a transaction
    data: bytes


def frame_offset(index: int, page_size: int) -> int:
    """Byte offset of frame `index` (1-based) in the WAL file."""
    return WAL_HEADER + (index - 1) * (FRAME_HEADER + page_size)


def parse_frame(raw: bytes, page_size: int) -> tuple[Frame, bytes, bytes]:
    """A frame, its salts and its stored checksum."""
    page, commit = struct.unpack(">II", raw[:8])
    return Frame(page, commit, raw[FRAME_HEADER : FRAME_HEADER + page_size]), raw[8:16], raw[16:24]


# -- batch objects ------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    page_size: int
    frames: list[Frame]
    commits: list[tuple[int, int]]  # (index of the commit frame in frames, seen at, µs)


def encode_batch(batch: Batch) -> bytes:
    parts = [
        BATCH_MAGIC,
        struct.pack(">III", batch.page_size, len(batch.frames), len(batch.commits)),
    ]
    for f in batch.frames:
        parts.append(struct.pack(">II", f.page, f.commit_pages))
        parts.append(f.data)
    parts.extend(struct.pack(">IQ", i, us) for i, us in batch.commits)
    return b"".join(parts)


def decode_batch(data: bytes | memoryview) -> Batch:
    try:
        return _decode_batch(memoryview(data))
    except struct.error as e:
        raise ValueError(f"SQLite frame batch is truncated: {e}") from None


def _decode_batch(view: memoryview) -> Batch:
    if bytes(view[:8]) != BATCH_MAGIC:
        raise ValueError("not a SQLite frame batch")
    page_size, count, commits = struct.unpack(">III", view[8:20])
    pos, frames = 20, []
    for _ in range(count):
        page, commit = struct.unpack(">II", view[pos : pos + 8])
        frames.append(Frame(page, commit, bytes(view[pos + 8 : pos + 8 + page_size])))
        pos += 8 + page_size
    marks = [struct.unpack(">IQ", view[pos + 12 * i : pos + 12 * i + 12]) for i in range(commits)]
    if pos + 12 * commits != len(view):
        raise ValueError("SQLite frame batch has a wrong length")
    return Batch(page_size, frames, [(int(i), int(us)) for i, us in marks])


def batch_commits(batch: Batch) -> Iterator[tuple[int, int, int]]:
    """(start, end, seen µs): the frames [start, end) of each commit in order."""
    start = 0
    for index, seen in batch.commits:
        yield start, index + 1, seen
        start = index + 1
