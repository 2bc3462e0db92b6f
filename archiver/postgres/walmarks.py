"""Archived marks: how archive_command acknowledges a segment that the
daemon has already archived, without starting Python.

Starting the interpreter costs about 20 ms of CPU for each segment, a
quarter or more of what archiving the segment costs. So the daemon leaves two
files in pg_wal/archive_status (PostgreSQL reads only its own `.ready` and
`.done` names there):

- `<name>.pitr-<tag>.lock`: the daemon holds an exclusive flock on it while
  it archives the segment; archive_command waits on it with flock(1), and
  the kernel releases it if the daemon dies;
- `<name>.pitr-<tag>`: a hard link to the very segment file, made once it is
  durable in the store (object and record). `test MARK -ef %p` (same device and
  inode) is true only for that file: a recycled or replaced segment never
  matches.

The tag names the repository and source, so two repositories archiving one
cluster never take each other's marks. Anything unexpected (no flock(1), no
mark, a different file) falls through to `pitr wal-push`, which does the
whole job.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shlex
from pathlib import Path

from archiver.postgres.walfile import Identity, file_identity

MARK = ".pitr-"


def mark_tag(repository_url: str, source: str) -> str:
    return hashlib.sha256(f"{repository_url}\0{source}".encode()).hexdigest()[:12]


def archive_command(pitr: str, config: str, source: str, tag: str) -> str:
    """The archive_command line (PostgreSQL runs it in the data directory):
    its exit status is the test's, else wal-push's."""
    pitr, config, source = (shlex.quote(s) for s in (pitr, config, source))
    push = f"{pitr} --config {config} wal-push --source {source} %p"
    mark = f"pg_wal/archive_status/%f{MARK}{tag}"
    wait = "test -e $pitr_mark.lock && flock -s -w 600 $pitr_mark.lock true 2>/dev/null"
    check = "test $pitr_mark -ef %p"
    # One brace group, so that it composes: `other-tool %p && { ... }`.
    return f"{{ pitr_mark={mark}; {check} || {{ {wait}; {check}; }} || {push}; }}"


class Marks:
    def __init__(self, status_dir: Path, tag: str) -> None:
        self.status_dir = status_dir
        self.suffix = MARK + tag

    def hold(self, name: str) -> int | None:
        """Lock the segment's lock file: archive_command waits until release."""
        path = self.status_dir / f"{name}{self.suffix}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None  # e.g. not allowed to write here: wal-push does the job
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            return None
        return fd

    def release(self, lock: int | None) -> None:
        if lock is not None:
            os.close(lock)

    def archived(self, path: Path, identity: Identity, lock: int | None) -> None:
        """Mark the file archived (identity: the one that was read), then release."""
        mark = self.status_dir / f"{path.name}{self.suffix}"
        new = mark.with_name(mark.name + ".new")  # checked before archive_command can see it
        try:
            _remove(new)
            os.link(path, new)
            if file_identity(os.stat(new)) == identity:
                os.replace(new, mark)
            else:  # the name now holds another file than the one archived
                os.unlink(new)
        except OSError:
            pass  # no mark: wal-push answers instead
        finally:
            self.release(lock)

    def forget(self, names: list[str], ready: set[str]) -> None:
        """Remove this daemon's marks of files PostgreSQL no longer waits for
        (names: a listing of archive_status; ready: the files it waits for)."""
        for n in names:
            name, mine, _ = n.partition(self.suffix)
            if mine and name not in ready:
                _remove(self.status_dir / n)

    def clear_all(self) -> None:
        """Remove every pitr mark, whatever its tag: a daemon that starts
        vouches for no mark it did not make (another repository's, or one
        left by a daemon that was killed)."""
        with contextlib.suppress(OSError):
            for n in os.listdir(self.status_dir):
                if MARK in n:
                    _remove(self.status_dir / n)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):  # gone already, or not ours to remove
        os.unlink(path)
