"""Writing a SQLite database as it was at an instant: the base copy's pages,
then every archived frame up to the last commit seen at or before the
target, into a temporary file beside the destination; then PRAGMA
integrity_check, and a rename into place."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from catalog.manifests import SqliteBaseManifest, read_manifest
from catalog.repository import Repository
from catalog.sqlitefiles import set_aside
from catalog.sqliteformat import Batch, decode_batch
from recovery.errors import RecoveryError
from recovery.sqlite.plan import DbPlan


class RestoredCorrupt(RecoveryError):
    """The restored database fails PRAGMA integrity_check."""

    exit_code = 4


@dataclass(frozen=True)
class Written:
    path: Path
    pages: int
    frames: int
    commits: int
    set_aside: list[Path]  # the files it replaced, renamed


def _cutoff(batch: Batch, target_us: int, final: bool) -> tuple[int, int]:
    """(frames to apply, commits they complete) of a batch."""
    if not final:
        return len(batch.frames), len(batch.commits)
    end = commits = 0
    for index, seen in batch.commits:
        if seen > target_us:
            break
        end, commits = index + 1, commits + 1
    return end, commits


def exact_plan(repo: Repository, plan: DbPlan) -> DbPlan:
    """The plan with the instant of the last commit it applies, read from
    the last batch (the catalog knows only each batch's first and last)."""
    if not plan.batches or plan.batches[-1].last_seen <= plan.target:
        return plan
    batch = decode_batch(repo.get_chunk(plan.batches[-1].oid))
    target_us = _micros(plan.target)
    seen = [us for _, us in batch.commits if us <= target_us]
    if seen:
        return replace(plan, last_commit=datetime.fromtimestamp(seen[-1] / 1e6, UTC))
    earlier = [b.last_seen for b in plan.batches[:-1] if b.commits]
    return replace(plan, last_commit=earlier[-1] if earlier else None)


def _micros(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def write_database(repo: Repository, plan: DbPlan, path: Path) -> Written:
    """The database as of plan.target at path, checked, then put in place
    (an existing file and its -wal and -shm are set aside first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.pitr-restore")
    manifest = read_manifest(repo, plan.base.manifest_oid, SqliteBaseManifest)
    page_size, pages = manifest.page_size, manifest.pages
    frames = commits = 0
    with open(tmp, "wb") as f:
        for oid in manifest.chunks:
            f.write(repo.get_chunk_view(oid))
        f.truncate(pages * page_size)
        target_us = _micros(plan.target)
        for i, ref in enumerate(plan.batches):
            batch = decode_batch(repo.get_chunk_view(ref.oid))
            end, done = _cutoff(batch, target_us, i == len(plan.batches) - 1)
            skip = max(0, plan.base.gpos + 1 - ref.gfirst)
            for frame in batch.frames[skip:end]:
                os.pwrite(f.fileno(), frame.data, (frame.page - 1) * page_size)
                if frame.commit_pages:
                    if frame.commit_pages < pages:
                        f.truncate(frame.commit_pages * page_size)
                    pages = frame.commit_pages
            frames += max(0, end - skip)
            commits += done
        f.truncate(pages * page_size)
        f.flush()
        os.fsync(f.fileno())
    try:
        check_integrity(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    moved = set_aside(path)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return Written(path, pages, frames, commits, moved)


def check_integrity(path: Path) -> None:
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as e:
        rows = [str(e)]
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    if rows != ["ok"]:
        raise RestoredCorrupt(f"{path}: integrity_check failed: {'; '.join(rows[:3])}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
