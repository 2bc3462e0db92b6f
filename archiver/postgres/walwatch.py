"""WAL look-ahead: push segments as soon as PostgreSQL marks them ready,
in parallel, so that archive_command finds them already durable.

PostgreSQL creates pg_wal/archive_status/<name>.ready once a file is
complete and never changes the file while it waits; a watchdog observer
reports those files, and a periodic scan catches anything it missed.

Two stages: a pool reads, hashes, compresses and stores each file and its
record (archiver.postgres.walfile, archiver.postgres.walpush), which
acknowledges it: the mark for archive_command (archiver.postgres.walmarks)
follows at once. One thread then commits the catalog rows: all those
waiting, in one transaction.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from archiver.postgres.walfile import file_identity, store_wal
from archiver.postgres.walmarks import Marks
from archiver.postgres.walpush import PushResult, Recorded, commit_rows, push_wal, record_wal
from catalog.repository import Repository

SCAN_INTERVAL = 1.0


class WalPusher:
    def __init__(
        self, repo: Repository, source: str, pgdata: str, mark_tag: str, workers: int = 2
    ) -> None:
        self.repo = repo
        self.source = source
        self.wal_dir = Path(pgdata) / "pg_wal"
        self.status_dir = self.wal_dir / "archive_status"
        self.marks = Marks(self.status_dir, mark_tag)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix=f"pitr-push-{source}")
        # One committer: catalog writes serialize anyway (SQLite has one writer).
        self.committer = ThreadPoolExecutor(1, thread_name_prefix=f"pitr-commit-{source}")
        self.lock = threading.Lock()
        self.pending: dict[str, Future[PushResult]] = {}
        self.uncommitted: list[Recorded] = []  # acknowledged, their rows not committed yet
        # name -> identity of the file we pushed: a request for the same file
        # is answered without reading it again.
        self.pushed: dict[str, tuple[int, int, int, int]] = {}
        self.errors = 0
        self.segments_pushed = 0  # files this pusher archived (for the daemon's metrics)
        self.bytes_stored = 0  # their stored bytes, not counting content stored before
        self._stop = threading.Event()
        self._observer: Any = None
        self._scanner: threading.Thread | None = None

    # -- look-ahead ------------------------------------------------------------

    def start(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        pusher = self

        class Handler(FileSystemEventHandler):
            def on_created(self, event: Any) -> None:
                pusher._ready(os.fsdecode(event.src_path))

            def on_moved(self, event: Any) -> None:
                pusher._ready(os.fsdecode(event.dest_path))

        self.status_dir.mkdir(parents=True, exist_ok=True)
        self.marks.clear_all()
        self._observer = Observer()
        self._observer.schedule(Handler(), str(self.status_dir), recursive=False)
        self._observer.start()
        self.scan()  # a backlog that was there before the daemon started
        self._scanner = threading.Thread(target=self._scan_loop, daemon=True, name="pitr-scan")
        self._scanner.start()

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(10)
        self.pool.shutdown(wait=True, cancel_futures=False)
        self.committer.shutdown(wait=True, cancel_futures=False)  # after: the pool feeds it
        self.marks.forget(self._listing(), set())  # nobody answers for them any more

    def _ready(self, path: str) -> None:
        if path.endswith(".ready"):
            self._schedule(os.path.basename(path)[: -len(".ready")])

    def _scan_loop(self) -> None:
        while not self._stop.wait(SCAN_INTERVAL):
            self.scan()

    def _listing(self) -> list[str]:
        try:
            return os.listdir(self.status_dir)
        except FileNotFoundError:
            return []

    def scan(self) -> None:
        names = self._listing()
        ready = {n[: -len(".ready")] for n in names if n.endswith(".ready")}
        for name in sorted(ready):  # oldest first: the one PostgreSQL is waiting for
            self._schedule(name)
        with self.lock:  # forget what PostgreSQL has marked done
            for name in [n for n, f in self.pending.items() if n not in ready and f.done()]:
                del self.pending[name]
                self.pushed.pop(name, None)
        self.marks.forget(names, ready)

    def _schedule(self, name: str) -> Future[PushResult] | None:
        with self.lock:
            future = self.pending.get(name)
            if future is not None and not (future.done() and future.exception()):
                return future
            if self._stop.is_set():
                return None
            future = Future()
            self.pending[name] = future
            try:
                self.pool.submit(self._store, self.wal_dir / name, future)
            except RuntimeError as e:  # stopping: the pool takes no more work
                future.set_exception(e)
            return future

    def _store(self, path: Path, future: Future[PushResult]) -> None:
        lock = self.marks.hold(path.name)  # from here archive_command waits for the mark
        try:
            stored = store_wal(self.repo, path)
            # Its journal entry says "no catalog projects this": if the daemon
            # dies before the committer gets to the row, the next catch-up of
            # any catalog, this one included, applies the record.
            done = record_wal(self.repo, self.source, path, stored, projected=False)
        except BaseException as e:
            self.marks.release(lock)
            self._failed(future, e)
            return
        # Durable in the store: acknowledged. The catalog row follows.
        with self.lock:
            self.pushed[path.name] = stored.identity
            self._count(done.result)
        self.marks.archived(path, stored.identity, lock)
        future.set_result(done.result)
        with self.lock:
            self.uncommitted.append(done)
            first = len(self.uncommitted) == 1
        if first:  # else a commit is queued already, and takes this one too
            with contextlib.suppress(RuntimeError):  # stopping: the catch-up applies it
                self.committer.submit(self._commit)

    def _commit(self) -> None:
        with self.lock:
            batch, self.uncommitted = self.uncommitted, []
        try:
            commit_rows(self.repo, batch)
        except Exception:
            with self.lock:
                self.errors += 1  # the records stand; a catch-up makes the rows

    def _count(self, result: PushResult) -> None:
        self.segments_pushed += 1
        if not result.already:
            self.bytes_stored += result.stored_bytes

    def _failed(self, future: Future[PushResult], error: BaseException) -> None:
        with self.lock:  # the store threads and the committer both get here
            self.errors += 1
        future.set_exception(error)

    # -- archive_command requests ------------------------------------------------

    def archive(self, path: str) -> None:
        """Return once the file at path is durably archived (raise otherwise)."""
        p = Path(path)
        with self.lock:
            future = self.pending.get(p.name)
        if future is not None:
            with contextlib.suppress(Exception):  # pushed again below, its error reported then
                future.result()
        with self.lock:
            known = self.pushed.get(p.name)
        if known is not None and known == file_identity(p.stat()):
            return
        result = push_wal(self.repo, self.source, p)
        with self.lock:
            self.pushed[p.name] = file_identity(p.stat())
            self._count(result)
