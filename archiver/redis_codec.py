"""How Redis keys and stream entries are written into objects, and the small
helpers the snapshot and the tailer share (stream IDs, names, connecting).

Both formats are length-prefixed bytes, so keys, field names and values are
binary-safe. `recovery.redis_format` reads them (the two packages do not
import each other); tests/test_redis_codec.py checks that they agree.

Snapshot chunk: b"PITRKS1\\n", then key records:
    frame(key) frame(type) i64(expire_at_ms, -1 = none) frame(DUMP payload)
Stream batch:   b"PITRSB1\\n" frame(stream) u32(count), then per entry:
    frame(id) u32(field count) (frame(name) frame(value))*
where frame(b) = u32 big-endian length + b.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from archiver.errors import BadInput, SourceUnreachable

SNAPSHOT_MAGIC = b"PITRKS1\n"
BATCH_MAGIC = b"PITRSB1\n"
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")

Entry = tuple[bytes, Sequence[bytes]]  # (id, [name, value, name, value, ...])


def frame(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def key_record(key: bytes, type_: bytes, expire_at_ms: int | None, payload: bytes) -> bytes:
    expire = -1 if expire_at_ms is None else expire_at_ms
    return frame(key) + frame(type_) + _I64.pack(expire) + frame(payload)


def encode_batch(stream: bytes, entries: Sequence[Entry]) -> bytes:
    out = [BATCH_MAGIC, frame(stream), _U32.pack(len(entries))]
    for entry_id, fields in entries:
        out.append(frame(entry_id))
        out.append(_U32.pack(len(fields)))
        out.extend(frame(f) for f in fields)
    return b"".join(out)


# -- stream IDs --------------------------------------------------------------

StreamId = tuple[int, int]
ZERO_ID = "0-0"


def parse_id(value: str | bytes) -> StreamId:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(value: StreamId) -> str:
    return f"{value[0]}-{value[1]}"


def id_text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- names -------------------------------------------------------------------


def stream_label(name: bytes) -> str:
    """The stream's name as the catalog shows it: UTF-8 text, or hex: for
    names that are not UTF-8."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + name.hex()


def caught_up_key(source: str) -> str:
    """RepoMeta key of a tailer's heartbeat (also spelled out in
    recovery.redis_plan, which may not import this module)."""
    key = f"redis_caught_up:{source}"
    if len(key) <= 64:
        return key
    return "redis_caught_up:#" + hashlib.sha256(source.encode()).hexdigest()[:40]


# -- connecting ----------------------------------------------------------------


def connect(url: str, what: str, socket_timeout: float | None = 30.0) -> Any:
    """A client on url, checked with PING; SourceUnreachable when it fails."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=socket_timeout)
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        raise SourceUnreachable(f"{what}: cannot reach redis at {safe_url(url)}: {e}") from e
    except redis.exceptions.RedisError as e:
        raise SourceUnreachable(f"{what}: redis at {safe_url(url)}: {e}") from e
    except ValueError as e:
        raise BadInput(f"{what}: bad redis url {safe_url(url)}: {e}") from e
    return client


def safe_url(url: str) -> str:
    """The URL without a password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def server_ms(client: Any) -> int:
    """The Redis server's clock in milliseconds (TIME)."""
    secs, micros = client.time()
    return int(secs) * 1000 + int(micros) // 1000


def time_reply_ms(reply: Iterable[Any]) -> int:
    secs, micros = reply
    return int(secs) * 1000 + int(micros) // 1000
