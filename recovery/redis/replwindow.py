"""The restorable instants of a replication capture (see recovery.coverage
and recovery.redis.replay), from the catalog's epochs and batches.

A restore to T replays the newest epoch whose base was stored at or before
T, reading its batches in offset order until one arrived after T. So an
epoch serves the instants from its base to the next epoch's base (the last
one: to its newest arrival), until the first batch the replay cannot read
(a hole in the offsets, a damaged object): from the arrival of the batch
before it, on to the end of the epoch's span, nothing can be restored.

Instants of lower precision are restorable, but a restore there gets the
keyspace as of an earlier instant: while the link was down the capture saw
nothing, and the writes of the outage arrived (or were in the next base)
only once it came back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

from catalog.redisformat import from_ms
from catalog.replfacts import BatchLink, EpochFact
from recovery.coverage import Coverage, Piece, fmt, merge


def repl_coverage(
    epochs: list[EpochFact], links: list[BatchLink], bad_oids: Collection[str] = ()
) -> Coverage:
    """links: catalog.replfacts.batch_links, of the same bad_oids."""
    by_epoch: dict[str, list[BatchLink]] = defaultdict(list)
    for link in links:
        by_epoch[link.epoch].append(link)
    pieces: list[Piece] = []
    for i, epoch in enumerate(epochs):
        end_ms = epochs[i + 1].base_ms if i + 1 < len(epochs) else epoch.newest_ms
        start, end = from_ms(epoch.base_ms), from_ms(end_ms)
        damaged = [oid for oid in epoch.oids if oid in bad_oids]
        if damaged:
            detail = f"replication epoch {epoch.name}: base chunk {damaged[0][:16]}… is damaged"
            pieces.append(Piece(start, end, False, detail))
            continue
        broken = _first_unreadable(epoch, by_epoch[epoch.name], bad_oids)
        if broken is None:
            pieces.append(Piece(start, end, True))
            continue
        at_ms, detail = broken
        if at_ms > epoch.base_ms:
            pieces.append(Piece(start, from_ms(at_ms), True))
        pieces.append(Piece(from_ms(at_ms), end, False, detail))
    return merge(pieces)


def _first_unreadable(
    epoch: EpochFact, links: list[BatchLink], bad_oids: Collection[str]
) -> tuple[int, str] | None:
    """From when a replay of the epoch fails, and why: the arrival of the
    batch before the first it cannot read (its base's, for the first)."""
    for link in links:
        expected = epoch.offset if link.prev_end is None else link.prev_end
        reached = epoch.base_ms if link.prev_last_ms is None else link.prev_last_ms
        if link.start != expected:
            return reached, (
                f"replication epoch {epoch.name}: no batch holds offsets {expected}..{link.start}"
            )
        if link.oid in bad_oids:
            return reached, f"replication batch {epoch.name} {link.start}..{link.end} is damaged"
    return None


def lower_precision(epochs: list[EpochFact]) -> list[Piece]:
    """The reconnect outages: within an epoch (PSYNC continued), and before
    each full resync that began a new one."""
    out = []
    for i, epoch in enumerate(epochs):
        if i and epoch.lost_ms is not None and epoch.lost_ms < epoch.base_ms:
            out.append(
                Piece(
                    from_ms(epoch.lost_ms),
                    from_ms(epoch.base_ms),
                    True,
                    f"replication link down until the full resync of epoch {epoch.name}: "
                    f"a restore here gets the keyspace as of {fmt(from_ms(epoch.lost_ms))}",
                )
            )
        for r in epoch.resumes:
            if r.lost_ms < r.first_ms:
                out.append(
                    Piece(
                        from_ms(r.lost_ms),
                        from_ms(r.first_ms),
                        True,
                        f"replication link down, resumed in epoch {epoch.name} at offset "
                        f"{r.start}: writes of the outage arrived at its end, a restore here "
                        f"gets the keyspace as of {fmt(from_ms(r.lost_ms))}",
                    )
                )
    return sorted(out, key=lambda p: p.start)


def epochs_json(epochs: list[EpochFact]) -> list[dict[str, Any]]:
    """The epochs as `info --output json` lists them."""
    return [
        {
            "epoch": e.name,
            "replid": e.replid,
            "offset": e.offset,
            "end_offset": e.end_offset,
            "base_at": fmt(from_ms(e.base_ms)),
            "base_bytes": e.base_size,
            "base_chunks": len(e.oids),
            "batches": e.batches,
            "newest_arrival": fmt(from_ms(e.newest_ms)),
        }
        for e in epochs
    ]
