"""Redis keyspace snapshots: SCAN the source's patterns, read keys in small
transactions (TYPE, PTTL, DUMP and, for streams, XINFO STREAM), and cut the
serialised keys into content-defined chunks.

Keys are written in byte order (SCAN order changes with the server's hash
seed), and a chunk closes after a key whose name hashes to a boundary, so an
unchanged range of keys gives the same chunks, and so the same objects, the
next time. Key names are sorted with an external merge sort and values are
read a batch at a time: memory stays bounded whatever the keyspace size
(except for one very large value, which DUMP returns whole).

The snapshot time is the server's TIME when the SCAN starts. Keys change
while the snapshot runs, so a key may be captured as it was a little after
that instant; each stream's last ID is read in the same transaction as its
DUMP, which is what stream replay relies on.
"""

from __future__ import annotations

import secrets
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from archiver.backups import Taken, commit_backup, objects_of_latest
from archiver.errors import BackupFailed, BadInput, SourceUnreachable
from archiver.redis.keys import SORT_RUN, batches, fetch_keys, sorted_keys
from catalog.details import SnapshotDetails
from catalog.manifests import SnapshotManifest, StreamState
from catalog.records import BackupRecord
from catalog.redisformat import (
    SNAPSHOT_MAGIC,
    connect,
    key_record,
    stream_label,
    time_reply_ms,
)
from catalog.repository import Chunk, Repository

BATCH_KEYS = 256
MIN_CHUNK = 512 << 10
MAX_CHUNK = 8 << 20
BOUNDARY_DIVISOR = 64


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def take_snapshot(
    repo: Repository,
    source: str,
    url: str,
    key_patterns: Iterable[str],
    stream_patterns: Iterable[str] = (),
    *,
    batch_keys: int = BATCH_KEYS,
    min_chunk: int = MIN_CHUNK,
    max_chunk: int = MAX_CHUNK,
    divisor: int = BOUNDARY_DIVISOR,
    sort_run: int = SORT_RUN,
) -> Taken:
    """Snapshot the keys matching key_patterns and the streams matching
    stream_patterns (the tailed streams are part of the source)."""
    import redis

    t0 = time.monotonic()
    patterns = sorted(set(key_patterns) | set(stream_patterns))
    what = f"snapshot {source}"
    client = connect(url, what, unreachable=SourceUnreachable, bad_url=BadInput)
    try:
        version = str(client.info("server").get("redis_version", "unknown"))
        start_ms = time_reply_ms(client.time())
        known = objects_of_latest(repo, source, "redis_snapshot")
        chunker = _Chunker(repo, known, min_chunk, max_chunk, divisor)
        types: Counter[str] = Counter()
        streams: dict[str, StreamState] = {}
        keys = expiring = 0
        for batch in batches(sorted_keys(client, patterns, sort_run), batch_keys):
            for item in fetch_keys(client, batch):
                chunker.add(
                    item.key, key_record(item.key, item.type, item.expire_at_ms, item.payload)
                )
                keys += 1
                types[item.type.decode()] += 1
                expiring += item.expire_at_ms is not None
                if item.stream is not None:
                    streams[stream_label(item.key)] = item.stream
        chunker.cut()
        end_ms = time_reply_ms(client.time())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        raise SourceUnreachable(f"{what}: lost the connection to redis: {e}") from e
    except redis.exceptions.RedisError as e:
        raise BackupFailed(f"{what}: redis refused a read: {e}") from e
    finally:
        client.close()

    started, finished = ms_to_datetime(start_ms), ms_to_datetime(end_ms)
    snapshot_id = f"{started:%Y%m%dT%H%M%S}Z-{secrets.token_hex(2)}"
    chunks = chunker.chunks
    size = sum(c.size for c in chunks)
    manifest = SnapshotManifest(
        id=snapshot_id,
        source=source,
        redis_version=version,
        started_ms=start_ms,
        finished_ms=end_ms,
        patterns=tuple(patterns),
        keys=keys,
        expiring=expiring,
        types=dict(sorted(types.items())),
        size_bytes=size,
        chunks=tuple(c.oid for c in chunks),
        streams=streams,
    )
    record = BackupRecord(
        source,
        snapshot_id,
        "redis_snapshot",
        started,
        finished,
        size_bytes=size,
        details=SnapshotDetails.of(manifest).to_json(),
    )
    return Taken(commit_backup(repo, record, manifest, chunks), time.monotonic() - t0)


# -- chunks ----------------------------------------------------------------------


class _Chunker:
    """Collects key records and stores them as content-defined chunks."""

    def __init__(
        self, repo: Repository, known: set[str], min_size: int, max_size: int, divisor: int
    ) -> None:
        self.repo = repo
        self.divisor = divisor
        self.known = known
        self.min_size = min_size
        self.max_size = max_size
        self.chunks: list[Chunk] = []
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, key: bytes, record: bytes) -> None:
        self._parts.append(record)
        self._size += len(record)
        # The boundary depends on the key's name only, so a changed value
        # moves no boundary; the size cap bounds memory.
        if self._size >= self.max_size or (
            self._size >= self.min_size and zlib.crc32(key) % self.divisor == 0
        ):
            self.cut()

    def cut(self) -> None:
        if not self._parts:
            return
        data = SNAPSHOT_MAGIC + b"".join(self._parts)
        self._parts, self._size = [], 0
        self.chunks.append(self.repo.put_chunk(data, known=self.known))
