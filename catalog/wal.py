"""PostgreSQL WAL knowledge shared by archiving, recovery and the reports:
file names, LSNs, page headers, timeline history, and the commit times in a
segment (which decide how far a recovery target can reach).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

XLOG_BLCKSZ = 8192
SHORT_HEADER = 24
LONG_HEADER = 40
XLP_LONG_HEADER = 0x0002
# XLOG_PAGE_MAGIC of each major version: the page header says which server wrote it.
PAGE_MAGIC_VERSION = {0xD101: 12, 0xD106: 13, 0xD10D: 14, 0xD110: 15, 0xD113: 16, 0xD116: 17}

SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
PARTIAL_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.partial$")
BACKUP_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.[0-9A-F]{8}\.backup$")
HISTORY_RE = re.compile(r"^([0-9A-F]{8})\.history$")

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


DEFAULT_SEG_SIZE = 16 << 20
MIN_SEG_SIZE = 1 << 20  # initdb --wal-segsize=1: names reach furthest within a log


@dataclass(frozen=True)
class WalName:
    name: str
    kind: str  # segment | partial | backup | history
    timeline: int
    segno: int | None  # None for .history (segment number for a given segment size)
    # The two numbers the name itself holds (log, segment in log), so that
    # the segment number for another segment size needs no second parse.
    parts: tuple[int, int] | None = field(default=None, compare=False, repr=False)

    def sized(self, seg_size: int) -> WalName | None:
        """This name read for a cluster of seg_size segments; None when such a
        cluster has no file of this name."""
        if self.parts is None:
            return self
        log, seg = self.parts
        per_log = 0x100000000 // seg_size
        if seg >= per_log:
            return None
        return replace(self, segno=log * per_log + seg)


def parse_wal_name(name: str, seg_size: int = DEFAULT_SEG_SIZE) -> WalName | None:
    """Classify an archive file name; None if it is not one PostgreSQL archives
    (for seg_size: MIN_SEG_SIZE accepts a name of any size, to be sized later)."""
    for kind, pattern in (("segment", SEGMENT_RE), ("partial", PARTIAL_RE), ("backup", BACKUP_RE)):
        m = pattern.match(name)
        if m:
            tli, log, seg = (int(g, 16) for g in m.groups())
            return WalName(name, kind, tli, None, (log, seg)).sized(seg_size)
    m = HISTORY_RE.match(name)
    if m and int(m.group(1), 16) > 0:
        return WalName(name, "history", int(m.group(1), 16), None)
    return None


def segment_name(timeline: int, segno: int, seg_size: int = 16 << 20) -> str:
    per_log = 0x100000000 // seg_size
    return f"{timeline:08X}{segno // per_log:08X}{segno % per_log:08X}"


def parse_lsn(text: str) -> int:
    hi, _, lo = text.strip().partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_segno(lsn: int, seg_size: int = 16 << 20) -> int:
    return lsn // seg_size


@dataclass(frozen=True)
class PageHeader:
    magic: int
    pg_version: int | None  # major version, None if the magic is unknown
    timeline: int
    pageaddr: int
    system_identifier: int
    seg_size: int
    block_size: int


def read_long_header(data: bytes | memoryview) -> PageHeader:
    """The long header at the start of a segment; ValueError if there is none."""
    if len(data) < LONG_HEADER:
        raise ValueError("shorter than a WAL page header")
    magic, info, tli, pageaddr, _rem = struct.unpack_from("<HHIQI", data, 0)
    if not info & XLP_LONG_HEADER:
        raise ValueError("first page has no long header")
    sysid, seg_size, blcksz = struct.unpack_from("<QII", data, 24)
    return PageHeader(magic, PAGE_MAGIC_VERSION.get(magic), tli, pageaddr, sysid, seg_size, blcksz)


@dataclass(frozen=True)
class HistoryEntry:
    parent: int  # the timeline that ended
    switch_lsn: int  # where it ended and its successor began


def parse_history(text: str) -> list[HistoryEntry]:
    """Entries of a .history file, oldest first (comments and blanks skipped)."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        entries.append(HistoryEntry(int(fields[0]), parse_lsn(fields[1])))
    return entries


