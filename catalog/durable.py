"""Durable local files: write a temp file and fsync it before it takes its
name, and fsync the directory once it has one.

Used by the local store (which links the temp file into place, refusing an
existing name) and by restore_command (which renames it over its target).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def synced_temp(tmp: Path, data: bytes | memoryview) -> Iterator[Path]:
    """tmp holding data, flushed to disk, for the block to link or rename
    into place. Whatever happens, no temp file is left behind: after a
    failed write (a full disk), an error in the block, or a link."""
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new name) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> bool:
    """syncfs(2) on the filesystem holding the directory path: all its dirty
    data and metadata durable in one call, however many files changed.
    False where the C library has no syncfs (the caller fsyncs each file)."""
    import ctypes

    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), str(path))
    finally:
        os.close(fd)
    return True
