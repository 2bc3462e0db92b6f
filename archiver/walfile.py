"""The part of wal-push that needs no catalog: read a WAL file, check its
name and header, and store it as an object.

The daemon runs this while SQLAlchemy is still loading; the catalog side
(archiver.walpush) then decides whether the file is new, matches what was
archived under its name, and belongs to the source's cluster.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from archiver.errors import BadInput, WalIntegrityError
from catalog.repository import Chunk, Repository
from catalog.wal import WalName, parse_wal_name, read_long_header

WAL_BUFFER = (16 << 20) + 1  # one default segment, and a byte to see it end


@dataclass(frozen=True)
class StoredWal:
    path: Path
    wal: WalName
    chunk: Chunk  # the object, durable in the store
    size: int
    mtime: float
    header: tuple[str, int, int] | None  # a segment's system id, version, segment size


def store_wal(repo: Repository, path: str | Path) -> StoredWal:
    path = Path(path)
    wal = parse_wal_name(path.name)
    if wal is None:
        raise BadInput(f"wal-push {path}: {path.name!r} is not a WAL file name")
    try:
        data, mtime = _read_file(path)
    except FileNotFoundError:
        raise BadInput(f"wal-push {path}: no such file") from None
    except OSError as e:
        raise BadInput(f"wal-push {path}: {e.strerror}") from e
    header = _check_header(wal, data, path)
    chunk = repo.put_chunk(data, oid=repo.codec.object_id(data))
    return StoredWal(path, wal, chunk, len(data), mtime, header)


_buffers = threading.local()


def _read_file(path: Path) -> tuple[memoryview, float]:
    """The file's bytes, in a buffer this thread reuses (a fresh 16 MiB
    object per segment costs more in page faults than the read itself),
    and its modification time. Valid until this thread's next read."""
    with open(path, "rb", buffering=0) as f:
        st = os.fstat(f.fileno())
        buf: bytearray | None = getattr(_buffers, "buf", None)
        if buf is None or len(buf) <= st.st_size:
            buf = _buffers.buf = bytearray(max(st.st_size + 1, WAL_BUFFER))
        view = memoryview(buf)
        n = 0
        while n < len(buf) and (got := f.readinto(view[n:])):
            n += got
        if n == len(buf):  # grew while read: not a WAL file PostgreSQL handed over
            raise BadInput(f"wal-push {path}: the file changed size while it was read")
        return view[:n], st.st_mtime


def _check_header(
    wal: WalName, data: bytes | memoryview, path: Path
) -> tuple[str, int, int] | None:
    """Refuse what is not the segment its name says; return the cluster it
    comes from (None for .history and .backup files: they carry no header)."""
    if wal.kind not in ("segment", "partial"):
        return None
    try:
        header = read_long_header(data)
    except ValueError as e:
        raise WalIntegrityError(f"wal-push {path}: not a WAL segment ({e})") from None
    if header.pg_version is None:
        raise WalIntegrityError(
            f"wal-push {path}: unknown WAL page magic {header.magic:#06x} (not PostgreSQL WAL?)"
        )
    if wal.kind == "segment" and len(data) != header.seg_size:
        raise WalIntegrityError(
            f"wal-push {path}: {len(data)} bytes, but its header says segments are "
            f"{header.seg_size} bytes (truncated?)"
        )
    # Names encode segment numbers for the cluster's segment size.
    named = parse_wal_name(wal.name, header.seg_size)
    if named is None or header.pageaddr != (named.segno or 0) * header.seg_size:
        raise WalIntegrityError(
            f"wal-push {path}: its first page is at {header.pageaddr:#x}, "
            f"not where {wal.name} begins (renamed or damaged file)"
        )
    return str(header.system_identifier), header.pg_version, header.seg_size
