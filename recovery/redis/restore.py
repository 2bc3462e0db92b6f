"""The Redis restore executor: lays a snapshot into a Redis server, then
replays archived stream entries up to the target with their original IDs.

Order of work:
1. refuse a target holding keys that match the source's patterns, unless
   forced; forced, delete exactly those keys;
2. RESTORE every snapshot key with the TTL it had left at the target (keys
   already expired at the target are left out), pipelined;
3. a stream whose snapshot copy already reaches past the target (the
   snapshot ran across the target) is cut back: later entries deleted, their
   pending entries acknowledged, group and stream IDs set back;
4. XADD the archived entries after each stream's snapshot copy, ID time <= T.

Consumer groups come back as the snapshot captured them: the tailer archives
entries, not group reads, so reads after the snapshot are not replayed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from catalog.manifests import SnapshotManifest, read_manifest
from catalog.redisformat import (
    StreamId,
    connect,
    decode_batch,
    format_id,
    iter_key_records,
    parse_id,
    safe_url,
    stream_label,
    stream_name,
)
from catalog.repository import Repository
from recovery.errors import RecoveryError, RestoreInputError, TargetNotEmpty
from recovery.redis.plan import RedisRestorePlan

PIPELINE_KEYS = 200
PIPELINE_BYTES = 8 << 20
PIPELINE_ENTRIES = 500


@dataclass
class RedisRestoreResult:
    keys: int = 0  # restored from the snapshot
    expired: int = 0  # left out: expired at the target
    replaced: int = 0  # deleted from the target first (--force)
    entries: int = 0  # stream entries replayed
    streams: int = 0  # streams that got entries
    cut: int = 0  # snapshot entries after the target removed
    seconds: float = 0.0


def matching_keys(client: Any, patterns: Iterable[str]) -> Iterator[bytes]:
    """Keys of the target matching any pattern (a key may repeat)."""
    for pattern in patterns:
        yield from client.scan_iter(match=pattern, count=1000)


def connect_target(url: str, what: str) -> Any:
    """A client on the restore target; failures raise the restore's errors."""
    return connect(
        url, what, unreachable=RecoveryError, bad_url=RestoreInputError, socket_timeout=60
    )


def check_target(client: Any, source: str, url: str, patterns: list[str], force: bool) -> int:
    """How many keys the target holds that the restore would replace; raises
    TargetNotEmpty when there are some and force is not given."""
    found = len(set(matching_keys(client, patterns)))
    if found and not force:
        raise TargetNotEmpty(
            f"restore {source}: the target {safe_url(url)} holds {found} keys matching the "
            f"source's patterns ({', '.join(patterns)}); use --force to replace them"
        )
    return found


def restore_redis(
    repo: Repository,
    plan: RedisRestorePlan,
    url: str,
    patterns: list[str],
    *,
    force: bool,
) -> RedisRestoreResult:
    import redis

    t0 = time.monotonic()
    what = f"restore {plan.source}"
    client = connect_target(url, what)
    result = RedisRestoreResult()
    try:
        check_target(client, plan.source, url, patterns, force)
        result.replaced = _delete(client, patterns)
        manifest = read_manifest(repo, plan.snapshot.manifest_oid, SnapshotManifest)
        gone = _restore_keys(client, repo, manifest, plan.target_ms, result)
        for label, state in manifest.streams.items():
            if label not in gone and parse_id(state.last_id)[0] > plan.target_ms:
                result.cut += cut_stream(client, stream_name(label), plan.target_ms)
        _replay(client, repo, plan, gone, result)
    except redis.exceptions.ConnectionError as e:
        raise RecoveryError(f"{what}: lost the connection to {safe_url(url)}: {e}") from e
    except redis.exceptions.RedisError as e:
        raise RecoveryError(f"{what}: redis at {safe_url(url)} refused: {e}") from e
    finally:
        client.close()
    result.seconds = time.monotonic() - t0
    return result


def _delete(client: Any, patterns: list[str]) -> int:
    deleted = 0
    batch: list[bytes] = []
    for key in matching_keys(client, patterns):
        batch.append(key)
        if len(batch) >= 500:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return int(deleted)


