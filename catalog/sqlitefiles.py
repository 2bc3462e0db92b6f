"""A SQLite database's files on disk: reading them beside SQLite, who has
them open, and moving them aside. Restores in place only when no process
has the database open and set the old files aside, never delete them;
capture removes a WAL that was left behind by a database file replaced
under it.

SQLite's locks are POSIX record locks, which belong to the process: closing
*any* descriptor of a file drops every lock the process holds on it, the
read transaction that pins the WAL included. So a process that has SQLite
connections must never close a descriptor of the database, its -wal or its
-shm; read_at() keeps one descriptor per file open for the process's life.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
from datetime import UTC, datetime
from pathlib import Path

COMPANIONS = ("", "-wal", "-shm", "-journal")
# Every connection holds a shared lock on this byte of the -shm file for as
# long as it has the database open in WAL mode (SQLite's "DMS" slot).
SHM_DMS_BYTE = 128 + 8


_open: dict[str, tuple[int, tuple[int, int]]] = {}  # path -> (fd, (dev, inode))
_retired: list[int] = []  # descriptors of files since replaced: kept open, see above
_guard = threading.Lock()


def _descriptor(path: str) -> int | None:
    """This process's descriptor of the file now at path; None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    with _guard:
        held = _open.get(path)
        if held is not None and held[1] == (st.st_dev, st.st_ino):
            return held[0]
        fd = os.open(path, os.O_RDONLY)
        fst = os.fstat(fd)
        if held is not None:
            _retired.append(held[0])
        _open[path] = (fd, (fst.st_dev, fst.st_ino))
        return fd


def read_at(path: Path | str, size: int, offset: int) -> bytes:
    """Up to size bytes of the file at offset; b"" when there is no such file."""
    fd = _descriptor(str(path))
    return b"" if fd is None else os.pread(fd, size, offset)


def opened_by(path: Path) -> list[str]:
    """Who has the database open: "pid N" for processes found in /proc, or a
    note when only the -shm lock shows it."""
    names = {os.path.realpath(f"{path}{s}") for s in COMPANIONS}
    found: list[str] = []
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in names:
                    found.append(f"pid {pid}")
                    break
            except OSError:
                continue
    if not found and _shm_locked(Path(f"{path}-shm")):
        found.append("a process this user cannot see")
    return found


def _shm_locked(shm: Path) -> bool:
    fd = _descriptor(str(shm))
    if fd is None:
        return False
    query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, SHM_DMS_BYTE, 1, 0)
    try:
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    except OSError:
        return False
    return bool(struct.unpack("hhqqi4x", answer)[0] != fcntl.F_UNLCK)


def set_aside(path: Path) -> list[Path]:
    """Rename the database and its companions out of the way; the new names."""
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    moved: list[Path] = []
    for suffix in COMPANIONS:
        old = Path(f"{path}{suffix}")
        if old.exists():
            new = Path(f"{path}.pitr-replaced-{stamp}{suffix}")
            os.rename(old, new)
            moved.append(new)
    return moved


def remove_stale_wal(path: Path, salts: bytes) -> bool:
    """Remove the -wal (and -shm) at path when they are the WAL of a database
    file that was renamed over: its header still carries the salts the old
    file's WAL had, and no process has the files open. SQLite would apply
    those frames to the new file on its next open. True when removed."""
    head = read_at(f"{path}-wal", 24, 0)
    if len(head) < 24 or head[16:24] != salts or opened_by(path):
        return False
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return True
