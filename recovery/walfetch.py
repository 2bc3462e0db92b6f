"""restore_command: hand PostgreSQL one archived WAL file.

"Not archived" is an ordinary answer (PostgreSQL probes for files that do not
exist), so it is a quick catalog lookup; the file itself is verified against
its hash before it is renamed into place.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from sqlalchemy import select

from catalog.db.models import Source, WalFile
from catalog.repository import Repository
from recovery.errors import RestoreInputError


def lookup_wal(repo: Repository, source: str, name: str) -> WalFile | None:
    with repo.catalog.session() as s:
        return s.scalars(
            select(WalFile)
            .join(Source, Source.id == WalFile.source_id)
            .where(Source.name == source, WalFile.name == name)
        ).one_or_none()


def fetch_wal(repo: Repository, source: str, name: str, dest: str | Path) -> bool:
    """Write the archived file `name` to dest; False if it is not archived."""
    if "/" in name or name in ("", ".", ".."):
        raise RestoreInputError(f"wal-fetch {name!r}: not a WAL file name")
    row = lookup_wal(repo, source, name)
    if row is None:
        return False
    data = repo.get_chunk(row.oid)
    write_atomically(Path(dest), data)
    return True


def write_atomically(dest: Path, data: bytes) -> None:
    """Temp file in the destination's directory, fsync, rename."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.pitr-tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
