"""Which parts of PGDATA a base backup copies (the rules pg_basebackup follows)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Directories kept empty: their contents are rebuilt or not needed on restore.
EMPTY_DIRS = {
    "pg_wal",
    "pg_dynshmem",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
}
# Files never copied.
SKIP_FILES = {
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "tablespace_map",
    "backup_label.old",
    "recovery.signal",
    "standby.signal",
    "backup_manifest",
    "pg_internal.init",
    "current_logfiles.tmp",
    "postgresql.auto.conf.tmp",
}


@dataclass(frozen=True)
class Entry:
    path: str  # relative to PGDATA, slash-separated
    kind: str  # dir | file | link
    mode: int
    size: int = 0
    target: str = ""  # for links


def walk_pgdata(root: Path) -> Iterator[Entry]:
    """Entries of PGDATA in a stable order. Tablespace links in pg_tblspc are
    followed: their contents are backed up under pg_tblspc/<oid>/."""
    yield from _walk(root, "")


def _walk(directory: Path, rel: str) -> Iterator[Entry]:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return  # dropped while we were copying; WAL replay recreates what matters
    for entry in entries:
        name = entry.name
        path = f"{rel}{name}"
        if _skipped(rel, name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if entry.is_symlink():
                if rel == "pg_tblspc/":
                    # A tablespace: keep the link target, copy its contents.
                    yield Entry(path, "link", 0o700, target=os.readlink(entry.path))
                    yield from _walk(Path(entry.path), path + "/")
                continue
            if entry.is_dir(follow_symlinks=False):
                yield Entry(path, "dir", st.st_mode & 0o7777)
                if rel == "" and name in EMPTY_DIRS:
                    if name == "pg_wal":
                        yield Entry("pg_wal/archive_status", "dir", 0o700)
                    continue
                yield from _walk(Path(entry.path), path + "/")
            elif entry.is_file(follow_symlinks=False):
                yield Entry(path, "file", st.st_mode & 0o7777, st.st_size)
        except FileNotFoundError:
            continue


def _skipped(rel: str, name: str) -> bool:
    if name in SKIP_FILES or name.startswith("pgsql_tmp"):
        return True
    return name.endswith(".tmp") and rel.startswith("pg_")
