"""Where a restore may write: a new or empty directory, or a PostgreSQL
data directory (set aside with --force) that no running server uses, nor
any directory under it."""

from __future__ import annotations

import os
from pathlib import Path

from recovery.errors import TargetNotEmpty


def check_target(pgdata: Path, force: bool) -> bool:
    """True when pgdata holds something that must be set aside: only ever a
    PostgreSQL data directory that no running server uses."""
    if not pgdata.exists():
        return False
    if not pgdata.is_dir():
        raise TargetNotEmpty(f"restore: {pgdata} exists and is not a directory")
    if not any(pgdata.iterdir()):
        return False
    busy = server_using(pgdata)
    if busy is not None:
        raise TargetNotEmpty(f"restore: a server (pid {busy[0]}) is running on {busy[1]}; stop it")
    if not (pgdata / "PG_VERSION").is_file():
        raise TargetNotEmpty(
            f"restore: {pgdata} is not empty and not a PostgreSQL data directory (no PG_VERSION); "
            "pitr sets aside only a data directory: name an empty or new directory"
        )
    if not force:
        raise TargetNotEmpty(
            f"restore: {pgdata} is not empty; pass --force to set its contents aside"
        )
    return True


def server_using(root: Path) -> tuple[int, Path] | None:
    """(pid, data directory) of a running server whose data directory is
    root or lies under it: by the postmaster.pid files in the tree, and by
    the working directory of every process (a postmaster's is its data
    directory, pid file or not)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        if "postmaster.pid" in filenames:
            pid = _live_pid(Path(dirpath) / "postmaster.pid")
            if pid is not None:
                return pid, Path(dirpath)
    resolved = root.resolve()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = (proc / "cwd").resolve(strict=True)
        except OSError:
            continue
        if (cwd == resolved or resolved in cwd.parents) and _is_postgres(proc):
            return int(proc.name), cwd
    return None


def _is_postgres(proc: Path) -> bool:
    try:
        return (proc / "comm").read_text().strip() in ("postgres", "postmaster")
    except OSError:
        return False


def _live_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # left by a server that crashed
    except PermissionError:
        pass  # another user's process: alive
    return pid
