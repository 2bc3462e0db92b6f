"""The part of wal-push that needs no catalog: read a WAL file, check its
name and header, and store it as an object.

The daemon's look-ahead threads run this in parallel; the catalog side
(archiver.postgres.walpush, one committer thread in the daemon) then decides
whether the file is new, matches what was archived under its name, and
belongs to the source's cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from io import FileIO
from pathlib import Path

from archiver.errors import BadInput, WalIntegrityError
from catalog.buffers import thread_buffer
from catalog.repository import Chunk, Repository
from catalog.wal import (
    DEFAULT_SEG_SIZE,
    LONG_HEADER,
    MIN_SEG_SIZE,
    WalName,
    parse_wal_name,
    read_long_header,
)

HEADED = ("segment", "partial")  # the files that begin with a long page header
WHOLE_MAX = 64 << 20  # files up to this size are sealed in one piece (16 MiB segments)
BLOCK = 256 << 10  # larger ones in blocks, hashed and compressed while in the CPU cache


Identity = tuple[int, int, int, int]  # device, inode, size, mtime_ns


def file_identity(st: os.stat_result) -> Identity:
    """What tells one file from another, or from itself rewritten."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class StoredWal:
    path: Path
    wal: WalName
    chunk: Chunk  # the object, durable in the store (chunk.size: the file's)
    mtime: float
    identity: Identity  # of the file that was read
    header: tuple[str, int, int] | None  # a segment's system id, version, segment size


def store_wal(repo: Repository, path: str | Path) -> StoredWal:
    """The file's name is parsed here once: a segment's is then read for the
    segment size its header gives, other files' for the default size (the
    committer sizes a .backup file's name for the source's clusters)."""
    path = Path(path)
    wal = parse_wal_name(path.name, MIN_SEG_SIZE)
    if wal is not None and wal.kind not in HEADED:
        # Read for the default size until the committer knows the cluster's
        # (a name past the 256th segment of a log is of a smaller size).
        wal = wal.sized(DEFAULT_SEG_SIZE) or wal
    if wal is None:
        raise BadInput(f"wal-push {path}: {path.name!r} is not a WAL file name")
    try:
        with open(path, "rb", buffering=0) as f:
            st = os.fstat(f.fileno())
            head = os.pread(f.fileno(), LONG_HEADER, 0)
            wal, header = check_header(wal, head, st.st_size, path)
            oid, stored = _seal_file(repo, f, st, path)
    except FileNotFoundError:
        raise BadInput(f"wal-push {path}: no such file") from None
    except OSError as e:
        raise BadInput(f"wal-push {path}: {e.strerror}") from e
    chunk = repo.put_sealed(oid, st.st_size, stored)
    return StoredWal(path, wal, chunk, st.st_mtime, file_identity(st), header)


def _seal_file(repo: Repository, f: FileIO, st: os.stat_result, path: Path) -> tuple[str, bytes]:
    """The file's object name and stored bytes, read into a buffer this
    thread reuses; refused if it is not as `st` says from start to end.

    A segment is sealed whole: one hash and one compression call, each of
    which lets go of the GIL once, where a file fed in pieces hands the GIL
    over hundreds of times (the other sealing thread and the committer wait
    at each hand-over)."""
    size = st.st_size
    if size <= WHOLE_MAX:
        view = thread_buffer("whole", size + 1)  # +1: a file that grew shows
        n = 0
        while n <= size and (got := f.readinto(view[n:])):
            n += got
        _check_unchanged(f, st, n, path)
        return repo.codec.encode(view[:size])
    view = thread_buffer("block", BLOCK)
    sealer = repo.codec.sealer(size)
    n = 0
    while n <= size and (got := f.readinto(view)):
        sealer.update(view[:got])
        n += got
    _check_unchanged(f, st, n, path)
    return sealer.finish()


def _check_unchanged(f: FileIO, st: os.stat_result, n: int, path: Path) -> None:
    after = os.fstat(f.fileno())
    if n != st.st_size or after.st_size != st.st_size or after.st_mtime_ns != st.st_mtime_ns:
        # PostgreSQL never changes a file it handed over: this is not one
        # (or it was archived and recycled meanwhile).
        raise BadInput(f"wal-push {path}: the file changed while it was read")


def check_header(
    wal: WalName, head: bytes, size: int, path: Path
) -> tuple[WalName, tuple[str, int, int] | None]:
    """Refuse what is not the segment its name says; return the name read for
    the cluster's segment size, and the cluster it comes from (None for
    .history and .backup files: they carry no header)."""
    if wal.kind not in HEADED:
        return wal, None
    try:
        header = read_long_header(head)
    except ValueError as e:
        raise WalIntegrityError(f"wal-push {path}: not a WAL segment ({e})") from None
    if header.pg_version is None:
        raise WalIntegrityError(
            f"wal-push {path}: unknown WAL page magic {header.magic:#06x} (not PostgreSQL WAL?)"
        )
    if wal.kind == "segment" and size != header.seg_size:
        raise WalIntegrityError(
            f"wal-push {path}: {size} bytes, but its header says segments are "
            f"{header.seg_size} bytes (truncated?)"
        )
    # Names encode segment numbers for the cluster's segment size.
    named = wal.sized(header.seg_size)
    if named is None or header.pageaddr != (named.segno or 0) * header.seg_size:
        raise WalIntegrityError(
            f"wal-push {path}: its first page is at {header.pageaddr:#x}, "
            f"not where {wal.name} begins (renamed or damaged file)"
        )
    return named, (str(header.system_identifier), header.pg_version, header.seg_size)
