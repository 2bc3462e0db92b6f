"""Copy files into the content-addressed store in parallel, in two stages.

Sealing threads (one per core) each read a range of a file's chunks, and
hash and compress every chunk; writer threads then write the new objects
and wait on their fsyncs. So the sealers never wait on the disk, and a
range of many chunks per task keeps hand-overs between threads (costly on
a VM) few.

Memory is bounded whatever the database size: one chunk buffer per sealer
(archiver.buffers), a bounded number of sealed objects waiting for a
writer, and a bounded number of ranges queued (the caller collects files
in order as it goes).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from io import FileIO
from pathlib import Path

from catalog.buffers import thread_buffer
from catalog.repository import Chunk, Repository

RANGE_CHUNKS = 16  # chunks per task: few hand-overs, and tasks enough to share out

Range = Future["list[Future[Chunk]] | None"]  # None: the file was gone


class FileCopy:
    def __init__(self, ranges: list[Range], chunk_size: int) -> None:
        self.ranges = ranges
        self.chunk_size = chunk_size

    def chunks(self) -> list[Chunk] | None:
        """The file's chunks in order; None if it was gone before it was read.

        A range that ends early (the file shrank while it was read) ends the
        file there, whatever later ranges found: the chunks stay contiguous,
        and every chunk but the last is a full one. What the file held
        beyond is WAL replay's to redo, as for anything that changed during
        the backup. (A file that grows is read to its end by its last range.)"""
        out: list[Chunk] = []
        for i, task in enumerate(self.ranges):
            got = task.result()
            if got is None:
                return None if i == 0 else out
            chunks = [f.result() for f in got]
            out.extend(chunks)
            if len(chunks) < RANGE_CHUNKS or (chunks and chunks[-1].size < self.chunk_size):
                return out
        return out


class Copier:
    def __init__(
        self,
        repo: Repository,
        known: set[str],
        chunk_size: int,
        sealers: int | None = None,
        writers: int | None = None,
    ) -> None:
        self.repo = repo
        self.known = known
        self.chunk_size = chunk_size
        cores = max(2, os.cpu_count() or 2)
        self.sealers = sealers or cores
        writers = writers or 2 * cores  # they mostly wait on fsyncs
        self._sealers = ThreadPoolExecutor(self.sealers, thread_name_prefix="pitr-seal")
        self._writers = ThreadPoolExecutor(writers, thread_name_prefix="pitr-write")
        self._waiting = threading.BoundedSemaphore(2 * writers)  # sealed, not yet written

    def __enter__(self) -> Copier:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sealers.shutdown(wait=True, cancel_futures=True)
        self._writers.shutdown(wait=True)

    def copy(self, path: Path, size: int) -> FileCopy:
        """Queue a file listed at `size` bytes; the last range reads to
        its end, wherever that is by then."""
        n = max(1, -(-size // self.chunk_size))
        return FileCopy(
            [
                self._sealers.submit(self._range, path, start, start + RANGE_CHUNKS >= n)
                for start in range(0, n, RANGE_CHUNKS)
            ],
            self.chunk_size,
        )

    def _range(self, path: Path, start: int, last: bool) -> list[Future[Chunk]] | None:
        try:
            f = open(path, "rb", buffering=0)  # noqa: SIM115 (closed below, once it opened)
        except FileNotFoundError:
            return None  # removed during the backup: WAL replay accounts for it
        out: list[Future[Chunk]] = []
        with f:
            f.seek(start * self.chunk_size)
            while last or len(out) < RANGE_CHUNKS:
                data = self._read_chunk(f)
                if data is not None:
                    out.append(self._seal(data))
                if data is None or len(data) < self.chunk_size:
                    break
        return out

    def _read_chunk(self, f: FileIO) -> memoryview | None:
        view = thread_buffer("chunk", self.chunk_size)
        n = 0
        while n < len(view) and (got := f.readinto(view[n:])):
            n += got
        return view[:n] if n else None

    def _seal(self, data: memoryview) -> Future[Chunk]:
        oid, stored = self.repo.seal_chunk(data, known=self.known)
        if stored is None:
            done: Future[Chunk] = Future()
            done.set_result(Chunk(oid, len(data), 0))
            return done
        self._waiting.acquire()
        try:
            return self._writers.submit(self._write, oid, len(data), stored)
        except BaseException:
            self._waiting.release()
            raise

    def _write(self, oid: str, size: int, stored: bytes) -> Chunk:
        try:
            return self.repo.put_sealed(oid, size, stored)
        finally:
            self._waiting.release()
