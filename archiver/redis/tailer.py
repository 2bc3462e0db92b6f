"""The Redis stream tailer: follows every stream matching the source's
patterns and ships their entries, in batches, into the repository.

Each round reads, in one MULTI transaction, the server's TIME, XINFO STREAM
of every followed stream and a non-blocking XREAD from the last read IDs;
when nothing came, a blocking XREAD waits for the next entry. Reading the
stream's state and its entries atomically is what makes gaps detectable
(archiver.redis.gaps holds the rules).

A batch closes by count or age and becomes one object, then a record
(records/<source>/streams/<hex name>/<first id>), then a StreamBatch row; a
stream that is behind stores its full batches GROUP at a time
(StreamArchive.ship), which is where a backlog's time goes otherwise. The
position to resume from is the newest batch in the catalog, so a restart
loses nothing and ships nothing twice; a record found already stored under
the same first ID (a crash between record and row) is adopted as it is.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from archiver.errors import BadInput, SourceUnreachable
from archiver.redis.archive import GROUP, StreamArchive
from archiver.redis.gaps import StreamState, check_stream
from catalog.redisformat import (
    connect,
    format_id,
    parse_id,
    stream_label,
    time_reply_ms,
)
from catalog.repository import Repository

BATCH_COUNT = 1000
BATCH_SECONDS = 1.0
BLOCK_MS = 500
DISCOVER_SECONDS = 2.0
HEARTBEAT_SECONDS = 1.0


@dataclass
class TailStats:
    batches: int = 0
    entries: int = 0
    gaps: int = 0
    streams: int = 0


class StreamTailer:
    """Run with run(stop_event) in a thread or the foreground until stop is set."""

    def __init__(
        self,
        repo: Repository,
        source: str,
        url: str,
        patterns: Iterable[str],
        *,
        batch_count: int = BATCH_COUNT,
        batch_seconds: float = BATCH_SECONDS,
        block_ms: int = BLOCK_MS,
        discover_seconds: float = DISCOVER_SECONDS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.repo = repo
        self.source = source
        self.url = url
        self.patterns = list(patterns)
        self.batch_count = batch_count
        self.batch_seconds = batch_seconds
        self.block_ms = block_ms
        self.discover_seconds = discover_seconds
        self.log = log or (lambda _msg: None)
        self.stats = TailStats()
        self.streams: dict[bytes, StreamState] = {}
        self.client: Any = None
        self.archive = StreamArchive(repo, source)
        self._next_discover = 0.0
        self._discovered_ms: int | None = None
        self._drained_ms: int | None = None
        self._beat_written: int | None = None
        self._beat_at = 0.0

    # -- the loop ----------------------------------------------------------------

    def run(self, stop: threading.Event) -> TailStats:
        import redis

        self._load_positions()
        backoff = 0.2
        while not stop.is_set():
            try:
                self.client = connect(
                    self.url,
                    f"tail {self.source}",
                    unreachable=SourceUnreachable,
                    bad_url=BadInput,
                    socket_timeout=self.block_ms / 1000 + 10,
                )
                # Raw XREAD replies keep repeated field names and their order.
                self.client.set_response_callback("XREAD", lambda r, **_: r)
                self._next_discover = 0.0
                backoff = 0.2
                self._loop(stop)
            except (
                SourceUnreachable,
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
            ) as e:
                self._flush(force=True)  # what was read is still good
                what = (
                    e
                    if isinstance(e, SourceUnreachable)
                    else f"tail {self.source}: lost the connection to redis: {e}"
                )
                self.log(f"{what}; retrying in {backoff:g}s")
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if self.client is not None:
                    self.client.close()
                    self.client = None
        try:
            self._flush(force=True)
            self._heartbeat(force=True)
        finally:
            self.archive.close()
        self.stats.streams = len(self.streams)
        return self.stats

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if time.monotonic() >= self._next_discover:
                self._discover()
                self._next_discover = time.monotonic() + self.discover_seconds
            got = self._read_round()
            self._flush()
            self._heartbeat()
            if not got and not stop.is_set():
                self._wait(stop)

    def _discover(self) -> None:
        start_ms = time_reply_ms(self.client.time())
        for pattern in self.patterns:
            for key in self.client.scan_iter(match=pattern, count=1000, _type="stream"):
                if key not in self.streams:
                    self.streams[key] = StreamState(key)
                    self.log(f"tail {self.source}: following {stream_label(key)}")
        self._discovered_ms = start_ms

    def _read_round(self) -> int:
        """One atomic look at every stream; returns how many entries came."""
        streams = list(self.streams.values())
        readable = [s for s in streams if not s.wrong_type]
        replies = self._look(streams, readable)
        now_ms = time_reply_ms(replies[0])
        got, drained = _read_reply(replies[-1]) if readable else ({}, True)
        total = 0
        for s, info in zip(streams, replies[1 : 1 + len(streams)], strict=True):
            taken, caught_up = self._take(s, info, got.get(s.name, []))
            total += taken
            drained = drained and caught_up
        if drained:
            self._drained_ms = now_ms - 1
        return total

    def _look(self, streams: list[StreamState], readable: list[StreamState]) -> list[Any]:
        """The server's time, XINFO of every stream and XREAD of the readable
        ones, in one transaction; errors come back in place of their reply."""
        tx = self.client.pipeline(transaction=True)
        tx.time()
        for s in streams:
            tx.xinfo_stream(s.name)
        if readable:
            ids = [format_id(s.read) for s in readable]
            tx.execute_command(
                "XREAD", "COUNT", self.batch_count, "STREAMS", *[s.name for s in readable], *ids
            )
        return list(tx.execute(raise_on_error=False))

    def _take(self, s: StreamState, info: Any, entries: list[Any]) -> tuple[int, bool]:
        """Buffer what one stream gave this round: how many entries, and
        whether the stream has nothing more to read right now."""
        if isinstance(info, Exception):
            _mark_unreadable(s, info)
            return 0, True
        s.wrong_type = False
        if not check_stream(s, info, entries, self._flush_stream, self._gap):
            return 0, False  # its position was reset: read it again next round
        if entries:
            # Entries are kept as XREAD gave them ([id, [name, value, ...]]):
            # nothing is done per entry until the batch is encoded.
            s.buffer.extend(entries)
            s.read = parse_id(entries[-1][0])
            s.history = True
        if s.buffer and not s.opened:
            s.opened = time.monotonic()
        caught_up = len(entries) < self.batch_count
        s.behind = not caught_up
        if caught_up:
            s.counter = s.added  # read up to the stream's end: in step with it
        elif s.counter is not None:
            s.counter += len(entries)
        return len(entries), caught_up

    def _wait(self, stop: threading.Event) -> None:
        """Block until an entry arrives, a batch is due or it is time to look again."""
        timeout = self.block_ms / 1000
        now = time.monotonic()
        for s in self.streams.values():
            if s.buffer:
                timeout = min(timeout, s.opened + self.batch_seconds - now)
        timeout = min(timeout, self._next_discover - now)
        block = max(1, int(timeout * 1000))
        names = [s for s in self.streams.values() if not s.wrong_type]
        if not names:
            stop.wait(block / 1000)
            return
        self.client.execute_command(
            "XREAD",
            "BLOCK",
            block,
            "COUNT",
            1,
            "STREAMS",
            *[s.name for s in names],
            *[format_id(s.read) for s in names],
        )

    # -- shipping ------------------------------------------------------------------

    def _flush(self, force: bool = False) -> None:
        """Ship the batches that are due: full ones, and all of a stream's
        buffer once its first entry is batch_seconds old. A stream still
        behind (its last read was full) keeps its full batches until it has
        GROUP of them, stored together (see StreamArchive.ship)."""
        now = time.monotonic()
        for s in self.streams.values():
            if not s.buffer:
                continue
            if force or now - s.opened >= self.batch_seconds:
                self._flush_stream(s)
            elif len(s.buffer) >= (self.batch_count * GROUP if s.behind else self.batch_count):
                self._flush_stream(s, whole=False)

    def _flush_stream(self, s: StreamState, whole: bool = True) -> None:
        """Ship the stream's buffer, or (not whole) its full batches only."""
        while len(s.buffer) >= (1 if whole else self.batch_count):
            cut = len(s.buffer) if whole else len(s.buffer) // self.batch_count * self.batch_count
            rest = s.buffer[cut:]
            added = None if s.counter is None else s.counter - len(rest)
            facts, leftover = self.archive.ship(s.name, s.buffer[:cut], added, self.batch_count)
            s.shipped = parse_id(facts[-1].last_id)
            s.read = max(s.read, s.shipped)
            if rest and parse_id(rest[0][0]) <= s.shipped:  # an adopted batch holds them
                rest = [e for e in rest if parse_id(e[0]) > s.shipped]
            s.buffer = leftover + rest
            if leftover:
                s.opened = time.monotonic()
            elif not s.buffer:
                s.opened = 0.0
            self.stats.batches += len(facts)
            self.stats.entries += sum(f.count for f in facts)

    def _gap(self, s: StreamState, from_id: str, to_id: str, detail: str) -> None:
        if self.archive.gap(s.name, from_id, to_id, detail):
            self.stats.gaps += 1
            self.log(f"tail {self.source}: gap in {s.label}: {detail}")

    def _heartbeat(self, force: bool = False) -> None:
        """Remember up to which instant every entry is archived (for RPO)."""
        if self._drained_ms is None or self._discovered_ms is None:
            return
        caught = min(self._drained_ms, self._discovered_ms)
        for s in self.streams.values():
            if s.buffer:
                caught = min(caught, parse_id(s.buffer[0][0])[0] - 1)
        if self._beat_written is not None and caught <= self._beat_written:
            return
        if not force and time.monotonic() - self._beat_at < HEARTBEAT_SECONDS:
            return
        self.archive.heartbeat(caught)
        self._beat_written = caught
        self._beat_at = time.monotonic()

    # -- state -----------------------------------------------------------------------

    def _load_positions(self) -> None:
        """Resume each stream after its newest archived batch (streams that
        no longer match the patterns are left alone)."""
        for name, (pos, counter) in self.archive.positions().items():
            if not any(glob_match(p, name) for p in self.patterns):
                continue
            s = self.streams.setdefault(name, StreamState(name))
            s.shipped = s.read = pos
            s.counter = counter
            s.history = True


def _read_reply(reply: Any) -> tuple[dict[bytes, list[Any]], bool]:
    """The entries of an XREAD reply by stream, and False when the read
    failed because a name changed type (XINFO tells which)."""
    if not isinstance(reply, Exception):
        return dict(_pairs(reply)), True
    if "wrongtype" in str(reply).lower():
        return {}, False
    raise reply


def _mark_unreadable(s: StreamState, error: Exception) -> None:
    """Note a stream XINFO could not describe: gone, or no longer a stream."""
    text = str(error).lower()
    if "no such key" not in text and "wrongtype" not in text:
        raise error
    s.missing = True
    s.wrong_type = "wrongtype" in text


def _pairs(reply: Any) -> Iterable[tuple[bytes, list[Any]]]:
    """XREAD's reply as (stream, entries) pairs, for RESP2 lists and RESP3 maps."""
    if reply is None:
        return []
    if isinstance(reply, dict):
        return list(reply.items())
    return [(name, entries) for name, entries in reply]


def glob_match(pattern: str, name: bytes) -> bool:
    """Redis's MATCH glob (close enough: fnmatch spells [^x] as [!x])."""
    return fnmatch.fnmatchcase(name, pattern.replace("[^", "[!").encode())
