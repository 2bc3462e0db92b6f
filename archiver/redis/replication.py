"""Whole-keyspace capture through Redis's replication protocol.

pitr connects as a replica would (PING, REPLCONF, PSYNC), stores the RDB the
server sends on a full resync as the base of a new epoch, then stores the
propagated command stream as it arrives, raw, in batches:

  records/<source>/repl-epochs/<replid>-<offset>        an epoch: its base RDB chunks
  records/<source>/repl/<replid>-<offset>/<start:020d>  a batch: bytes start..end

A batch carries its arrival instants as (end offset, ms) pairs, one each time
the millisecond changes, so a restore can cut between commands. An offset is
acknowledged (REPLCONF ACK) only once its batch and record are durable.
After a disconnect the capture asks PSYNC <replid> <offset>; +CONTINUE goes on
in the same epoch (the outage is recorded in the next batch as
`resumed_from_ms`), +FULLRESYNC starts a new epoch.

The records (catalog.replication) are written unprojected: the capture never
commits catalog rows itself. A batch goes out every 150 ms, and a catalog
commit each time would put the catalog database on the hot path and stall
acknowledgements behind its lock; the daemon's catch-up (every 15 s) and
every command that reads the catalog project them from the journal instead.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from archiver.errors import BadInput, SourceUnreachable
from catalog.redisformat import resp
from catalog.replication import (
    ReplBatchRecord,
    ReplEpochRecord,
    batches_prefix,
    epoch_name,
    epochs_prefix,
)
from catalog.repository import Repository

BATCH_MS = 150  # cut a batch after this much arrival time
BATCH_BYTES = 4 << 20
BASE_CHUNK = 4 << 20
ACK_SECONDS = 1.0
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 0.05  # the socket wakes this often to cut batches on time


class ReplicationRefused(SourceUnreachable):
    """The server will not serve a replica (no PSYNC right, managed service)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ReplSocket:
    """A buffered socket speaking the replica side of the protocol."""

    def __init__(self, url: str, what: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "") or not parts.hostname:
            raise BadInput(f"{what}: {parts.scheme}:// is not a redis:// url")
        self.what = what
        try:
            self.sock = socket.create_connection(
                (parts.hostname, parts.port or 6379), timeout=CONNECT_TIMEOUT
            )
        except OSError as e:
            raise SourceUnreachable(f"{what}: cannot connect to redis: {e}") from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        if parts.password:
            user = unquote(parts.username) if parts.username else None
            auth = ["AUTH", user, unquote(parts.password)] if user else ["AUTH", parts.password]
            self.command(*auth)

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    def line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        out = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return out

    def command(self, *args: str) -> bytes:
        """Send a command, return its one-line reply; an error reply raises."""
        self.send(resp(*args))
        reply = self.line()
        if reply.startswith(b"-"):
            text = reply[1:].decode(errors="replace")
            if "NOPERM" in text or "NOAUTH" in text or "WRONGPASS" in text:
                raise ReplicationRefused(f"{self.what}: redis refused {args[0]}: {text}")
            raise SourceUnreachable(f"{self.what}: redis refused {args[0]}: {text}")
        return reply

    def read_payload(self, sink: Callable[[bytes], None]) -> None:
        """The RDB after +FULLRESYNC: `$<len>` or diskless `$EOF:<mark>`,
        after any newlines the server sends while it prepares it."""
        while True:
            while not self.buf:
                self._fill()
            if self.buf[:1] == b"\n":
                del self.buf[:1]
                continue
            break
        head = self.line()
        if head.startswith(b"$EOF:"):
            self._until_mark(head[5:], sink)
            return
        left = int(head[1:])
        while left:
            if not self.buf:
                self._fill()
            take = bytes(self.buf[:left])
            del self.buf[: len(take)]
            left -= len(take)
            sink(take)

    def _until_mark(self, mark: bytes, sink: Callable[[bytes], None]) -> None:
        n = len(mark)
        while True:
            if (i := self.buf.find(mark)) >= 0:
                sink(bytes(self.buf[:i]))
                del self.buf[: i + n]
                return
            keep = max(0, len(self.buf) - n)  # the mark may straddle two reads
            if keep:
                sink(bytes(self.buf[:keep]))
                del self.buf[:keep]
            self._fill()


