"""The look-ahead of a plain `pitr wal-push`, when no daemon runs.

PostgreSQL starts archive_command once per segment, and starting Python
costs more than archiving a segment. So a wal-push that finds more segments
waiting (their `.ready` files in pg_wal/archive_status) archives a few of
them too, on two threads, and leaves each the mark of archiver.postgres.walmarks.
PostgreSQL's next calls then find the mark: the shell test of the recommended
archive_command answers without starting Python at all, and a plain
`pitr wal-push %p` answers from the mark before it reads the file.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from archiver.postgres.walfile import store_wal
from archiver.postgres.walmarks import Marks
from archiver.postgres.walpush import push_wal
from catalog.repository import Repository

AHEAD = 16  # segments one call archives beyond the one asked for
SEGMENT = re.compile(r"[0-9A-F]{24}")


def status_dir(path: Path) -> Path | None:
    """pg_wal/archive_status beside a segment PostgreSQL handed over, if it is one."""
    status = path.parent / "archive_status"
    return status if path.parent.name == "pg_wal" and status.is_dir() else None


def already_marked(path: Path, tag: str) -> bool:
    """Whether an earlier look-ahead (or the daemon) archived this very file."""
    status = status_dir(path)
    if status is None:
        return False
    marks = Marks(status, tag)
    try:
        return os.path.samefile(status / f"{path.name}{marks.suffix}", path)
    except OSError:
        return False


def push_ahead(repo: Repository, source: str, asked: Path, tag: str) -> int:
    """Archive and mark the segments waiting after `asked`; how many were."""
    status = status_dir(asked)
    if status is None:
        return 0
    try:
        names = os.listdir(status)
    except OSError:
        return 0
    ready = {n[: -len(".ready")] for n in names if n.endswith(".ready")}
    marks = Marks(status, tag)
    marks.forget(names, ready)  # marks of segments PostgreSQL has done with
    done = {n.partition(marks.suffix)[0] for n in names if n.endswith(marks.suffix)}
    waiting = sorted(n for n in ready - done if SEGMENT.fullmatch(n) and n > asked.name)
    paths = [asked.parent / n for n in waiting[:AHEAD]]
    with ThreadPoolExecutor(2) as pool:
        return sum(pool.map(lambda p: _push_one(repo, source, p, marks), paths))


def _push_one(repo: Repository, source: str, path: Path, marks: Marks) -> bool:
    lock = marks.hold(path.name)
    if lock is None:
        return False
    try:
        stored = store_wal(repo, path)
        push_wal(repo, source, path, stored, project=False)
    except Exception:
        marks.release(lock)
        return False  # PostgreSQL asks for it in turn; that call reports what is wrong
    marks.archived(path, stored.identity, lock)
    return True
