"""WAL streaming: what pg_receivewal writes, shipped into the store as it arrives.

The daemon runs pg_receivewal (archiver.postgres.receiver) into a directory
of its own and watches that directory:

- the growing <segment>.partial is stored whenever it changed, at most every
  SHIP_INTERVAL, as a piece (archiver.postgres.walpiece): a restore can
  then replay up to about a second before now instead of up to the last
  completed segment;
- a completed segment is archived under its WAL name exactly as
  archive_command archives it (the same content under the same name is
  one object and one record, so both paths may run), then its pieces are
  removed and the local file too, once a newer segment is there.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from archiver.postgres.receiver import Log, ReceiverSettings, ReceiverSupervisor
from archiver.postgres.slotwatch import SlotWatch
from archiver.postgres.walfile import file_identity
from archiver.postgres.walpiece import drop_pieces, store_piece
from archiver.postgres.walpush import PushResult, push_wal
from archiver.postgres.walwatch import WalPusher
from catalog.repository import Repository
from catalog.wal import PARTIAL_RE, SEGMENT_RE

SHIP_INTERVAL = 0.5


@dataclass
class StreamState:
    """What the streamer has shipped since the daemon started."""

    pieces: int = 0
    segments: int = 0
    errors: int = 0
    newest_piece: str | None = None
    newest_time: datetime | None = None


class WalStreamer:
    """Ships a pg_receivewal directory into the store; push archives a
    completed segment (the WalPusher's, so that its counters count it)."""

    def __init__(
        self,
        repo: Repository,
        source: str,
        directory: str,
        log: Log,
        push: Callable[[str], object] | None = None,
    ) -> None:
        self.repo = repo
        self.source = source
        self.directory = Path(directory)
        self.log = log
        self.push: Callable[[str], object] = push or (lambda path: push_wal(repo, source, path))
        self.state = StreamState()
        self._shipped: dict[str, tuple[int, int, int, int]] = {}  # .partial name -> identity
        self._archived: set[str] = set()
        self._last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pitr-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        self.ship()  # what arrived before pg_receivewal stopped

    def _run(self) -> None:
        # Rounds start SHIP_INTERVAL apart (or back to back when one takes
        # longer): the time a round takes is not added to the wait.
        started = time.monotonic()
        while not self._stop.wait(max(0.0, started + SHIP_INTERVAL - time.monotonic())):
            started = time.monotonic()
            self.ship()

    def ship(self) -> None:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        segments = [n for n in names if SEGMENT_RE.match(n)]
        try:
            for name in segments:
                if name not in self._archived:
                    self._archive(name)
            for name in segments[:-1]:  # the newest stays: pg_receivewal resumes after it
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.directory / name)
            for name in (n for n in names if PARTIAL_RE.match(n)):
                self._ship_partial(name)
            self._last_error = ""
        except Exception as e:  # logged once per new error; tried again next round
            self.state.errors += 1
            if str(e) != self._last_error:
                self.log(f"streaming: {e}")
            self._last_error = str(e)

    def _archive(self, name: str) -> None:
        self.push(str(self.directory / name))
        self._archived.add(name)
        self.state.segments += 1
        drop_pieces(self.repo, self.source, name)
        self._shipped.pop(f"{name}.partial", None)

    def _ship_partial(self, name: str) -> None:
        path = self.directory / name
        try:
            identity = file_identity(path.stat())
        except FileNotFoundError:
            return  # completed meanwhile: shipped as a segment next round
        if self._shipped.get(name) == identity:
            return
        try:
            piece = store_piece(self.repo, self.source, path)
        except FileNotFoundError:
            return  # completed between the stat and the read
        if piece is None:
            return
        self._shipped[name] = piece.identity
        drop_pieces(self.repo, self.source, piece.segment, keep=piece.name)
        self.state.pieces += 1
        self.state.newest_piece = piece.name
        self.state.newest_time = piece.end_time


class StreamingPusher(WalPusher):
    """The look-ahead pusher of a streaming source, with pg_receivewal and
    the streamer beside it: one capture for the daemon."""

    def __init__(
        self,
        repo: Repository,
        source: str,
        pgdata: str,
        mark_tag: str,
        receiver: ReceiverSettings,
        log: Log,
        synchronous: bool = False,
    ) -> None:
        super().__init__(repo, source, pgdata, mark_tag)
        self.receiver = ReceiverSupervisor(receiver, log)
        self.streamer = WalStreamer(repo, source, receiver.directory, log, self._push_streamed)
        self.slot = SlotWatch(receiver.dsn, receiver.slot, synchronous, log)

    def _push_streamed(self, path: str) -> PushResult:
        result = push_wal(self.repo, self.source, path)
        with self.lock:
            self._count(result)
        return result

    def start(self) -> None:
        super().start()
        self.receiver.start()
        self.streamer.start()
        self.slot.start()

    def stop(self) -> None:
        self.slot.stop()
        self.receiver.stop()
        self.streamer.stop()
        super().stop()
