"""Gap detection for the stream tailer: what it knows of each followed
stream, and the rules that tell, from one atomic look at a stream (XINFO
STREAM read in the same transaction as its entries), that entries were lost
before they could be read.

Entries deleted (trimmed or XDEL) after our position before we read them
show as a max-deleted-entry-id beyond it, or as an entries-added counter
that grew by more than the stream still holds; a stream that vanished and
came back, or whose last ID or entries-added counter went backwards, was
recreated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from catalog.redisformat import (
    GAP_RECREATED,
    GAP_TRIMMED,
    Entry,
    StreamId,
    format_id,
    id_text,
    parse_id,
    stream_label,
)


@dataclass
class StreamState:
    name: bytes
    shipped: StreamId = (0, 0)  # last ID durably archived
    read: StreamId = (0, 0)  # last ID read (buffered or shipped)
    history: bool = False  # something of it was read or shipped: a jump is a gap
    missing: bool = False
    wrong_type: bool = False  # the name now holds another type: not read
    counter: int | None = None  # entries-added as of `read`, when known
    added: int | None = None  # entries-added at the last look
    deleted_seen: StreamId = (0, 0)  # max-deleted-entry-id already reported
    buffer: list[Entry] = field(default_factory=list)
    opened: float = 0.0
    behind: bool = False  # the last read was full: more is waiting

    @property
    def label(self) -> str:
        return stream_label(self.name)


def check_stream(
    s: StreamState,
    info: dict[str, Any],
    entries: Sequence[Any],
    flush: Callable[[StreamState], None],
    gap: Callable[[StreamState, str, str, str], None],
) -> bool:
    """Record a gap when entries were lost; False when the stream restarts.

    Before a gap is recorded, flush ships what is buffered of the stream (the
    entries before the gap), then gap(s, from_id, to_id, detail) records it.

    s.counter is the stream's entries-added counter as of s.read: entries
    added since then number added - s.counter, and when the stream's first
    entry lies beyond s.read, all of them should still be there (length)."""
    last = parse_id(info["last-generated-id"])
    added = info.get("entries-added")  # Redis 7 and later
    length = int(info.get("length") or 0)
    first = info.get("first-entry")
    first_pos = parse_id(first[0]) if first else None
    first_id = id_text(first[0]) if first else format_id(last)
    recreated = s.missing or last < s.read
    if added is not None and s.counter is not None and added < s.counter:
        recreated = True
    s.missing = False
    s.added = added
    if recreated and s.history:
        flush(s)
        gap(
            s,
            format_id(s.read),
            first_id,
            f"{GAP_RECREATED}: stream {s.label} was deleted and created again; "
            f"entries after {format_id(s.read)} not yet shipped were lost",
        )
        s.read = s.shipped = s.deleted_seen = (0, 0)
        s.counter = None
        return False
    if recreated:
        s.counter = None
    deleted = info.get("max-deleted-entry-id")
    gone = parse_id(deleted) if deleted is not None else (0, 0)
    head_trimmed = first_pos is None or first_pos > s.read
    if s.history and added is not None and s.counter is not None and head_trimmed:
        lost = added - s.counter - length
        if lost > 0:
            flush(s)
            gap(
                s,
                format_id(s.read),
                first_id,
                f"{GAP_TRIMMED}: {lost} entries of {s.label} after {format_id(s.read)} "
                "were trimmed before they were shipped",
            )
            s.counter = added - length
            s.deleted_seen = max(s.deleted_seen, gone)
    if gone > s.read and gone > s.deleted_seen:
        # XDEL of entries after our position (trimming does not move this).
        if s.history:
            flush(s)
            gap(
                s,
                format_id(s.read),
                id_text(entries[0][0]) if entries else first_id,
                f"{GAP_TRIMMED}: entries of {s.label} after {format_id(s.read)} "
                f"(up to {format_id(gone)}) were deleted before they were shipped",
            )
        s.deleted_seen = gone
    return True
