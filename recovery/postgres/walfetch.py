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
        fact = repo.get_record(wal_key(source, name))
    except ObjectNotFound:
        return False
    data = repo.get_chunk(fact["oid"])
    write_atomically(Path(dest), data)
    return True


def write_atomically(dest: Path, data: bytes) -> None:
    """Temp file in the destination's directory, fsync, rename."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.pitr-tmp")
    with synced_temp(tmp, data):
        os.replace(tmp, dest)