@dataclass
class ReplStats:
    epochs: int = 0
    batches: int = 0
    bytes: int = 0
    resumes: int = 0


@dataclass
class _Batch:
    start: int
    data: bytearray = field(default_factory=bytearray)
    marks: list[tuple[int, int]] = field(default_factory=list)  # (end offset, arrival ms)
    opened_ms: int = 0


class ReplicationCapture:
    """Run with run(stop) in a thread or the foreground until stop is set."""

    def __init__(
        self,
        repo: Repository,
        source: str,
        url: str,
        *,
        batch_ms: int = BATCH_MS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.repo = repo
        self.source = source
        self.url = url
        self.batch_ms = batch_ms
        self.log = log or (lambda _m: None)
        self.what = f"capture {source}"
        self.stats = ReplStats()
        self.replid = ""
        self.epoch = ""
        self.offset = -1  # the next stream byte's replication offset
        self.durable = -1
        self._lost_ms: int | None = None  # when the connection was lost

    def resume_point(self) -> None:
        """Continue after the newest stored batch of the newest epoch, so that
        a restarted archiver asks PSYNC to continue instead of a full resync."""
        found = [
            ReplEpochRecord.from_json(self.repo.get_record(key))
            for key in self.repo.list_records(epochs_prefix(self.source))
        ]
        if not found:
            return
        newest = max(found, key=lambda e: e.base_ms)
        self.epoch, self.replid = newest.epoch, newest.replid
        self.durable = newest.offset
        self._lost_ms = newest.base_ms
        last = max(self.repo.list_records(batches_prefix(self.source, self.epoch)), default=None)
        if last is not None:
            batch = ReplBatchRecord.from_json(self.repo.get_record(last))
            self.durable, self.replid = batch.end, batch.replid or self.replid
            self._lost_ms = batch.last_ms
        self.offset = self.durable  # the outage began after what was last stored

    def run(self, stop: threading.Event) -> ReplStats:
        from catalog.queries import ensure_source

        with self.repo.catalog.session() as session:  # so that the reports list it
            ensure_source(session, self.source, "redis")
        self.resume_point()
        backoff = 0.2
        while not stop.is_set():
            conn: ReplSocket | None = None
            try:
                conn = ReplSocket(self.url, self.what)
                self._handshake(conn)
                backoff = 0.2
                self._follow(conn, stop)
            except ReplicationRefused:
                raise
            except (SourceUnreachable, OSError, ConnectionError) as e:
                self._lost_ms = self._lost_ms or now_ms()
                self.log(f"{self.what}: lost the replication link: {e}; retrying in {backoff:g}s")
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if conn is not None:
                    conn.close()
        return self.stats

    def _handshake(self, conn: ReplSocket) -> None:
        conn.command("PING")
        conn.command("REPLCONF", "listening-port", str(conn.sock.getsockname()[1]))
        conn.command("REPLCONF", "capa", "eof", "capa", "psync2")
        self.offset = self.durable  # resume after what is stored, not merely received
        # PSYNC names the first byte wanted: one past the last one stored.
        ask = (self.replid, str(self.offset + 1)) if self.replid else ("?", "-1")
        reply = conn.command("PSYNC", *ask).decode().lstrip("\n")  # keepalive newlines
        if reply.startswith("+FULLRESYNC"):
            _, replid, offset = reply.split()
            self._new_epoch(conn, replid, int(offset))
        elif reply.startswith("+CONTINUE"):
            words = reply.split()
            if len(words) > 1:
                self.replid = words[1]  # the server changed id (a failover); offsets go on
            self.stats.resumes += 1
            self.log(f"{self.what}: resumed at offset {self.offset}")
        else:
            raise ReplicationRefused(f"{self.what}: redis answered PSYNC with {reply!r}")

    def _new_epoch(self, conn: ReplSocket, replid: str, offset: int) -> None:
        started = now_ms()
        chunks: list[str] = []
        pending = bytearray()
        size = 0

        def sink(data: bytes) -> None:
            nonlocal size
            pending.extend(data)
            size += len(data)
            while len(pending) >= BASE_CHUNK:
                chunks.append(self.repo.put_chunk(bytes(pending[:BASE_CHUNK])).oid)
                del pending[:BASE_CHUNK]

        conn.read_payload(sink)
        if pending:
            chunks.append(self.repo.put_chunk(bytes(pending)).oid)
        epoch = epoch_name(replid, offset)
        record = ReplEpochRecord(
            self.source,
            epoch=epoch,
            replid=replid,
            offset=offset,
            base_chunks=chunks,
            base_size=size,
            started_ms=started,
            base_ms=now_ms(),
            previous=self.epoch or None,
            lost_ms=self._lost_ms,
        )
        self.repo.put_fact(record, projected=False)
        self.replid, self.epoch, self.offset, self.durable = replid, epoch, offset, offset
        self._lost_ms = None
        self.stats.epochs += 1
        self.log(f"{self.what}: new epoch {epoch}, base of {size} bytes")
        conn.send(resp("REPLCONF", "ACK", offset))

    def _follow(self, conn: ReplSocket, stop: threading.Event) -> None:
        conn.sock.settimeout(READ_TIMEOUT)
        batch = _Batch(self.offset)
        if conn.buf:  # stream bytes that came with the end of the RDB
            self._take(batch, bytes(conn.buf))
            conn.buf.clear()
        acked_at = time.monotonic()
        while not stop.is_set():
            try:
                data = conn.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("the server closed the connection")
                self._take(batch, data)
                getack = b"GETACK" in data
            except TimeoutError:
                getack = False
            except OSError:
                self._ship(batch)  # what arrived is good: keep it
                raise
            due = batch.data and now_ms() - batch.opened_ms >= self.batch_ms
            if getack or due or len(batch.data) >= BATCH_BYTES:
                batch = self._ship(batch)
                conn.send(resp("REPLCONF", "ACK", self.durable))
                acked_at = time.monotonic()
            elif time.monotonic() - acked_at >= ACK_SECONDS:
                conn.send(resp("REPLCONF", "ACK", self.durable))
                acked_at = time.monotonic()
        self._ship(batch)

    def _take(self, batch: _Batch, data: bytes) -> None:
        ms = now_ms()
        if not batch.data:
            batch.opened_ms = ms
        batch.data += data
        self.offset += len(data)
        if batch.marks and batch.marks[-1][1] == ms:
            batch.marks[-1] = (self.offset, ms)
        else:
            batch.marks.append((self.offset, ms))

    def _ship(self, batch: _Batch) -> _Batch:
        """Store the batch and its record; then its end offset is durable."""
        if batch.data:
            chunk = self.repo.put_chunk(bytes(batch.data))
            end = batch.start + len(batch.data)
            record = ReplBatchRecord(
                self.source,
                epoch=self.epoch,
                replid=self.replid,
                start=batch.start,
                end=end,
                first_ms=batch.marks[0][1],
                last_ms=batch.marks[-1][1],
                oid=chunk.oid,
                size=chunk.size,
                marks=[list(m) for m in batch.marks],
                resumed_from_ms=self._lost_ms,
            )
            self.repo.put_fact(record, projected=False)
            self._lost_ms = None
            self.durable = end
            self.stats.batches += 1
            self.stats.bytes += len(batch.data)
        return _Batch(self.offset)
