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
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from archiver.postgres.ackgate import AckGate, gate_refusal
from archiver.postgres.receiver import Log, ReceiverSettings, ReceiverSupervisor
from archiver.postgres.slotwatch import SlotWatch
from archiver.postgres.walfile import file_identity
from archiver.postgres.walpiece import drop_pieces, store_piece
from archiver.postgres.walpush import PushResult, push_wal
from archiver.postgres.walwatch import WalPusher
from catalog.repository import Repository
from catalog.wal import LONG_HEADER, PARTIAL_RE, SEGMENT_RE

SHIP_INTERVAL = 0.5
SETTLED_NS = 50_000_000  # a file's mtime can lag a write by a clock tick


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
        gate: AckGate | None = None,
    ) -> None:
        self.repo = repo
        self.gate = gate
        self.source = source
        self.directory = Path(directory)
        self.log = log
        self.push: Callable[[str], object] = push or (lambda path: push_wal(repo, source, path))
        self.state = StreamState()
        # .partial name -> (identity when stored, when that read began, ns)
        self._shipped: dict[str, tuple[tuple[int, int, int, int], int]] = {}
        self._archived: set[str] = set()
        self._last_error = ""
        self._stop = threading.Event()
        # A synchronous gate wakes the streamer as soon as the receiver holds
        # WAL that is not stored: a commit is waiting for it.
        self._wake = gate.wake if gate is not None else threading.Event()
        self._thread = threading.Thread(target=self._run, name="pitr-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(60)
        self.ship_round()  # what arrived before pg_receivewal stopped

    def _run(self) -> None:
        # Rounds start SHIP_INTERVAL apart (or back to back when one takes
        # longer): the time a round takes is not added to the wait.
        started = time.monotonic()
        while True:
            self._wake.wait(max(0.0, started + SHIP_INTERVAL - time.monotonic()))
            if self._stop.is_set():
                return
            self._wake.clear()
            started = time.monotonic()
            self.ship_round()

    def ship_round(self) -> None:
        """Ship, then tell the gate: what the receiver had flushed before the
        round began was in its files when the round read them."""
        flushed = self.gate.received() if self.gate is not None else 0
        if self.ship() and self.gate is not None:
            self.gate.stored(flushed)

    def ship(self) -> bool:
        """Store what the directory holds; True when all of it is stored."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return True
        segments = [n for n in names if SEGMENT_RE.match(n)]
        try:
            for name in segments:
                if name not in self._archived:
                    self._archive(name)
            for name in segments[:-1]:  # the newest stays: pg_receivewal resumes after it
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.directory / name)
            complete = all([self._ship_partial(n) for n in names if PARTIAL_RE.match(n)])
            self._last_error = ""
            return complete
        except Exception as e:  # logged once per new error; tried again next round
            self.state.errors += 1
            if str(e) != self._last_error:
                self.log(f"streaming: {e}")
            self._last_error = str(e)
            return False

    def _archive(self, name: str) -> None:
        self.push(str(self.directory / name))
        self._archived.add(name)
        self.state.segments += 1
        drop_pieces(self.repo, self.source, name)
        self._shipped.pop(f"{name}.partial", None)

    def _ship_partial(self, name: str) -> bool:
        """Store the .partial file; False when what it holds is not stored yet."""
        path = self.directory / name
        try:
            identity = file_identity(path.stat())
        except FileNotFoundError:
            return False  # completed meanwhile: shipped as a segment next round
        shipped = self._shipped.get(name)
        # The same identity says "unchanged" only for a file last written well
        # before it was read: a write in the same clock tick as the read
        # leaves mtime as it was.
        if shipped is not None and shipped[0] == identity and shipped[1] > identity[3] + SETTLED_NS:
            return True
        read_at = time.time_ns()
        try:
            piece = store_piece(self.repo, self.source, path)
        except FileNotFoundError:
            return False  # completed between the stat and the read
        if piece is None:
            return not _holds_wal(path)  # written but not settled: next round
        self._shipped[name] = (piece.identity, read_at)
        drop_pieces(self.repo, self.source, piece.segment, keep=piece.name)
        self.state.pieces += 1
        self.state.newest_piece = piece.name
        self.state.newest_time = piece.end_time
        return True


def _holds_wal(path: Path) -> bool:
    """Whether a .partial file has anything written (not only preallocated)."""
    try:
        with open(path, "rb") as f:
            return any(f.read(LONG_HEADER))
    except FileNotFoundError:
        return True  # completed meanwhile: not stored yet


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
        dsn = receiver.dsn
        self.gate = _synchronous_gate(receiver, log) if synchronous else None
        if self.gate is not None:
            receiver = replace(receiver, dsn=self.gate.receiver_dsn())
        self.receiver = ReceiverSupervisor(receiver, log)
        self.streamer = WalStreamer(
            repo, source, receiver.directory, log, self._push_streamed, self.gate
        )
        self.slot = SlotWatch(dsn, receiver.slot, synchronous, log)

    def _push_streamed(self, path: str) -> PushResult:
        result = push_wal(self.repo, self.source, path)
        with self.lock:
            self._count(result)
        return result

    def start(self) -> None:
        super().start()
        if self.gate is not None:
            self.gate.start()
        self.receiver.start()
        self.streamer.start()
        self.slot.start()

    def stop(self) -> None:
        self.slot.stop()
        self.receiver.stop()
        self.streamer.stop()
        if self.gate is not None:
            self.gate.close()
        super().stop()


def _synchronous_gate(receiver: ReceiverSettings, log: Log) -> AckGate | None:
    why = gate_refusal(receiver.dsn)
    if why is None:
        return AckGate(receiver.dsn, log)
    log(
        f"synchronous = true: {why}; commits return once they are on pg_receivewal's "
        f"disk in {receiver.directory}, before they are in the store"
    )
    return None
