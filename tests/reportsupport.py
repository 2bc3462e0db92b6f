"""Helpers for the report, check, verify and expire tests: reading and
changing the SQLite catalog as the postgres user (who owns it, so that the
archive_command running as postgres can go on writing it), and damaging
the store like a failing disk or a careless operator would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from catalog.records import record_key
from catalog.repository import object_key
from tests.pgsupport import Archived
from tests.servers import as_user, clean_env

_SQL = (
    "import json, sqlite3, sys\n"
    "c = sqlite3.connect(sys.argv[1], timeout=30)\n"
    "rows = c.execute(sys.argv[2], json.loads(sys.argv[3])).fetchall()\n"
    "c.commit()\n"
    "print(json.dumps(rows))\n"
)


# Fields every windowed JSON output has (info, report rpo, check, verify).
WINDOW_FIELDS = {"recoverable_from", "recoverable_to", "gaps"}


def catalog_sql(archived: Archived, sql: str, *params: Any) -> list[list[Any]]:
    """Run one statement on the repository's SQLite catalog as postgres,
    once it has caught up with the store."""
    archived.pitr("info")
    argv = [sys.executable, "-c", _SQL, str(archived.repo / "catalog.db"), sql, json.dumps(params)]
    proc = subprocess.run(
        as_user("postgres", argv), capture_output=True, text=True, check=False, env=clean_env()
    )
    if proc.returncode != 0:
        raise AssertionError(f"catalog sql {sql!r} failed: {proc.stderr}")
    return list(json.loads(proc.stdout))


def segments(archived: Archived) -> list[tuple[str, str]]:
    """(name, oid) of the archived WAL segments, in order."""
    rows = catalog_sql(
        archived, "SELECT name, oid FROM wal_files WHERE kind = 'segment' ORDER BY name"
    )
    return [(r[0], r[1]) for r in rows]


def object_path(archived: Archived, oid: str) -> Path:
    return archived.repo / object_key(oid)


def forget_wal(archived: Archived, name: str) -> None:
    """Remove every trace of an archived WAL file: object, record and row."""
    (oid,) = catalog_sql(archived, "SELECT oid FROM wal_files WHERE name = ?", name)[0]
    object_path(archived, oid).unlink(missing_ok=True)
    (archived.repo / record_key("db", "wal", name)).unlink()
    catalog_sql(archived, "DELETE FROM wal_files WHERE name = ?", name)


def pitr_json(archived: Archived, *args: str, code: int = 0) -> Any:
    result = archived.pitr(*args, "--output", "json", check=code)
    return json.loads(result.stdout)


# -- Redis ----------------------------------------------------------------------------

MARKERS = "cb:stream:markers"


def add_markers(client: Any, first: int, last: int) -> list[bytes]:
    """Marker entries first..last, each in its own millisecond."""
    ids = []
    for n in range(first, last + 1):
        time.sleep(0.01)
        ids.append(client.xadd(MARKERS, {"n": str(n)}))
    return ids


def tail_markers(source: Any, first: int, last: int) -> list[bytes]:
    """Write markers with the tailer running and wait until they are archived."""
    from tests.redissupport import TailThread, wait_for_entries

    before = len(source.archived())
    with source.repo() as repo:
        tail = TailThread(repo, source.name, source.server.url, batch_seconds=0.05)
        try:
            ids = add_markers(source.client(), first, last)
            wait_for_entries(source, before + len(ids))
        finally:
            tail.stop()
    return ids


def snapshot_and_tail(source: Any, first: int, last: int) -> list[bytes]:
    """Marker `first`, then a snapshot, then markers first+1..last archived
    by the tailer: the IDs of all of them."""
    ids = add_markers(source.client(), first, first)
    source.pitr("backup", "--source", "cache")
    return ids + tail_markers(source, first + 1, last)


def archived_redis(server: Any, base: Path, health: str) -> tuple[Any, list[bytes]]:
    """A Redis source whose key cb:health:a holds `health`, archived as
    snapshot_and_tail(0, 3) does; with the IDs of its markers."""
    from tests.redissupport import make_source

    source = make_source(server, base)
    source.client().set("cb:health:a", health)
    return source, snapshot_and_tail(source, 0, 3)


def redis_json(source: Any, *args: str, code: int = 0) -> Any:
    return json.loads(source.pitr(*args, "--output", "json", check=code).stdout)


def utc(text: str) -> datetime:
    """An ISO 8601 UTC instant as the JSON outputs print it (with Z)."""
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)
