"""restore_command: hand PostgreSQL one archived WAL file.

"Not archived" is an ordinary answer (PostgreSQL probes for files that do not
exist), so it must be quick: the file's record in the store says whether it
is archived and under which object (records are written before a push is
acknowledged; the catalog database is only their projection, and is not
opened here). The file is verified against its hash before it is renamed
into place.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from catalog.durable import synced_temp
from catalog.errors import ObjectNotFound
from catalog.records import wal_key
from catalog.repository import Repository
from recovery.errors import RestoreInputError


def fetch_wal(repo: Repository, source: str, name: str, dest: str | Path) -> bool:
    """Write the archived file `name` to dest; False if it is not archived."""
    if "/" in name or name in ("", ".", ".."):
        raise RestoreInputError(f"wal-fetch {name!r}: not a WAL file name")
    try:
        oid = repo.get_record(wal_key(source, name))["oid"]
    except ObjectNotFound:
        # Not in the store's records: the catalog must not know it either,
        # or "not archived" would end recovery early (a lost record).
        found = streamed_oid(repo, source, name) or archived_oid(repo, source, name)
        if found is None:
            return False
        oid = found
    data = repo.get_chunk(oid)
    write_atomically(Path(dest), data)
    return True


def write_atomically(dest: Path, data: bytes) -> None:
    """Temp file in the destination's directory, fsync, rename."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.pitr-tmp")
    with synced_temp(tmp, data):
        os.replace(tmp, dest)


def streamed_oid(repo: Repository, source: str, name: str) -> str | None:
    """The newest streamed piece of segment `name` (see archiver.postgres.walpiece):
    the segment as far as it was received, served while it is not complete."""
    if "." in name:
        return None  # only segments are streamed
    pieces = sorted(repo.list_records(wal_key(source, f"{name}.stream.")))
    for key in reversed(pieces):  # the newest; an older one if it was just removed
        try:
            return str(repo.get_record(key)["oid"])
        except ObjectNotFound:
            continue
    return None


def archived_oid(repo: Repository, source: str, name: str) -> str | None:
    from sqlalchemy import select

    from catalog.db.models import Source, WalFile

    with repo.catalog.session() as s:
        return (
            s.scalars(
                select(WalFile.oid)
                .join(Source, Source.id == WalFile.source_id)
                .where(Source.name == source, WalFile.name == name)
            ).first()
            or s.scalars(  # a piece whose record was lost
                select(WalFile.oid)
                .join(Source, Source.id == WalFile.source_id)
                .where(Source.name == source, WalFile.name.startswith(f"{name}.stream."))
                .order_by(WalFile.name.desc())
            ).first()
        )
