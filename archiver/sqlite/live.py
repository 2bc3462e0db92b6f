"""An application's SQLite database as the archiver sees it: two connections
of its own (one holds a read transaction, one takes the write lock for a
moment at each checkpoint) and raw reads of the database, -wal and -shm
files (through catalog.sqlitefiles.read_at, which never closes them).

The held read transaction is what makes capture safe: while any reader has a
snapshot that uses the WAL, SQLite neither restarts nor truncates the WAL,
so frames cannot be overwritten before they are copied. Nothing is ever
written through these connections.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from archiver.errors import BadInput
from catalog.sqlitefiles import read_at
from catalog.sqliteformat import (
    FRAME_HEADER,
    WAL_HEADER,
    Cycle,
    DbHeader,
    NotSqlite,
    WalIndex,
    frame_offset,
    parse_db_header,
    parse_wal_header,
    parse_wal_index,
)

# How long our own lock requests wait: short, so that we give way to the application.
LOCK_WAIT_MS = 50
WAL_PRAGMA = "PRAGMA journal_mode=WAL"


def read_header(path: Path) -> DbHeader:
    """The database header; BadInput (exit 2) for a missing or foreign file."""
    if not path.exists():
        raise BadInput(f"{path}: does not exist")
    if path.is_dir():
        raise BadInput(f"{path}: is a directory, not a SQLite database")
    try:
        head = read_at(path, 100, 0)
    except OSError as e:
        raise BadInput(f"{path}: cannot be read: {e.strerror or e}") from None
    try:
        return parse_db_header(head)
    except NotSqlite as e:
        raise BadInput(f"{path}: {e}") from None


def require_wal(path: Path, header: DbHeader) -> None:
    if not header.wal_mode:
        raise BadInput(
            f"{path}: is in rollback-journal mode; continuous archiving needs WAL mode: "
            f"run {WAL_PRAGMA} on it once (pitr backup works without it)"
        )


def connect(path: Path) -> sqlite3.Connection:
    # Opened read-write (a read-only connection cannot run checkpoints) but
    # never used to write.
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={LOCK_WAIT_MS}")
    return conn


class LiveDatabase:
    def __init__(self, path: Path, *, need_wal: bool = True) -> None:
        self.path = path
        self.header = read_header(path)
        if need_wal:
            require_wal(path, self.header)
        stat = path.stat()
        self.identity = (stat.st_dev, stat.st_ino)
        self.reader = connect(path)
        self.writer = connect(path)
        self.held = False

    @property
    def wal_path(self) -> Path:
        return Path(f"{self.path}-wal")

    @property
    def page_size(self) -> int:
        return self.header.page_size

    def hold(self) -> None:
        """Begin the read transaction that pins the WAL."""
        self.reader.execute("BEGIN")
        self.reader.execute("SELECT count(*) FROM sqlite_master").fetchall()
        self.held = True

    def release(self) -> None:
        if self.held:
            self.reader.execute("COMMIT")
            self.held = False

    def index(self) -> WalIndex | None:
        """The committed WAL state; None when the database has no WAL in use."""
        for _ in range(100):
            head = read_at(f"{self.path}-shm", 96, 0)
            if not head:
                return None
            found = parse_wal_index(head)
            if found is not None:
                return found
            time.sleep(0.001)  # a writer is between the header's two copies
        return None

    def wal_cycle(self) -> Cycle | None:
        head = self.read_wal(0, WAL_HEADER)
        parsed = parse_wal_header(head)
        return None if parsed is None else parsed[1]

    def read_wal(self, offset: int, size: int) -> bytes:
        return read_at(self.wal_path, size, offset)

    def read_frames(self, first: int, last: int) -> bytes:
        """Frames first..last (1-based, inclusive) as stored, headers included."""
        start = frame_offset(first, self.page_size)
        size = (last - first + 1) * (FRAME_HEADER + self.page_size)
        raw = self.read_wal(start, size)
        if len(raw) != size:
            raise OSError(f"{self.wal_path}: ends before frame {last}")
        return raw

    def read_pages(self, first: int, count: int) -> bytes:
        """Pages first.. (1-based) of the database file, short at its end."""
        return read_at(self.path, count * self.page_size, (first - 1) * self.page_size)

    def changed(self) -> str | None:
        """Why the path no longer names the file these connections opened, if it does not."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return "the database file was deleted"
        if (stat.st_dev, stat.st_ino) != self.identity:
            return "the database file was replaced"
        return None

    def checkpoint(self) -> tuple[int, int, int]:
        """A passive checkpoint from our second connection: (busy, frames, done)."""
        row = self.writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def close(self) -> None:
        for conn in (self.reader, self.writer):
            with contextlib.suppress(sqlite3.Error):
                conn.close()
