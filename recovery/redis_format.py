"""Reading what the Redis snapshot and stream tailer wrote (the writer is
archiver.redis_codec; the two packages do not import each other, and
tests/test_redis_codec.py checks that both sides agree).

Snapshot chunk: b"PITRKS1\\n", then key records:
    frame(key) frame(type) i64(expire_at_ms, -1 = none) frame(DUMP payload)
Stream batch:   b"PITRSB1\\n" frame(stream) u32(count), then per entry:
    frame(id) u32(field count) (frame(name) frame(value))*
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from catalog.errors import IntegrityError
from recovery.errors import RecoveryError, RestoreInputError

SNAPSHOT_MAGIC = b"PITRKS1\n"
BATCH_MAGIC = b"PITRSB1\n"
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")

StreamId = tuple[int, int]
Entry = tuple[bytes, list[bytes]]


@dataclass(frozen=True)
class KeyRecord:
    key: bytes
    type: bytes
    expire_at_ms: int | None
    payload: bytes


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.what = what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise IntegrityError(f"{self.what}: truncated at byte {self.pos}")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def i64(self) -> int:
        return int(_I64.unpack(self.take(8))[0])

    def frame(self) -> bytes:
        return self.take(self.u32())

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)


def iter_key_records(data: bytes, what: str = "snapshot chunk") -> Iterator[KeyRecord]:
    if not data.startswith(SNAPSHOT_MAGIC):
        raise IntegrityError(f"{what}: is not a redis snapshot chunk")
    r = _Reader(data, what)
    r.take(len(SNAPSHOT_MAGIC))
    while not r.done:
        key, type_, expire, payload = r.frame(), r.frame(), r.i64(), r.frame()
        yield KeyRecord(key, type_, None if expire < 0 else expire, payload)


def decode_batch(data: bytes, what: str = "stream batch") -> tuple[bytes, list[Entry]]:
    if not data.startswith(BATCH_MAGIC):
        raise IntegrityError(f"{what}: is not a redis stream batch")
    r = _Reader(data, what)
    r.take(len(BATCH_MAGIC))
    stream = r.frame()
    entries = []
    for _ in range(r.u32()):
        entry_id = r.frame()
        entries.append((entry_id, [r.frame() for _ in range(r.u32())]))
    if not r.done:
        raise IntegrityError(f"{what}: has trailing bytes")
    return stream, entries


def parse_id(value: str | bytes) -> StreamId:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(value: StreamId) -> str:
    return f"{value[0]}-{value[1]}"


def stream_label(name: bytes) -> str:
    """As archiver.redis_codec.stream_label: UTF-8 text or hex:..."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + name.hex()


def caught_up_key(source: str) -> str:
    """As archiver.redis_codec.caught_up_key: the tailer's heartbeat row."""
    key = f"redis_caught_up:{source}"
    if len(key) <= 64:
        return key
    return "redis_caught_up:#" + hashlib.sha256(source.encode()).hexdigest()[:40]


def connect(url: str, what: str) -> Any:
    """A client on the restore target, checked with PING."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=60)
        client.ping()
    except ValueError as e:
        raise RestoreInputError(f"{what}: bad redis url {safe_url(url)}: {e}") from e
    except redis.exceptions.RedisError as e:
        raise RecoveryError(f"{what}: cannot use redis at {safe_url(url)}: {e}") from e
    return client


def safe_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
