"""Restore of a replication capture (archiver/redis/replication.py) to an
instant: the newest epoch whose base was received at or before T is sent,
with the captured commands that arrived at or before T (never splitting a
MULTI/EXEC), to a scratch redis-server that pitr is the master of (the real
server reads the RDB: recovery/redis/scratch.py), and the keys of the
source's patterns are then copied into the target with the TTL they had
left at T.

The captured bytes are read one batch at a time: memory holds one batch and
one pending transaction, never the whole stream.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from catalog.redisformat import resp
from catalog.replication import ReplEpochRecord, batches_prefix, epochs_prefix
from catalog.repository import Repository
from recovery.errors import PlanError, RecoveryError
from recovery.redis.scratch import MasterLink, ScratchRedis

SKIPPED = {b"PING", b"REPLCONF"}  # link keepalives, not writes


@dataclass(frozen=True)
class Epoch:
    name: str
    base_chunks: tuple[str, ...]
    base_ms: int
    offset: int  # where its command stream starts


def epochs(repo: Repository, source: str) -> list[Epoch]:
    """The source's epochs, read from the store (a restore needs no catalog)."""
    out = []
    for key in repo.list_records(epochs_prefix(source)):
        doc = ReplEpochRecord.from_json(repo.get_record(key))
        out.append(Epoch(doc.epoch, tuple(doc.base_chunks), doc.base_ms, doc.offset))
    return sorted(out, key=lambda e: e.base_ms)


def epoch_at(found: list[Epoch], target_ms: int) -> Epoch | None:
    """The epoch a restore to target_ms replays: the newest whose base was
    received at or before it (found sorted by base, as epochs() gives them)."""
    before = [e for e in found if e.base_ms <= target_ms]
    return before[-1] if before else None


def choose_epoch(source: str, found: list[Epoch], target_ms: int) -> Epoch:
    epoch = epoch_at(found, target_ms)
    if epoch is None:
        raise PlanError(f"restore {source}: no replication base received at or before the target")
    return epoch


def batches(repo: Repository, source: str, epoch: str) -> Iterator[dict[str, Any]]:
    """The epoch's batch records in offset order (keys sort by start offset)."""
    for key in sorted(repo.list_records(batches_prefix(source, epoch))):
        yield repo.get_record(key)


def commands(
    repo: Repository, source: str, epoch: Epoch
) -> Iterator[tuple[list[bytes], bytes, int]]:
    """Every captured command of an epoch, as arguments and as the bytes it
    came in, with its arrival ms, in order."""
    pending = b""
    offset = epoch.offset  # offset of pending[0]
    for doc in batches(repo, source, epoch.name):
        if doc["start"] != offset + len(pending):
            raise RecoveryError(
                f"restore {source}: epoch {epoch.name} has no bytes {offset + len(pending)}.."
                f"{doc['start']}"
            )
        pending += repo.get_chunk(str(doc["oid"]))
        ends = [int(o) for o, _ in doc["marks"]]
        arrivals = [int(ms) for _, ms in doc["marks"]]
        pos = 0
        while (parsed := _parse(pending, pos)) is not None:
            args, start, end = parsed
            # it arrived with the first read that reached its last byte
            yield args, pending[start:end], arrivals[bisect_left(ends, offset + end)]
            pos = end
        pending, offset = pending[pos:], offset + pos


def _parse(buf: bytes, pos: int) -> tuple[list[bytes], int, int] | None:
    """One RESP array from pos: its arguments, where it starts (after the
    newlines a master sends as keepalives) and ends; None when incomplete."""
    while pos < len(buf) and buf[pos : pos + 1] == b"\n":
        pos += 1
    begin = pos
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return None
    if buf[pos : pos + 1] != b"*":
        raise RecoveryError(f"replication stream: unexpected {buf[pos : pos + 16]!r}")
    count = int(buf[pos + 1 : nl])
    pos = nl + 2
    args = []
    for _ in range(count):
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return None
        size = int(buf[pos + 1 : nl])
        start = nl + 2
        if start + size + 2 > len(buf):
            return None
        args.append(buf[start : start + size])
        pos = start + size + 2
    return args, begin, pos


@dataclass
class ReplayResult:
    commands: int = 0
    transactions: int = 0
    keys: int = 0
    expired: int = 0
    ttl_from_ms: int = 0  # the instant the scratch server's expiry times count TTLs from


SEND_AT = 1 << 20  # bytes of commands gathered per write to the link
COPY_BATCH = 500  # keys per round trip to either server


def replay_to(repo: Repository, source: str, target_ms: int) -> tuple[ScratchRedis, ReplayResult]:
    """A scratch server holding the source's whole keyspace as of target_ms."""
    epoch = choose_epoch(source, epochs(repo, source), target_ms)
    scratch = ScratchRedis()
    result = ReplayResult()
    try:
        link = MasterLink(scratch)
        try:
            link.send_base(repo.get_chunk(oid) for oid in epoch.base_chunks)
            out = bytearray()
            tx: list[bytes] | None = None  # an open MULTI, sent only with its EXEC
            for args, raw, arrived in commands(repo, source, epoch):
                if arrived > target_ms:
                    break  # a MULTI still open here is left out whole
                name = args[0].upper()
                if name in SKIPPED:
                    continue
                if name == b"MULTI":
                    tx = [raw]
                elif tx is None:
                    out += raw
                    result.commands += 1
                else:
                    tx.append(raw)
                    if name == b"EXEC":
                        out += b"".join(tx)
                        result.commands += len(tx) - 2
                        result.transactions += 1
                        tx = None
                if len(out) >= SEND_AT:
                    link.send(out)
                    out.clear()
            link.send(out)
            result.ttl_from_ms = link.settle(target_ms)
        finally:
            link.close()
    except OSError as e:  # a timeout or a reset on the link
        scratch.close()
        raise RecoveryError(f"replay: the link to the scratch redis-server failed: {e}") from None
    except Exception:
        scratch.close()
        raise
    return scratch, result


def copy_keys(
    scratch: ScratchRedis, target: Any, patterns: list[str], result: ReplayResult
) -> None:
    """Copy the keys of the patterns from the scratch server into the target,
    each with the TTL it had left at the target instant (keys expired by then
    left out). Keys go in batches: one round trip reads a batch's expiries
    and dumps, one writes it."""
    src: Any = scratch.client
    keys = list({k for p in patterns for k in src.scan_iter(match=p, count=1000)})
    for at in range(0, len(keys), COPY_BATCH):
        batch = keys[at : at + COPY_BATCH]
        read = [resp(name, key) for key in batch for name in ("PEXPIRETIME", "DUMP")]
        replies = round_trip(src, read)
        write = []
        for key, expires, payload in zip(batch, replies[::2], replies[1::2], strict=True):
            ttl = 0
            if int(expires) >= 0:
                ttl = int(expires) - result.ttl_from_ms
                if ttl <= 0:
                    result.expired += 1
                    continue
            if payload is None:
                continue  # expired in the scratch server meanwhile
            write.append(resp("RESTORE", key, ttl, payload, "REPLACE"))
        round_trip(target, write)
        result.keys += len(write)


def round_trip(client: Any, packed: list[bytes]) -> list[Any]:
    """Commands packed by resp() sent in one write, their replies read in
    order (redis-py's pipeline spends more time packing than the servers
    spend answering). The connection is dropped if a reply is an error."""
    if not packed:
        return []
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([b"".join(packed)])
        return [conn.read_response(disable_decoding=True) for _ in packed]
    except BaseException:
        conn.disconnect()  # replies may be left unread on it
        raise
    finally:
        pool.release(conn)