# -- commit times ------------------------------------------------------------

RM_XLOG_ID = 0
RM_XACT_ID = 1
XLOG_SWITCH = 0x40
XACT_OPMASK = 0x70
XACT_TIMED_OPS = {0x00, 0x10, 0x20, 0x30}  # commit, commit prepared, abort, abort prepared
RECORD_HEADER = 24


def _payload(data: bytes | memoryview) -> bytes:
    """The segment's bytes with page headers removed. Headers are multiples of
    8 bytes, so record alignment (MAXALIGN 8) is the same in the result."""
    parts = []
    for off in range(0, len(data) - XLOG_BLCKSZ + 1, XLOG_BLCKSZ):
        _magic, info = struct.unpack_from("<HH", data, off)
        header = LONG_HEADER if info & XLP_LONG_HEADER else SHORT_HEADER
        parts.append(data[off + header : off + XLOG_BLCKSZ])
    return b"".join(parts)


def written_length(data: bytes) -> int:
    """How many bytes of a WAL file being received are written, before its
    zero tail. pg_receivewal writes pages in order and every written page
    opens with a non-zero magic, so the last one is found by bisection:
    len(data.rstrip(b"\0")) without reading 16 MiB of zeros."""
    pages, rest = divmod(len(data), XLOG_BLCKSZ)
    if rest:
        return len(data.rstrip(b"\0"))
    written, unwritten = 0, pages  # pages before `written` are written, from `unwritten` on not
    while written < unwritten:
        mid = (written + unwritten) // 2
        if data[mid * XLOG_BLCKSZ] or data[mid * XLOG_BLCKSZ + 1]:
            written = mid + 1
        else:
            unwritten = mid
    if written == 0:
        return len(data[:XLOG_BLCKSZ].rstrip(b"\0"))
    last = (written - 1) * XLOG_BLCKSZ
    return last + len(data[last : last + XLOG_BLCKSZ].rstrip(b"\0"))


def transaction_times(data: bytes | memoryview) -> list[datetime]:
    """Commit and abort times of the transactions recorded in a segment, in WAL
    order: the instants recovery_target_time is compared with."""
    if len(data) < XLOG_BLCKSZ:
        return []
    _magic, _info, _tli, _addr, rem_len = struct.unpack_from("<HHIQI", data, 0)
    stream = _payload(data)
    pos = (rem_len + 7) & ~7  # skip the tail of a record begun in the previous segment
    times: list[datetime] = []
    end = len(stream) - RECORD_HEADER
    while pos <= end:
        tot_len, _xid, _prev, info, rmid = struct.unpack_from("<IIQBB", stream, pos)
        if tot_len < RECORD_HEADER:
            break  # zeroed space: the rest of the segment holds no records
        if pos + tot_len > len(stream):
            break  # goes on past what is here: its time is not readable from this part
        if rmid == RM_XACT_ID and (info & XACT_OPMASK) in XACT_TIMED_OPS:
            t = _xact_time(stream[pos : pos + tot_len])
            if t is not None:
                times.append(t)
        elif rmid == RM_XLOG_ID and (info & 0xF0) == XLOG_SWITCH:
            break  # a switch record ends the segment's contents
        pos = (pos + tot_len + 7) & ~7
    return times


def _xact_time(record: bytes) -> datetime | None:
    """xact_time opens the main data, which closes the record."""
    p = RECORD_HEADER
    while p < len(record):
        block_id = record[p]
        if block_id == 255:  # XLR_BLOCK_ID_DATA_SHORT
            main_len = record[p + 1]
            break
        if block_id == 254:  # XLR_BLOCK_ID_DATA_LONG
            (main_len,) = struct.unpack_from("<I", record, p + 1)
            break
        if block_id == 253:  # origin
            p += 3
        elif block_id == 252:  # top-level xid
            p += 5
        else:
            return None  # block references: not a record shape we read
    else:
        return None
    start = len(record) - main_len
    if main_len < 8 or start < p:
        return None
    (usecs,) = struct.unpack_from("<q", record, start)
    return PG_EPOCH + timedelta(microseconds=usecs)