def _restore_keys(
    client: Any, repo: Repository, manifest: SnapshotManifest, t_ms: int, result: RedisRestoreResult
) -> set[str]:
    """RESTORE the snapshot's keys; returns the labels of streams left out
    because they had expired by the target."""
    gone: set[str] = set()
    pipe = client.pipeline(transaction=False)
    queued = size = 0
    for oid in manifest.chunks:
        for rec in iter_key_records(repo.get_chunk(oid), f"snapshot chunk {oid[:16]}…"):
            ttl = 0
            if rec.expire_at_ms is not None:
                ttl = rec.expire_at_ms - t_ms
                if ttl <= 0:
                    result.expired += 1
                    if rec.type == b"stream":
                        gone.add(stream_label(rec.key))
                    continue
            pipe.restore(rec.key, ttl, rec.payload, replace=True)
            queued += 1
            size += len(rec.payload)
            if queued >= PIPELINE_KEYS or size >= PIPELINE_BYTES:
                pipe.execute()
                result.keys += queued
                queued = size = 0
    if queued:
        pipe.execute()
        result.keys += queued
    return gone


def cut_stream(client: Any, name: bytes, t_ms: int) -> int:
    """Take a restored stream back to the target: delete its entries after
    t_ms, acknowledge them in every group, and set the group and stream IDs
    back to the last entry kept. Returns how many entries were deleted."""
    start = f"{t_ms + 1}-0"
    before = client.xinfo_stream(name)
    deleted = 0
    while batch := client.xrange(name, min=start, max="+", count=500):
        deleted += int(client.xdel(name, *[entry_id for entry_id, _ in batch]))
    info = client.xinfo_stream(name)
    last_entry = info.get("last-entry")
    keep: StreamId = parse_id(last_entry[0]) if last_entry else (0, 0)
    for group in client.xinfo_groups(name):
        gname = group["name"]
        while pending := client.xpending_range(name, gname, min=start, max="+", count=500):
            client.xack(name, gname, *[p["message_id"] for p in pending])
        if parse_id(group["last-delivered-id"]) > keep:
            client.xgroup_setid(name, gname, format_id(keep))
    args: list[Any] = ["XSETID", name, format_id(keep)]
    if before.get("entries-added") is not None:
        added = max(int(before["entries-added"]) - deleted, int(info["length"]))
        args += ["ENTRIESADDED", added]
    if before.get("max-deleted-entry-id") is not None:
        args += ["MAXDELETEDID", format_id(min(parse_id(before["max-deleted-entry-id"]), keep))]
    client.execute_command(*args)
    return deleted


def _replay(
    client: Any,
    repo: Repository,
    plan: RedisRestorePlan,
    gone: set[str],
    result: RedisRestoreResult,
) -> None:
    for replay in plan.replays:
        if replay.stream in gone and not replay.reset:
            continue  # the stream had expired by the target
        name = stream_name(replay.stream)
        if replay.reset:
            client.delete(name)
        last = parse_id(replay.after)
        pipe = client.pipeline(transaction=False)
        queued = added = 0
        for batch in replay.batches:
            stream, entries = decode_batch(repo.get_chunk(batch.oid), f"stream batch {batch.oid}")
            if stream != name:
                raise RecoveryError(
                    f"restore {plan.source}: batch {batch.oid[:16]}… holds stream "
                    f"{stream_label(stream)}, the catalog says {replay.stream}"
                )
            for entry_id, fields in entries:
                eid = parse_id(entry_id)
                # Overlapping batches or entries the snapshot holds are skipped.
                if eid <= last or eid[0] > plan.target_ms:
                    continue
                pipe.execute_command("XADD", name, entry_id, *fields)
                last = eid
                queued += 1
                if queued >= PIPELINE_ENTRIES:
                    pipe.execute()
                    added += queued
                    queued = 0
        if queued:
            pipe.execute()
            added += queued
        result.entries += added
        result.streams += added > 0
