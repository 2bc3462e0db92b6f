"""Hold a synchronous commit until its WAL is in the store, not only on the
receiver's disk.

pg_receivewal acknowledges WAL to the server once it has flushed it to its
own directory; the daemon stores that directory a moment later. With
`synchronous = true` the daemon puts this gate between the two: pg_receivewal
connects to a loopback port of the gate, which passes every byte through
except the receiver's standby status updates, whose write and flush
positions it lowers to what the streamer has stored. When the streamer
stores more, the gate tells the server itself. A commit therefore returns
only once its WAL is in the store, so that losing the whole host except
the database (or the receiver's directory) loses no acknowledged commit.

The gate reads the frontend side of the protocol only, which it can do on
a connection without TLS: it asks pg_receivewal for one (sslmode=disable)
and reaches the server the way the source's dsn does.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from archiver.postgres.receiver import Log

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
STATUS = struct.Struct(">cQQQqB")  # 'r', write, flush, apply, clock (µs since 2000), reply
PG_EPOCH = 946684800  # 2000-01-01 in Unix seconds
TLS_MODES = ("require", "verify-ca", "verify-full")


def gate_refusal(dsn: str) -> str | None:
    """Why the gate cannot sit on this source's connection, or None."""
    from psycopg.conninfo import conninfo_to_dict

    mode = str(conninfo_to_dict(dsn).get("sslmode") or "")
    if mode in TLS_MODES:
        return f"the dsn asks for TLS (sslmode={mode}), which the gate cannot read"
    return None


@dataclass(eq=False)  # kept in a set by identity
class _Link:
    """One connection of pg_receivewal, passed through to the server."""

    client: socket.socket
    server: socket.socket
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    reported: tuple[int, int, int] | None = None  # the receiver's write, flush, apply
    told_flush: int = 0  # the flush position the server was last told

    def to_server(self, data: bytes) -> None:
        with self.send_lock:
            self.server.sendall(data)

    def close(self) -> None:
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.close()


class AckGate:
    """The loopback gate; `stored(lsn)` is called by the streamer."""

    def __init__(self, dsn: str, log: Log) -> None:
        self.dsn = dsn
        self.log = log
        self.wake = threading.Event()  # the receiver holds WAL not stored yet
        self._lock = threading.Lock()
        self._stored = 0
        self._received = 0
        self._links: set[_Link] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._upstream: tuple[int, str | tuple[Any, ...]] | None = None
        self._last_error = ""
        self._closed = False

    def receiver_dsn(self) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            self.dsn,
            host="127.0.0.1",
            hostaddr="127.0.0.1",
            port=str(self.port),
            sslmode="disable",
            gssencmode="disable",
        )

    def start(self) -> None:
        threading.Thread(target=self._accept, name="pitr-ackgate", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()

    def received(self) -> int:
        """The newest flush position the receiver has reported."""
        with self._lock:
            return self._received

    def stored(self, lsn: int) -> None:
        """WAL up to lsn is in the store: tell the server what it may now count."""
        with self._lock:
            if lsn <= self._stored:
                return
            self._stored = lsn
            links = list(self._links)
        for link in links:
            if link.reported is not None and link.reported[1] > link.told_flush:
                with contextlib.suppress(OSError):  # a link going away: its reader closes it
                    self._tell(link, *link.reported, _clock())

    def _tell(
        self, link: _Link, write: int, flush: int, apply: int, clock: int, reply: int = 0
    ) -> None:
        held = self._stored
        told = (min(write, held), min(flush, held), min(apply, held))
        link.told_flush = told[1]
        body = STATUS.pack(b"r", *told, clock, reply)
        link.to_server(b"d" + struct.pack(">I", len(body) + 4) + body)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            family, address = self._upstream or self._resolve()
            server = socket.socket(family, socket.SOCK_STREAM)
            server.connect(address)
        except OSError as e:
            self._say(f"synchronous gate: cannot reach the server: {e}")
            client.close()
            return
        link = _Link(client, server)
        with self._lock:
            self._links.add(link)
        threading.Thread(target=self._pass_back, args=(link,), daemon=True).start()
        try:
            self._pass_on(link)
        except (OSError, EOFError):
            pass
        finally:
            with self._lock:
                self._links.discard(link)
            link.close()

    def _resolve(self) -> tuple[int, str | tuple[Any, ...]]:
        """Where the source's dsn reaches the server: asked of libpq, which
        knows the defaults (socket directory, port) a dsn may leave out."""
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=10) as conn:
                host, port = conn.info.host, conn.info.port
        except psycopg.Error as e:
            raise OSError(str(e).strip().splitlines()[0]) from None
        if host.startswith("/"):
            self._upstream = (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
        else:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            self._upstream = (info[0], info[4])
        return self._upstream

    def _pass_back(self, link: _Link) -> None:
        """The server's side, byte for byte."""
        try:
            while data := link.server.recv(1 << 16):
                link.client.sendall(data)
        except OSError:
            pass
        link.close()

    def _pass_on(self, link: _Link) -> None:
        """The receiver's side, message by message, status updates lowered."""
        reader = link.client.makefile("rb")
        while True:  # the startup phase: untyped messages
            head = _read(reader, 8)
            length, code = struct.unpack(">II", head)
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                link.client.sendall(b"N")  # no encryption: the gate must read it
                continue
            link.to_server(head + _read(reader, length - 8))
            break
        while True:
            head = _read(reader, 5)
            body = _read(reader, struct.unpack(">I", head[1:])[0] - 4)
            if head[:1] == b"d" and len(body) == STATUS.size and body[:1] == b"r":
                _, write, flush, apply, clock, reply = STATUS.unpack(body)
                link.reported = (write, flush, apply)
                with self._lock:
                    self._received = max(self._received, flush)
                    behind = flush > self._stored
                if behind:
                    self.wake.set()
                self._tell(link, write, flush, apply, clock, reply)
            else:
                link.to_server(head + body)

    def _say(self, line: str) -> None:
        if line != self._last_error:
            self.log(line)
        self._last_error = line


def _read(reader: BinaryIO, n: int) -> bytes:
    data = reader.read(n)
    if len(data) < n:
        raise EOFError
    return data


def _clock() -> int:
    return int((time.time() - PG_EPOCH) * 1_000_000)
