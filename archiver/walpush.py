"""archive_command: store one WAL file durably, exactly once.

Order of durability: the object, then its record in the store (the fact
rebuild reads), then the catalog row. Exit 0 is allowed only after all three.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from archiver.errors import BadInput, WalIntegrityError
from catalog.db.models import Source, WalFile
from catalog.queries import ensure_source, record_objects
from catalog.repository import Chunk, Repository, record_key
from catalog.wal import WalName, parse_wal_name, read_long_header

WAL_BUFFER = (16 << 20) + 1  # one default segment, and a byte to see it end


@dataclass(frozen=True)
class PushResult:
    name: str
    oid: str
    stored_bytes: int
    already: bool  # the same content was archived before


def wal_record_key(source: str, name: str) -> str:
    return record_key(source, "wal", name)


def identity_record_key(source: str) -> str:
    return record_key(source, "identity", "postgres")


def push_wal(repo: Repository, source: str, path: str | Path) -> PushResult:
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
    oid = repo.codec.object_id(data)

    with repo.catalog.session() as s:
        src = ensure_source(s, source, "postgres")
        if src.wal_segment_size and src.wal_segment_size != 16 << 20:
            wal = parse_wal_name(wal.name, src.wal_segment_size) or wal
        row = s.scalars(
            select(WalFile).where(WalFile.source_id == src.id, WalFile.name == wal.name)
        ).one_or_none()
        if row is not None:
            return _same_or_refuse(wal.name, row.oid, oid, 0)
        identity = _check_identity(repo, src, wal, data, path)

    chunk = repo.put_chunk(data, oid=oid)
    end_time = datetime.fromtimestamp(mtime, UTC)
    fact = {
        "type": "wal",
        "source": source,
        "name": wal.name,
        "kind": wal.kind,
        "timeline": wal.timeline,
        "segno": wal.segno,
        "oid": oid,
        "size": len(data),
        "end_time": end_time.isoformat(),
        "archived_at": datetime.now(UTC).isoformat(),
    }
    stored = repo.put_record(wal_record_key(source, wal.name), fact)
    if stored is not None:
        # Archived before, but the catalog had lost the row: the store decides.
        _same_or_refuse(wal.name, stored["oid"], oid, 0)
        fact = stored
    _commit_row(repo, source, fact, chunk, identity)
    return PushResult(wal.name, oid, chunk.stored_size, stored is not None)


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


def _same_or_refuse(name: str, archived_oid: str, oid: str, stored: int) -> PushResult:
    if archived_oid != oid:
        raise WalIntegrityError(
            f"wal-push {name}: already archived with different content; refusing to overwrite"
        )
    return PushResult(name, oid, stored, True)


def _check_identity(
    repo: Repository, src: Source, wal: WalName, data: bytes | memoryview, path: Path
) -> tuple[str, int, int] | None:
    """Refuse WAL of another system or version; return the identity to record
    when this is the first segment the source sees."""
    if wal.kind not in ("segment", "partial"):
        return None  # .history and .backup files carry no page header
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
    sysid = str(header.system_identifier)
    if src.system_identifier is None:
        return sysid, header.pg_version, header.seg_size
    if src.system_identifier != sysid or src.pg_version != header.pg_version:
        raise WalIntegrityError(
            f"wal-push {path}: WAL of system {sysid} (PostgreSQL {header.pg_version}), but source "
            f"{src.name} archives system {src.system_identifier} "
            f"(PostgreSQL {src.pg_version})"
        )
    return None


def _commit_row(
    repo: Repository,
    source: str,
    fact: dict[str, Any],
    chunk: Chunk,
    identity: tuple[str, int, int] | None,
) -> None:
    if identity is not None:
        sysid, version, seg_size = identity
        repo.put_record(
            identity_record_key(source),
            {
                "type": "identity",
                "source": source,
                "system_identifier": sysid,
                "pg_version": version,
                "wal_segment_size": seg_size,
            },
        )
    try:
        with repo.catalog.session() as s:
            src = ensure_source(s, source, "postgres")
            if identity is not None and src.system_identifier is None:
                src.system_identifier, src.pg_version, src.wal_segment_size = identity
            s.add(wal_row(src.id, fact))
            record_objects(s, [chunk])
    except Exception as e:
        # A concurrent push of the same name won the insert: fine if identical.
        if not isinstance(getattr(e, "__cause__", None), DBIntegrityError):
            raise
        with repo.catalog.session() as s:
            src = ensure_source(s, source, "postgres")
            row = s.scalars(
                select(WalFile).where(WalFile.source_id == src.id, WalFile.name == fact["name"])
            ).one()
            _same_or_refuse(str(fact["name"]), row.oid, str(fact["oid"]), 0)


def wal_row(source_id: int, fact: dict[str, Any]) -> WalFile:
    """The catalog row of a WAL record (also used by catalog rebuild)."""
    return WalFile(
        source_id=source_id,
        name=fact["name"],
        kind=fact["kind"],
        timeline=fact["timeline"],
        segno=fact["segno"],
        oid=fact["oid"],
        size=fact["size"],
        end_time=datetime.fromisoformat(str(fact["end_time"])),
        archived_at=datetime.fromisoformat(str(fact["archived_at"])),
    )
