"""Private temporary directories of a restore, and the sweep of those whose
restore was killed before it could remove them (SIGKILL runs no finally).

The owner holds an exclusive flock on the directory's owner file for as
long as it lives; the kernel lets go of it when the process dies, however
it dies. So a directory whose owner file can be locked by someone else has
no owner any more, and the next restore that makes a directory with the
same prefix in the same place removes it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

OWNER = ".pitr-owner"


class ScratchDir:
    """A fresh 0700 directory, locked by this process until remove()."""

    def __init__(self, prefix: str, parent: str | os.PathLike[str] | None = None) -> None:
        where = Path(parent) if parent is not None else Path(tempfile.gettempdir())
        sweep(where, prefix)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
        # Locked under a temporary name, then renamed: a sweep never finds an
        # owner file that is not locked yet.
        pending = self.path / f"{OWNER}.new"
        self._fd: int | None = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.rename(pending, self.path / OWNER)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def sweep(parent: Path, prefix: str) -> list[Path]:
    """Remove the directories prefix* in parent that no live process owns;
    what was removed. Directories without an owner file (another program's,
    or one an older pitr left) are not touched."""
    removed: list[Path] = []
    try:
        names = [n for n in os.listdir(parent) if n.startswith(prefix)]
    except OSError:
        return removed
    for name in names:
        path = parent / name
        try:
            fd = os.open(path / OWNER, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # its owner is alive
            continue
        try:
            if os.stat(path).st_uid == os.geteuid() or os.geteuid() == 0:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        finally:
            os.close(fd)
    return removed
