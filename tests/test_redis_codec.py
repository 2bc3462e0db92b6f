"""The Redis object formats: what the archiver writes, recovery reads."""

from __future__ import annotations

import pytest

from archiver import redis_codec as w
from archiver.redis_archive import stream_name
from catalog.errors import IntegrityError
from recovery import redis_format as r
from recovery.redis_restore import _name as restore_name

NAMES = [b"cb:stream:events", "cb:stream:ünïcode".encode(), b"\xff\x00raw", b"hex:abc", b""]


def test_key_records_round_trip() -> None:
    records = [
        (b"cb:a", b"string", None, b"\x00payload\xff"),
        (b"\xfe binary key", b"hash", 1_800_000_000_123, b""),
        (b"", b"stream", 0, bytes(range(256)) * 3),
    ]
    data = w.SNAPSHOT_MAGIC + b"".join(w.key_record(*rec) for rec in records)
    got = [(k.key, k.type, k.expire_at_ms, k.payload) for k in r.iter_key_records(data)]
    assert got == records


def test_stream_batches_round_trip_with_repeated_and_binary_fields() -> None:
    entries = [
        (b"1-0", [b"a", b"1", b"a", b"2"]),
        (b"1-1", [b"\x00", b"\xff" * 1000]),
        (b"1700000000000-42", [b"empty", b""]),
    ]
    stream, got = r.decode_batch(w.encode_batch(b"cb:stream:x", entries))
    assert stream == b"cb:stream:x"
    assert got == [(i, list(f)) for i, f in entries]


@pytest.mark.parametrize("name", NAMES)
def test_stream_labels_map_back_to_names(name: bytes) -> None:
    label = w.stream_label(name)
    assert label == r.stream_label(name)
    assert stream_name(label) == name
    assert restore_name(label) == name


@pytest.mark.parametrize("source", ["cache", "x" * 200])
def test_both_sides_name_the_heartbeat_alike(source: str) -> None:
    assert w.caught_up_key(source) == r.caught_up_key(source)
    assert len(w.caught_up_key(source)) <= 64


@pytest.mark.parametrize(
    "data",
    [
        b"not a batch",
        w.encode_batch(b"s", [(b"1-0", [b"a", b"b"])])[:-1],
        w.encode_batch(b"s", [(b"1-0", [b"a", b"b"])]) + b"x",
    ],
)
def test_damaged_batches_are_refused(data: bytes) -> None:
    with pytest.raises(IntegrityError):
        r.decode_batch(data)


def test_damaged_snapshot_chunk_is_refused() -> None:
    data = w.SNAPSHOT_MAGIC + w.key_record(b"k", b"string", None, b"v")
    with pytest.raises(IntegrityError, match="truncated"):
        list(r.iter_key_records(data[:-2]))
    with pytest.raises(IntegrityError, match="not a redis snapshot"):
        list(r.iter_key_records(b"PITRSB1\n"))


def test_stream_ids_order_numerically() -> None:
    assert w.parse_id("10-0") > w.parse_id("9-5")
    assert r.parse_id(b"1700000000000-3") == (1700000000000, 3)
    assert w.format_id(r.parse_id("5-7")) == "5-7"


def test_urls_hide_passwords() -> None:
    url = "redis://user:secret@host:6379/0"
    for safe in (w.safe_url(url), r.safe_url(url)):
        assert "secret" not in safe and "host:6379" in safe
    assert w.safe_url("redis://host/0") == "redis://host/0"


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("cb:stream:*", b"cb:stream:x", True),
        ("cb:stream:*", b"cb:queue:x", False),
        ("s[^a]", b"sb", True),
        ("s[^a]", b"sa", False),
        ("s?", b"s\xff", True),
    ],
)
def test_resumed_streams_are_matched_like_redis_globs(
    pattern: str, name: bytes, matches: bool
) -> None:
    from archiver.redis_tailer import glob_match

    assert glob_match(pattern, name) is matches
