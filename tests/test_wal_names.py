"""WAL file names, LSNs and timeline history, without servers."""

import pytest

from catalog.wal import (
    MIN_SEG_SIZE,
    HistoryEntry,
    format_lsn,
    parse_history,
    parse_lsn,
    parse_wal_name,
    segment_name,
    written_length,
)


@pytest.mark.parametrize(
    ("name", "kind", "timeline", "segno"),
    [
        ("000000010000000000000001", "segment", 1, 1),
        ("0000000200000001000000FF", "segment", 2, 0x1FF),
        ("000000010000000000000003.partial", "partial", 1, 3),
        ("000000010000000000000002.00000028.backup", "backup", 1, 2),
        ("00000003.history", "history", 3, None),
    ],
)
def test_names_are_classified(name: str, kind: str, timeline: int, segno: int | None) -> None:
    wal = parse_wal_name(name)
    assert wal is not None
    assert (wal.kind, wal.timeline, wal.segno) == (kind, timeline, segno)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "pg_wal",
        "00000001000000000000001",
        "000000010000000000000001.gz",
        "0000000100000000000001000",
        "00000000.history",
        "../000000010000000000000001",
        "000000010000000000000100",
    ],  # segment part beyond 0xFF for 16 MiB segments
)
def test_other_names_are_refused(name: str) -> None:
    assert parse_wal_name(name) is None


def test_segment_names_round_trip_for_other_sizes() -> None:
    for seg_size in (1 << 20, 16 << 20, 1 << 30):
        name = segment_name(5, 1000, seg_size)
        wal = parse_wal_name(name, seg_size)
        assert wal is not None and (wal.timeline, wal.segno) == (5, 1000)


def test_lsn_round_trip() -> None:
    assert parse_lsn("0/3000028") == 0x3000028
    assert parse_lsn("1A/FF") == (0x1A << 32) | 0xFF
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"


def test_history_file() -> None:
    text = "1\t0/3000000\tno recovery target specified\n\n2\t0/50000A0\tbefore 2025-01-16\n"
    assert parse_history(text) == [HistoryEntry(1, 0x3000000), HistoryEntry(2, 0x50000A0)]


def test_a_name_parsed_once_is_read_for_any_segment_size() -> None:
    # 1 MiB segments: 4096 per log, so the name's segment field goes past 0xFF.
    wal = parse_wal_name("000000010000000200000100", MIN_SEG_SIZE)
    assert wal is not None and wal.segno == 2 * 4096 + 0x100
    assert wal.sized(16 << 20) is None  # no 16 MiB cluster has this file
    assert wal.sized(1 << 20) == wal
    assert wal.sized(64 << 20) is None  # 64 per log
    backup = parse_wal_name("000000010000000200000010.00000028.backup", MIN_SEG_SIZE)
    assert backup is not None
    assert (backup.sized(16 << 20) or backup).segno == 2 * 256 + 0x10
    history = parse_wal_name("00000003.history", MIN_SEG_SIZE)
    assert history is not None and history.sized(16 << 20) == history


def test_the_written_length_of_a_file_being_received_is_found_without_reading_its_zeros() -> None:
    page = 8192
    for pages_written, tail in [(0, 0), (0, 40), (1, 0), (3, 100), (7, page - 24), (8, 0)]:
        data = bytearray(8 * page)
        for n in range(pages_written):
            data[n * page : n * page + 2] = b"\x10\xd1"  # a page header's magic
            data[n * page + 24 : (n + 1) * page] = b"\x01" * (page - 24)
        if pages_written < 8 and tail:
            at = pages_written * page
            data[at : at + tail] = b"\x10\xd1" + b"\x02" * (tail - 2)
        assert written_length(bytes(data)) == len(bytes(data).rstrip(b"\0"))
