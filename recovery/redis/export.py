"""`pitr export` of a Redis source: the keys of a scratch server that holds
the keyspace as of the target (recovery.redis.replay), one JSON object a line:

    {"key": K, "type": T, "ttl_ms": N or null, "encoding": "utf-8"|"base64", "value": V}

ttl_ms is what the key had left at the target (null: no expiry); keys
expired by then are left out. V by type: string: a string; list: its
elements in order; set: its members, sorted; zset: [member, score] pairs by
score; hash: an object field -> value; stream: [{"id": ID, "fields":
{field: value}}] in ID order. encoding says how every string of the line
(key, members, fields, values) is written: as text when all of them are
UTF-8, else all as base64.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recovery.redis.scratch import ScratchRedis

Encode = Callable[[bytes], str]


def scratch_url(scratch: ScratchRedis) -> str:
    return f"unix://{scratch.dir / 'redis.sock'}"


def export_keys(
    client: Any, patterns: list[str], reference_ms: int, out: IO[str]
) -> tuple[int, int]:
    """Write every key of the patterns to out, each with the TTL its expiry
    time leaves after reference_ms; (keys written, keys left out because
    they had expired by then)."""
    keys = sorted({k for p in patterns for k in client.scan_iter(match=p, count=1000)})
    written = expired = 0
    for key in keys:
        expires = int(client.execute_command("PEXPIRETIME", key))
        if expires == -2:
            continue  # gone from the scratch server meanwhile
        ttl = None if expires < 0 else expires - reference_ms
        if ttl is not None and ttl <= 0:
            expired += 1
            continue
        kind = client.type(key).decode()
        raw = _read(client, key, kind)
        encoding, encode = _encoding([key, *_strings(raw)])
        doc = {
            "key": encode(key),
            "type": kind,
            "ttl_ms": ttl,
            "encoding": encoding,
            "value": _shape(raw, encode),
        }
        out.write(json.dumps(doc, ensure_ascii=False) + "\n")
        written += 1
    return written, expired


def _read(client: Any, key: bytes, kind: str) -> Any:
    if kind == "string":
        return client.get(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return sorted(client.smembers(key))
    if kind == "zset":
        return [(m, s) for m, s in client.zrange(key, 0, -1, withscores=True)]
    if kind == "hash":
        return client.hgetall(key)
    if kind == "stream":
        return [(i, fields) for i, fields in client.xrange(key)]
    return None  # a module's type: named, without a value


def _strings(raw: Any) -> list[bytes]:
    """Every byte string of a value, to choose its encoding."""
    if isinstance(raw, bytes):
        return [raw]
    if isinstance(raw, dict):
        return [b for kv in raw.items() for b in kv]
    if isinstance(raw, list):
        return [b for item in raw for b in _strings_of_item(item)]
    return []


def _strings_of_item(item: Any) -> list[bytes]:
    if isinstance(item, bytes):
        return [item]
    if isinstance(item, tuple):
        return [b for part in item for b in _strings(part)]
    return []


def _encoding(strings: list[bytes]) -> tuple[str, Encode]:
    try:
        for s in strings:
            s.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", lambda b: base64.b64encode(b).decode("ascii")
    return "utf-8", lambda b: b.decode("utf-8")


def _shape(raw: Any, encode: Encode) -> Any:
    if raw is None:
        return None
    if isinstance(raw, bytes):
        return encode(raw)
    if isinstance(raw, dict):
        return {encode(f): encode(v) for f, v in raw.items()}
    return [_item(item, encode) for item in raw]


def _item(item: Any, encode: Encode) -> Any:
    if isinstance(item, bytes):
        return encode(item)
    first, second = item
    if isinstance(second, float):  # a zset member and its score
        return [encode(first), second if math.isfinite(second) else str(second)]
    return {
        "id": first.decode("ascii"),
        "fields": {encode(f): encode(v) for f, v in second.items()},
    }
