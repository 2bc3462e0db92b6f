"""A redis-server of pitr's own for a restore, and the replication link
through which pitr, playing its master, feeds it a base and captured writes.

Why a replica: a replica never expires keys by itself, it keeps the keys of
an RDB whose expiry has passed, and the commands its master sends see those
keys as alive. So every captured write replays as it did on the source,
whatever the clock says now (an INCR on a key whose TTL has since run out
still adds to it). Before the server is promoted, a script run as the master
deletes, in each database, the keys expired at the target and moves every
other expiry forward by the same amount: the TTL each key had left at the
target then survives until it is copied.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from typing import Any

from catalog.children import die_with_parent
from catalog.redisformat import resp
from catalog.scratchdir import ScratchDir
from recovery.errors import RecoveryError

LINK_TIMEOUT = 600.0  # seconds a step of the link may take before the restore fails
SHIFT_MARGIN_MS = 10 * 365 * 86_400_000  # moved expiries lie this far past now

# ARGV: the target (ms) and how far to move expiries. Runs as the master, so
# SCAN and PEXPIRETIME see keys that are logically expired.
SHIFT_EXPIRIES = """
local target, shift = tonumber(ARGV[1]), tonumber(ARGV[2])
local cursor, moved = "0", 0
repeat
  local page = redis.call("SCAN", cursor, "COUNT", 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    local at = redis.call("PEXPIRETIME", key)
    if at >= 0 then
      if at <= target then redis.call("DEL", key)
      else redis.call("PEXPIREAT", key, at + shift) end
      moved = moved + 1
    end
  end
until cursor == "0"
return moved
"""


class ScratchRedis:
    """An empty redis-server in a temp dir, reachable on a unix socket only;
    it accepts a master only with the secret it was started with."""

    def __init__(self) -> None:
        import redis

        self.scratch = ScratchDir("pitr-replay-")
        self.dir = self.scratch.path
        self.secret = secrets.token_hex(16)
        sock = self.dir / "redis.sock"
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "-"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGKILL),  # no scratch server outlives its restore
        )  # fmt: skip
        # The config on stdin keeps the secret off the process list.
        settings = {
            "port": "0", "unixsocket": str(sock), "dir": str(self.dir), "save": '""',
            "appendonly": "no", "logfile": str(self.dir / "redis.log"),
            "masterauth": self.secret, "repl-diskless-load": "on-empty-db",
            "repl-timeout": str(int(LINK_TIMEOUT)),
        }  # fmt: skip
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{k} {v}\n" for k, v in settings.items()).encode())
        self.proc.stdin.close()
        self.client: Any = redis.Redis(unix_socket_path=str(sock), socket_timeout=LINK_TIMEOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client.ping():
                    break
            except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RecoveryError("replay: the scratch redis-server did not start") from None
                time.sleep(0.02)

    def close(self) -> None:
        self.client.close()
        self.proc.kill()
        self.proc.wait(30)
        self.scratch.remove()


class MasterLink:
    """pitr as the master of a scratch server: a loopback port that serves
    one replica, the one that authenticates with the scratch server's secret."""

    def __init__(self, scratch: ScratchRedis) -> None:
        self.scratch = scratch
        self.sent = 0  # command bytes after the base: the replica's offset
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(LINK_TIMEOUT)
        try:
            port = listener.getsockname()[1]
            scratch.client.execute_command("REPLICAOF", "127.0.0.1", port)
            self.sock, self.reader = self._accept(listener)
        finally:
            listener.close()

    def _accept(self, listener: socket.socket) -> tuple[socket.socket, Any]:
        while True:
            conn, _ = listener.accept()
            conn.settimeout(LINK_TIMEOUT)
            reader = conn.makefile("rb")
            if self._handshake(conn, reader):
                return conn, reader
            conn.close()  # not our replica

    def _handshake(self, conn: socket.socket, reader: Any) -> bool:
        """Answer the replica's PING, AUTH and REPLCONF up to its PSYNC;
        False for a peer that does not know the secret."""
        authenticated = False
        while True:
            try:
                args = self.read_command(reader)
            except (OSError, RecoveryError):
                return False
            name = args[0].upper() if args else b""
            if name == b"PING":
                conn.sendall(b"+PONG\r\n")
            elif name == b"AUTH" and args[-1] == self.scratch.secret.encode():
                authenticated = True
                conn.sendall(b"+OK\r\n")
            elif name == b"REPLCONF" and authenticated:
                conn.sendall(b"+OK\r\n")
            else:
                return name == b"PSYNC" and authenticated

    @staticmethod
    def read_command(reader: Any) -> list[bytes]:
        line = reader.readline()
        while line == b"\n":  # what a replica sends while it loads a large base
            line = reader.readline()
        if not line:
            raise RecoveryError("replay: the scratch redis-server closed its replication link")
        if not line.startswith(b"*"):
            raise RecoveryError(f"replay: the scratch redis-server sent {line[:32]!r}")
        args = []
        for _ in range(int(line[1:])):
            size = int(reader.readline()[1:])
            args.append(reader.read(size + 2)[:-2])
        return args

    def send_base(self, rdb: Iterable[bytes]) -> None:
        """A full resync with the RDB streamed in parts, ended by a random mark
        (the replica said it understands that form: `capa eof`)."""
        replid, mark = secrets.token_hex(20).encode(), secrets.token_hex(20).encode()
        self.sock.sendall(b"+FULLRESYNC %s 0\r\n$EOF:%s\r\n" % (replid, mark))
        for part in rdb:
            self.sock.sendall(part)
        self.sock.sendall(mark)
        # As a real master does after a diskless transfer: nothing more until
        # the replica's first ACK says it has loaded the base (while loading
        # it may read past the mark and drop what follows).
        self._wait_ack(0)

    def send(self, data: bytes | bytearray) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def wait_applied(self) -> None:
        """Until the replica has applied everything sent so far."""
        goal = self.sent
        self.send(resp("REPLCONF", "GETACK", "*"))
        self._wait_ack(goal)

    def _wait_ack(self, goal: int) -> None:
        while True:
            args = self.read_command(self.reader)
            if args[:2] == [b"REPLCONF", b"ACK"] and int(args[2]) >= goal:
                return

    def settle(self, target_ms: int) -> int:
        """Drop the keys expired at the target, move the other expiries past
        any clock, promote the server; the instant its TTLs now count from."""
        self.wait_applied()
        shift = int(time.time() * 1000) - target_ms + SHIFT_MARGIN_MS
        for db in self.scratch.client.info("keyspace"):
            self.send(resp("SELECT", db.removeprefix("db")))
            self.send(resp("EVAL", SHIFT_EXPIRIES, 0, target_ms, shift))
        self.wait_applied()
        self.scratch.client.execute_command("REPLICAOF", "NO", "ONE")
        return target_ms + shift

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
