"""Writing a backup's chunks into a file at their offsets: shared by the
full restore (recovery.postgres.restore) and the delta restore
(recovery.postgres.delta)."""

from __future__ import annotations

import os

from catalog.errors import IntegrityError


def check_chunk(name: str, i: int, size: int, count: int, chunk_size: int | None) -> None:
    """Chunk i of count must hold chunk_size bytes, the last one at most that."""
    if chunk_size and (size > chunk_size or (i < count - 1 and size < chunk_size)):
        raise IntegrityError(
            f"restore {name}: chunk {i} holds {size} bytes, the manifest's chunks are {chunk_size}"
        )


def pwrite_all(fd: int, data: memoryview | bytes, offset: int) -> int:
    """Write all of data at offset (pwrite may write less); the bytes written."""
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], offset + written)
    return written
