"""Continuous capture of one SQLite database: every committed frame of its
WAL shipped in order, with the instant it was seen committed.

The shipper holds a read transaction at all times (see live.py), reads the
committed frame count from the WAL index, and ships what is new. It runs
the checkpoints that keep the WAL bounded itself, in a way that cannot lose
a frame: with the write lock taken for a moment, it ships the last frames,
lets go of its snapshot, checkpoints, and takes a new snapshot before the
application may write again. SQLite then restarts the WAL with the next
checkpoint sequence and salt, which is the one restart the shipper accepts
as continuous.

Anything else (the WAL restarted or truncated behind its back, the file
replaced or deleted, a restart of the archiver it cannot verify) starts a
new generation: a fresh base copy, and a gap from the newest archived
commit to that copy.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from archiver.errors import SourceUnreachable
from archiver.sqlite.archive import CleanStop, Position, SqliteArchive
from archiver.sqlite.basecopy import take_base_copy
from archiver.sqlite.live import LiveDatabase
from catalog.repository import Repository
from catalog.sqlitefiles import remove_stale_wal
from catalog.sqliteformat import FRAME_HEADER, Batch, Cycle, WalIndex, parse_frame

MAX_BATCH_BYTES = 8 << 20
CHECKPOINT_FRAMES = 1000  # SQLite's own autocheckpoint threshold
CHECKPOINT_EVERY = 0.1  # seconds between checkpoint attempts
HEARTBEAT_EVERY = 1.0
STATE_READS = 50  # tries at reading the WAL index and header in agreement

Log = Callable[[str], None]
T = TypeVar("T")


class Discontinuity(Exception):
    """The WAL no longer continues what is archived (the message says why)."""


def new_generation_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}"


class DbShipper:
    def __init__(
        self,
        repo: Repository,
        source: str,
        db: str,
        path: Path,
        log: Log,
        checkpoint_frames: int = CHECKPOINT_FRAMES,
    ) -> None:
        self.repo = repo
        self.source = source
        self.db = db
        self.path = path
        self.log = log
        self.checkpoint_frames = checkpoint_frames
        self.archive = SqliteArchive(repo, source)
        self.live: LiveDatabase | None = None
        self.pos: Position | None = None
        self.commits = self.batches = self.gaps = 0
        self.closed_because = ""
        self._beat = self._checkpointed = 0.0
        self._caught_up_us = 0

    # -- opening -----------------------------------------------------------

    def start(self) -> None:
        """Open the database; resume where its archive ends when that can be
        proved, else begin a new generation."""
        self.live = LiveDatabase(self.path)
        try:
            self.live.hold()
        except sqlite3.Error as e:  # e.g. an application in exclusive locking mode
            message = f"{self.path}: cannot read it beside its application: {e}"
            raise SourceUnreachable(message) from None
        prior = self.archive.resume_point(self.db)
        if prior is None:
            self._new_generation(None, "")
            return
        why = self._continues(self.live, prior)
        if why is not None and self._untouched_since_stop(prior):
            why = None
            if self.live.wal_cycle() != prior.cycle:  # frames from the first one on continue it
                prior = Position(prior.generation, prior.gpos, None, 0, b"", prior.seen)
        if why is None:
            self.pos = prior
            self.log(f"{self.db}: resuming generation {prior.generation} at frame {prior.gpos}")
            self._note_downtime(prior)
        else:
            self._new_generation(prior, why)

    def _note_downtime(self, prior: Position) -> None:
        """Commits made while no archiver ran are all in the WAL, but when
        each was made is unknown: the instants in between become a gap."""
        assert self.live is not None
        index = self.live.index()
        if index is None or index.max_frame == 0:
            return
        if self.live.wal_cycle() == prior.cycle and index.max_frame == prior.frame:
            return
        since = max(prior.seen, self.archive.caught_up(self.db, prior.generation) or prior.seen)
        until = datetime.now(UTC)
        why = "commits made while the archiver was not running are archived, their instants unknown"
        self.archive.gap(self.db, prior.generation, since, until, why)
        self.gaps += 1
        self.log(f"{self.db}: {why}: gap recorded")

    @staticmethod
    def _continues(live: LiveDatabase, prior: Position) -> str | None:
        """Why the WAL on disk does not provably continue prior; None when it does."""
        index = live.index()
        cycle = live.wal_cycle()
        lost = "the WAL was checkpointed while the archiver was not running"
        if prior.cycle is None or prior.frame == 0 or index is None:
            return lost
        if cycle != prior.cycle or index.salts != prior.cycle.salts:
            return lost
        if index.max_frame < prior.frame:
            return "the WAL was truncated while the archiver was not running"
        _, salts, cksum = parse_frame(live.read_frames(prior.frame, prior.frame), live.page_size)
        if salts != prior.cycle.salts or cksum != prior.cksum:
            return lost
        return None

    def _untouched_since_stop(self, prior: Position) -> bool:
        """The last capture stopped cleanly at prior and the database file is
        as it left it: whatever the WAL holds now came after."""
        found = self.archive.clean_stop(self.db)
        if found is None:
            return False
        generation, stop = found
        return (generation, stop.gpos) == (prior.generation, prior.gpos) and stop.file == (
            _file_state(self.path)
        )

    def _new_generation(self, prior: Position | None, why: str) -> None:
        assert self.live is not None
        generation = new_generation_id()
        taken, pos = take_base_copy(self.repo, self.source, self.db, self.live, generation)
        self.pos = pos
        if prior is not None:
            self.archive.gap(self.db, generation, prior.seen, pos.seen, why)
            self.gaps += 1
            self.log(f"{self.db}: gap recorded ({why}); new generation {generation}")
        else:
            self.log(f"{self.db}: generation {generation} starts with base copy {taken.id}")

    def close(self, why: str = "the database file was deleted") -> None:
        """Let go of the database; the next poll opens it again, as a new
        generation for `why`."""
        self.closed_because = why
        if self.live is not None:
            self.live.close()
            self.live = None

    # -- shipping ----------------------------------------------------------

    def poll(self) -> int:
        """Ship what was committed since the last poll; the commits shipped."""
        if self.live is None:
            if not self.path.exists():
                return 0
            self._reopen(self.closed_because)
        assert self.live is not None
        why = self.live.changed()
        if why is not None:
            self.close(why)
            cycle = self.pos.cycle if self.pos is not None else None
            if cycle is not None and remove_stale_wal(self.path, cycle.salts):
                self.log(f"{self.db}: removed the WAL the replaced file left behind")
            if self.path.exists():
                self._reopen(why)
            else:
                self.log(f"{self.db}: {why}; waiting for it to come back")
            return 0
        try:
            shipped = self._ship_committed()
            if self._checkpoint_due():
                shipped += self._checkpoint()
        except Discontinuity as e:
            self._restart_generation(str(e))
            return 0
        return shipped

    def _reopen(self, why: str) -> None:
        prior = self.pos
        self.live = LiveDatabase(self.path)
        self.live.hold()
        self._new_generation(prior, why)

    def _restart_generation(self, why: str) -> None:
        assert self.live is not None
        prior = self.pos
        self.live.release()
        self.live.hold()
        self._new_generation(prior, why)

    def _ship_committed(self) -> int:
        assert self.live is not None and self.pos is not None
        index, header = self._read_state()
        seen_us = time.time_ns() // 1000
        if index is None or index.max_frame == 0:
            self._heartbeat(seen_us)
            return 0
        cycle = self._cycle(index, header)
        if index.max_frame < self.pos.frame:
            raise Discontinuity("the WAL was truncated behind the archiver")
        shipped = 0
        while self.pos.frame < index.max_frame:
            shipped += self._ship_batch(cycle, index, seen_us)
        self._heartbeat(seen_us)
        return shipped

    def _read_state(self) -> tuple[WalIndex | None, Cycle | None]:
        """The WAL index and the WAL header, read so that they agree: a writer
        that restarts the WAL between the two reads is waited for."""
        assert self.live is not None
        for _ in range(STATE_READS):
            index, cycle = self.live.index(), self.live.wal_cycle()
            if index is None or index.max_frame == 0:
                return index, cycle
            if cycle is not None and cycle.salts == index.salts:
                return index, cycle
            time.sleep(0.001)
        return index, cycle

    def _cycle(self, index: WalIndex, cycle: Cycle | None) -> Cycle:
        """The WAL cycle of the committed frames, checked against ours."""
        assert self.live is not None and self.pos is not None
        if cycle is None or cycle.salts != index.salts:
            raise Discontinuity("the WAL header does not match its index")
        pos = self.pos
        if pos.cycle is None and pos.frame == 0:
            pass  # no frames were in use when the snapshot began: any first cycle continues it
        elif pos.cycle != cycle:
            if pos.cycle is None or not cycle.follows(pos.cycle):
                raise Discontinuity("the WAL was restarted behind the archiver")
            pos = Position(pos.generation, pos.gpos, cycle, 0, b"", pos.seen)
        self.pos = Position(pos.generation, pos.gpos, cycle, pos.frame, pos.cksum, pos.seen)
        return cycle

    def _ship_batch(self, cycle: Cycle, index: WalIndex, seen_us: int) -> int:
        assert self.live is not None and self.pos is not None
        size = FRAME_HEADER + self.live.page_size
        first = self.pos.frame + 1
        last = min(index.max_frame, first + max(1, MAX_BATCH_BYTES // size) - 1)
        raw = self.live.read_frames(first, last)
        frames, commits, cksum = [], [], b""
        for i in range(last - first + 1):
            frame, salts, cksum = parse_frame(raw[i * size : (i + 1) * size], self.live.page_size)
            if salts != cycle.salts:
                raise Discontinuity("a committed WAL frame has foreign salts")
            frames.append(frame)
            if frame.commit_pages:
                commits.append((i, seen_us))
        if last == index.max_frame and cksum != index.frame_cksum:
            raise Discontinuity("the newest WAL frame does not match the WAL index")
        batch = Batch(self.live.page_size, frames, commits)
        self.pos = self.archive.ship(self.db, self.pos, cycle, batch, cksum)
        self.commits += len(commits)
        self.batches += 1
        return len(commits)

    def _heartbeat(self, seen_us: int) -> None:
        """Everything committed as of seen_us is shipped."""
        assert self.pos is not None
        self._caught_up_us = seen_us
        now = time.monotonic()
        if now - self._beat >= HEARTBEAT_EVERY:
            at = datetime.fromtimestamp(seen_us / 1e6, UTC)
            self.archive.heartbeat(self.db, self.pos.generation, at)
            self._beat = now

    # -- checkpoints -------------------------------------------------------

    def _checkpoint_due(self) -> bool:
        assert self.pos is not None
        if self.pos.frame < self.checkpoint_frames:
            return False
        return time.monotonic() - self._checkpointed >= CHECKPOINT_EVERY

    def _checkpoint(self) -> int:
        """Backfill the WAL so that SQLite can restart it, losing nothing."""
        assert self.live is not None
        self._checkpointed = time.monotonic()
        self.live.checkpoint()  # what our snapshot allows, blocking nobody
        live = self.live
        done = self._backfill_under_write_lock(lambda complete: live.hold())
        return 0 if done is None else done[0]  # None: the application is writing, next time

    def _backfill_under_write_lock(self, then: Callable[[bool], T]) -> tuple[int, T] | None:
        """With the write lock taken for a moment (nothing can be committed
        meanwhile): ship the last frames, let go of our snapshot, backfill
        what the application's readers allow, then call then(complete), still
        under the lock. The commits shipped and what then() gave; None when
        the lock was not free."""
        assert self.live is not None
        try:
            self.live.writer.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return None
        try:
            shipped = self._ship_committed()
            self.live.release()
            _, frames, done = self.live.reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return shipped, then(frames == done)
        finally:
            self.live.writer.execute("ROLLBACK")

    def stop(self) -> None:
        """Ship what is committed, then let go of the database, noting a
        clean stop when the database file holds every shipped frame."""
        if self.live is not None and self.live.changed() is None:
            try:
                self._ship_committed()
                stopped = self._checkpoint_for_stop()
                assert self.pos is not None
                at = datetime.fromtimestamp(self._caught_up_us / 1e6, UTC)
                self.archive.heartbeat(self.db, self.pos.generation, at, stopped)
            except (Discontinuity, sqlite3.Error):
                pass  # the next start finds out and records a gap
        self.close()

    def _checkpoint_for_stop(self) -> CleanStop | None:
        """Every frame shipped and copied into the database file: the file's
        state then, or None if that was not possible (the lock was busy, or
        a reader of the application's held frames back)."""
        pos, path = self.pos, self.path
        assert pos is not None

        def state(complete: bool) -> CleanStop | None:
            return CleanStop(pos.gpos, _file_state(path)) if complete else None

        done = self._backfill_under_write_lock(state)
        return None if done is None else done[1]


def _file_state(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
