"""Reading keys from Redis for a snapshot: every key matching some
patterns, in byte order with bounded memory, and each key's type, expiry
and DUMP payload read in small transactions."""

from __future__ import annotations

import contextlib
import heapq
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from archiver.errors import BackupFailed
from catalog.manifests import StreamState
from catalog.redisformat import id_text, time_reply_ms

SORT_RUN = 100_000  # key names held in memory before spilling a sorted run


@dataclass(frozen=True)
class KeyData:
    key: bytes
    type: bytes
    expire_at_ms: int | None
    payload: bytes
    stream: StreamState | None  # for a stream: its counters, read with its DUMP


def sorted_keys(client: Any, patterns: Iterable[str], run_size: int = SORT_RUN) -> Iterator[bytes]:
    """Every key matching any pattern, once each, in byte order.

    Names beyond run_size are sorted in runs spilled to temporary files and
    merged, so memory does not grow with the keyspace."""
    with contextlib.ExitStack() as files:
        runs: list[IO[bytes]] = []
        pending: set[bytes] = set()
        for pattern in patterns:
            for key in client.scan_iter(match=pattern, count=1000):
                pending.add(key)
                if len(pending) >= run_size:
                    runs.append(_spill(files, sorted(pending)))
                    pending = set()
        if not runs:
            yield from sorted(pending)
            return
        runs.append(_spill(files, sorted(pending)))
        last = None
        for key in heapq.merge(*(_read_run(f) for f in runs)):
            if key != last:
                yield key
                last = key


_LEN = struct.Struct(">I")


def _spill(files: contextlib.ExitStack, keys: list[bytes]) -> IO[bytes]:
    f = files.enter_context(tempfile.TemporaryFile(prefix="pitr-keys-"))  # noqa: SIM115
    for key in keys:
        f.write(_LEN.pack(len(key)) + key)
    f.seek(0)
    return f


def _read_run(f: IO[bytes]) -> Iterator[bytes]:
    while head := f.read(4):
        yield f.read(_LEN.unpack(head)[0])


def batches(keys: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def fetch_keys(client: Any, keys: list[bytes], attempts: int = 5) -> Iterator[KeyData]:
    """TYPE, PTTL and DUMP of each key, in one transaction so that a stream's
    XINFO describes exactly what its DUMP holds. Keys gone by then are left out."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    pending = list(zip(keys, pipe.execute(), strict=True))
    for _ in range(attempts):
        tx = client.pipeline(transaction=True)
        tx.time()
        for key, type_ in pending:
            tx.type(key)
            tx.pttl(key)
            tx.dump(key)
            if type_ == b"stream":
                tx.xinfo_stream(key)
        replies = tx.execute(raise_on_error=False)
        now_ms = time_reply_ms(replies[0])
        i = 1
        retry = []
        for key, guessed in pending:
            type_, pttl, payload = replies[i : i + 3]
            i += 3
            info = None
            if guessed == b"stream":
                info = replies[i]
                i += 1
            if isinstance(type_, Exception) or isinstance(payload, Exception):
                raise BackupFailed(f"read key {key!r}: {type_ if payload is None else payload}")
            if payload is None or type_ == b"none":
                continue  # deleted or expired since SCAN saw it
            if type_ == b"stream" and not isinstance(info, dict):
                retry.append((key, type_))  # it became a stream in between: read again
                continue
            expire_at = now_ms + int(pttl) if int(pttl) >= 0 else None
            yield KeyData(key, type_, expire_at, payload, _stream_facts(info) if info else None)
        if not retry:
            return
        pending = retry
    raise BackupFailed(f"read keys {[k for k, _ in pending]!r}: their type keeps changing")


def _stream_facts(info: dict[str, Any]) -> StreamState:
    """From an XINFO STREAM reply."""
    deleted = info.get("max-deleted-entry-id")
    return StreamState(
        id_text(info["last-generated-id"]),
        info.get("entries-added"),
        id_text(deleted) if deleted is not None else None,
    )
