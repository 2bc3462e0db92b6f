"""The capture loop of a SQLite source: one shipper per database, woken by
file-system events on the databases' directories (watchdog), with a slow
poll as a fallback for file systems that send none."""

from __future__ import annotations

import glob
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver.errors import ArchiverError, BadInput
from archiver.sqlite.live import read_header, require_wal
from archiver.sqlite.shipper import DbShipper
from catalog.repository import Repository

POLL_SECONDS = 1.0
RESCAN_SECONDS = 10.0  # how often the patterns are matched again for new databases
# A writer appends its frames to the -wal file (which wakes us) before it
# marks them committed in the -shm index (which does not, and may follow an
# fsync): after a wake-up, look again a few times before going back to sleep.
RECHECK_DELAYS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
WAKING_EVENTS = frozenset({"modified", "created", "deleted", "moved"})
BUSY_POLL = 0.005  # seconds between polls while commits keep coming
BUSY_SECONDS = 0.25  # this long without a commit, and file events wake us again

Log = Callable[[str], None]


def resolve(patterns: Iterable[str], *, strict: bool = True) -> dict[str, Path]:
    """Database name (the file's name) -> path, for every file the patterns
    match. strict: BadInput (exit 2) for a pattern that matches nothing."""
    found: dict[str, Path] = {}
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if glob.has_magic(pattern):
            matches = [m for m in sorted(glob.glob(pattern)) if _is_database(m)]
            if strict and not matches:
                raise BadInput(f"{pattern}: matches no file")
        else:  # a plain path: read_header says what is wrong with it
            matches = [pattern] if strict or os.path.exists(pattern) else []
        for match in matches:
            path = Path(match).absolute()
            other = found.get(path.name)
            if other is not None and other != path:
                raise BadInput(
                    f"{other} and {path}: two databases of one source share the name {path.name}"
                )
            found[path.name] = path
    return found


def _is_database(path: str) -> bool:
    return os.path.isfile(path) and not path.endswith(("-wal", "-shm", "-journal"))


def check_databases(dbs: dict[str, Path], need_wal: bool) -> None:
    """BadInput for a file that is not a SQLite database (in WAL mode, if asked)."""
    for path in dbs.values():
        header = read_header(path)
        if need_wal:
            require_wal(path, header)


@dataclass
class CaptureStats:
    databases: int = 0
    commits: int = 0
    batches: int = 0
    gaps: int = 0


class SqliteCapture:
    def __init__(
        self,
        repo: Repository,
        source: str,
        patterns: Iterable[str],
        log: Log,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.repo = repo
        self.source = source
        self.patterns = tuple(patterns)
        self.log = log
        self.poll_seconds = poll_seconds
        self.shippers: dict[str, DbShipper] = {}
        self.wake = threading.Event()
        self._rescanned = 0.0
        self._watched: set[str] = set()
        check_databases(resolve(self.patterns), need_wal=True)
        # Base copies now, before the daemon's scheduler looks for a recent
        # one; a database that cannot be opened stops the start (exit 2 or 5).
        self._rescan(strict=True)

    def run(self, stop: threading.Event) -> CaptureStats:
        """Capture until stop is set; then ship what is committed and return."""
        observer = self._observer()
        delays: list[float] = []
        active = 0.0  # when a poll last shipped a commit
        try:
            while not stop.is_set():
                if time.monotonic() - self._rescanned >= RESCAN_SECONDS:
                    self._rescan()
                shipped = sum(self._poll(s) for s in list(self.shippers.values()))
                now = time.monotonic()
                active = now if shipped else active
                # While commits keep coming, poll every few milliseconds rather
                # than take thousands of file events a second; watch again
                # once the databases go quiet.
                if now - active < BUSY_SECONDS:
                    self._unwatch(observer)
                    stop.wait(BUSY_POLL)
                    continue
                if self._watch(observer):
                    continue  # look once more: commits made while unwatched wake nobody
                woken = self.wake.wait(delays.pop(0) if delays else self.poll_seconds)
                self.wake.clear()
                if woken:
                    delays = list(RECHECK_DELAYS)
        finally:
            observer.stop()
            for shipper in self.shippers.values():
                shipper.stop()
        stats = CaptureStats(len(self.shippers))
        for s in self.shippers.values():
            stats.commits += s.commits
            stats.batches += s.batches
            stats.gaps += s.gaps
        return stats

    def _poll(self, shipper: DbShipper) -> int:
        try:
            return shipper.poll()
        except Exception as e:  # one database's trouble must not stop the others
            self.log(f"{shipper.db}: {e}")
            shipper.close(f"capture stopped on an error ({e})")
            return 0

    def _rescan(self, strict: bool = False) -> None:
        """Start a shipper for every database the patterns match that has none."""
        self._rescanned = time.monotonic()
        for name, path in resolve(self.patterns, strict=False).items():
            if name in self.shippers:
                continue
            shipper = DbShipper(self.repo, self.source, name, path, self.log)
            try:
                shipper.start()
            except ArchiverError as e:
                shipper.close()
                if strict:
                    raise
                self.log(f"{e} (tried again in {RESCAN_SECONDS:.0f}s)")
                continue
            self.shippers[name] = shipper

    def _watch(self, observer: Any) -> bool:
        """Watch every database's directory; True when a watch was added."""
        added = False
        for shipper in self.shippers.values():
            directory = str(shipper.path.parent)
            if directory not in self._watched:
                observer.schedule(self._handler, directory, recursive=False)
                self._watched.add(directory)
                added = True
        return added

    def _unwatch(self, observer: Any) -> None:
        if self._watched:
            observer.unschedule_all()
            self._watched.clear()

    def _observer(self) -> Any:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        wake = self.wake

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                # Writes and renames only: our own reads open and close the
                # files too, and must not wake us.
                if event.event_type in WAKING_EVENTS:
                    wake.set()

        self._handler = Wake()
        observer = Observer()
        observer.daemon = True
        observer.start()
        return observer
