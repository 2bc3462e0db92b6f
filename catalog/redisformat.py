"""Redis knowledge shared by archiving and recovery: the object formats the
snapshot and the stream tailer write and the restore reads, stream IDs,
stream labels, the tailer's heartbeat row and connecting to a server.

Both formats are length-prefixed bytes, so keys, field names and values are
binary-safe:

Snapshot chunk: b"PITRKS1\\n", then key records:
    frame(key) frame(type) i64(expire_at_ms, -1 = none) frame(DUMP payload)
Stream batch:   b"PITRSB1\\n" frame(stream) u32(count), then per entry:
    frame(id) u32(field count) (frame(name) frame(value))*
where frame(b) = u32 big-endian length + b.

Standard library only: redis-py is imported by connect() alone.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from catalog.errors import IntegrityError

SNAPSHOT_MAGIC = b"PITRKS1\n"
BATCH_MAGIC = b"PITRSB1\n"
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")

Entry = tuple[bytes, Sequence[bytes]]  # (id, [name, value, name, value, ...])
DecodedEntry = tuple[bytes, list[bytes]]

# Gap details start with one of these words (the tailer writes them, the
# restore planner tells the two kinds apart).
GAP_TRIMMED = "trimmed"
GAP_RECREATED = "recreated"


# -- writing -----------------------------------------------------------------


def frame(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def key_record(key: bytes, type_: bytes, expire_at_ms: int | None, payload: bytes) -> bytes:
    expire = -1 if expire_at_ms is None else expire_at_ms
    return frame(key) + frame(type_) + _I64.pack(expire) + frame(payload)


def encode_batch(stream: bytes, entries: Sequence[Entry]) -> bytes:
    # The tailer's hot path: every piece goes straight into one list (no helper per frame).
    pack = _U32.pack
    out = [BATCH_MAGIC, frame(stream), pack(len(entries))]
    put = out.append
    for entry_id, fields in entries:
        put(pack(len(entry_id)))
        put(entry_id)
        put(pack(len(fields)))
        for f in fields:
            put(pack(len(f)))
            put(f)
    return b"".join(out)


# -- reading -----------------------------------------------------------------


@dataclass(frozen=True)
class KeyRecord:
    key: bytes
    type: bytes
    expire_at_ms: int | None
    payload: bytes


class _Reader:
    """Walks framed bytes; running off the end is damage, not a short read."""

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


def decode_batch(data: bytes, what: str = "stream batch") -> tuple[bytes, list[DecodedEntry]]:
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


# -- stream IDs --------------------------------------------------------------

StreamId = tuple[int, int]  # (milliseconds, sequence): compares as Redis orders IDs
ZERO_ID = "0-0"
MAX_SEQ = (1 << 64) - 1  # the highest sequence number of a millisecond
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(value: datetime) -> int:
    """Milliseconds since the epoch, rounded down: the time part of a stream ID."""
    return (value - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def parse_id(value: str | bytes) -> StreamId:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(value: StreamId) -> str:
    return f"{value[0]}-{value[1]}"


def id_text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def time_reply_ms(reply: Iterable[Any]) -> int:
    """The server's clock in milliseconds from a TIME reply."""
    secs, micros = reply
    return int(secs) * 1000 + int(micros) // 1000


# -- names -------------------------------------------------------------------


def stream_label(name: bytes) -> str:
    """The stream's name as the catalog shows it: UTF-8 text, or hex: for
    names that are not UTF-8."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + name.hex()


def stream_name(label: str) -> bytes:
    """The stream name behind a catalog label (the inverse of stream_label;
    a UTF-8 name that merely looks like hex:... is taken as text)."""
    if label.startswith("hex:"):
        try:
            raw = bytes.fromhex(label[4:])
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
        except ValueError:
            pass
    return label.encode("utf-8")


def caught_up_key(source: str) -> str:
    """RepoMeta key of the tailer's heartbeat (the key column holds 64
    characters, so long source names are hashed)."""
    key = f"redis_caught_up:{source}"
    if len(key) <= 64:
        return key
    return "redis_caught_up:#" + hashlib.sha256(source.encode()).hexdigest()[:40]


# -- connecting ----------------------------------------------------------------


def safe_url(url: str) -> str:
    """The URL without a password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def connect(
    url: str,
    what: str,
    *,
    unreachable: type[Exception],
    bad_url: type[Exception],
    socket_timeout: float | None = 30.0,
) -> Any:
    """A client on url, checked with PING. Failures raise the caller's own
    classes (each side has its exit codes): unreachable when the server
    cannot be reached or refuses us, bad_url when the URL does not parse."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=socket_timeout)
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        raise unreachable(f"{what}: cannot reach redis at {safe_url(url)}: {e}") from e
    except redis.exceptions.RedisError as e:
        raise unreachable(f"{what}: cannot use redis at {safe_url(url)}: {e}") from e
    except ValueError as e:
        raise bad_url(f"{what}: bad redis url {safe_url(url)}: {e}") from e
    return client


def resp(*args: bytes | str | int) -> bytes:
    """One command in RESP, the protocol's array of bulk strings (what a
    replication link carries both ways)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)
