"""The Redis object formats (catalog.redisformat): what the snapshot and the
tailer write reads back the same, byte for byte; damaged objects are refused."""

from __future__ import annotations

import pytest

from catalog.errors import IntegrityError
from catalog.redisformat import (
    SNAPSHOT_MAGIC,
    caught_up_key,
    decode_batch,
    encode_batch,
    format_id,
    iter_key_records,
    key_record,
    parse_id,
    safe_url,
    stream_label,
    stream_name,
    time_reply_ms,
)

NAMES = [b"cb:stream:events", "cb:stream:ünïcode".encode(), b"\xff\x00raw", b"hex:abc", b""]


def test_key_records_round_trip() -> None:
    records = [
        (b"cb:a", b"string", None, b"\x00payload\xff"),
        (b"\xfe binary key", b"hash", 1_800_000_000_123, b""),
        (b"", b"stream", 0, bytes(range(256)) * 3),
    ]
    data = SNAPSHOT_MAGIC + b"".join(key_record(*rec) for rec in records)
    got = [(k.key, k.type, k.expire_at_ms, k.payload) for k in iter_key_records(data)]
    assert got == records


def test_empty_snapshot_chunk_holds_no_keys() -> None:
    assert list(iter_key_records(SNAPSHOT_MAGIC)) == []


def test_stream_batches_round_trip_with_repeated_and_binary_fields() -> None:
    entries = [
        (b"1-0", [b"a", b"1", b"a", b"2"]),
        (b"1-1", [b"\x00", b"\xff" * 1000]),
        (b"1700000000000-42", [b"empty", b""]),
        (b"1700000000001-0", []),
    ]
    stream, got = decode_batch(encode_batch(b"\xffcb:stream:x\x00", entries))
    assert stream == b"\xffcb:stream:x\x00"
    assert got == entries


@pytest.mark.parametrize("name", NAMES)
def test_stream_labels_map_back_to_names(name: bytes) -> None:
    label = stream_label(name)
    assert stream_name(label) == name
    if name == b"\xff\x00raw":
        assert label == "hex:ff00726177"


@pytest.mark.parametrize("source", ["cache", "x" * 200])
def test_heartbeat_key_fits_the_meta_column(source: str) -> None:
    key = caught_up_key(source)
    assert len(key) <= 64
    assert key.startswith("redis_caught_up:")
    assert caught_up_key(source + "y") != key


@pytest.mark.parametrize(
    "data",
    [
        b"not a batch",
        SNAPSHOT_MAGIC,
        encode_batch(b"s", [(b"1-0", [b"a", b"b"])])[:-1],
        encode_batch(b"s", [(b"1-0", [b"a", b"b"])]) + b"x",
    ],
)
def test_damaged_batches_are_refused(data: bytes) -> None:
    with pytest.raises(IntegrityError):
        decode_batch(data)


def test_damaged_snapshot_chunk_is_refused() -> None:
    data = SNAPSHOT_MAGIC + key_record(b"k", b"string", None, b"v")
    with pytest.raises(IntegrityError, match="truncated"):
        list(iter_key_records(data[:-2], "chunk abc"))
    with pytest.raises(IntegrityError, match="not a redis snapshot"):
        list(iter_key_records(b"PITRSB1\n"))


def test_stream_ids_order_numerically() -> None:
    assert parse_id("10-0") > parse_id("9-5")
    assert parse_id(b"1700000000000-3") == (1700000000000, 3)
    assert parse_id("42") == (42, 0)
    assert format_id(parse_id("5-7")) == "5-7"
    assert time_reply_ms((b"1700000000", b"123456")) == 1_700_000_000_123


def test_urls_hide_passwords() -> None:
    safe = safe_url("redis://user:secret@host:6379/0")
    assert "secret" not in safe and "host:6379" in safe and "user" in safe
    assert "secret" not in safe_url("redis://:secret@host/0")
    assert safe_url("redis://host/0") == "redis://host/0"


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
    from archiver.redis.tailer import glob_match

    assert glob_match(pattern, name) is matches
