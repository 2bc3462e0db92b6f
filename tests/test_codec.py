"""The blob codec: names, stored form, and refusal of anything damaged."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import pytest

from catalog.codec import HEADER_LEN, Codec
from catalog.errors import IntegrityError, KeyError_

KEY = b"k" * 32


def noise(size: int, seed: int = 7) -> bytes:
    """Incompressible but reproducible bytes (zstd stores them raw)."""
    return random.Random(seed).randbytes(size)


def flip(data: bytes, pos: int) -> bytes:
    damaged = bytearray(data)
    damaged[pos] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize(
    "plaintext",
    [b"", b"hello", bytes(range(256)) * 100, noise(300_000)],
    ids=["empty", "short", "all-bytes", "noise"],
)
def test_roundtrip(plaintext: bytes) -> None:
    codec = Codec()
    oid, stored = codec.encode(plaintext)
    assert codec.decode(oid, stored) == plaintext
    # Another codec instance (another process, say) reads it too.
    assert Codec(level=19).decode(oid, stored) == plaintext


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_a_plaintext_sealed_in_pieces_is_the_same_object(key: bytes | None) -> None:
    codec = Codec(key=key)
    plaintext = bytes(range(256)) * 4000 + noise(200_000)
    sealer = codec.sealer(len(plaintext))
    for at in range(0, len(plaintext), 65_536):
        sealer.update(memoryview(plaintext)[at : at + 65_536])
    oid, stored = sealer.finish()
    assert oid == codec.object_id(plaintext)
    assert codec.decode(oid, stored) == plaintext
    assert bytes(codec.decode_view(oid, stored)) == plaintext  # the frame declares its size
    assert len(stored) < len(plaintext) // 2


def test_object_id_is_sha256_of_plaintext() -> None:
    codec = Codec()
    for plaintext in (b"", b"abc", noise(5000)):
        oid, _ = codec.encode(plaintext)
        assert oid == hashlib.sha256(plaintext).hexdigest()
        assert codec.object_id(plaintext) == oid


def test_decode_refuses_a_flipped_byte_and_names_the_object() -> None:
    codec = Codec()
    plaintext = noise(4096)
    oid, stored = codec.encode(plaintext)
    body = len(stored) - HEADER_LEN
    for pos in (HEADER_LEN + body // 3, HEADER_LEN + body // 2, len(stored) - 1):
        with pytest.raises(IntegrityError, match=oid[:16]):
            codec.decode(oid, flip(stored, pos))


def test_decode_refuses_a_damaged_compressible_object() -> None:
    codec = Codec()
    plaintext = b"the same line again and again\n" * 2000
    oid, stored = codec.encode(plaintext)
    with pytest.raises(IntegrityError, match=oid[:16]):
        codec.decode(oid, flip(stored, len(stored) // 2))


@pytest.mark.parametrize(
    "plaintext",
    [b"abc" * 3000, bytes(300_000), noise(200), b""],
    ids=["repetitive", "zeros", "noise", "empty"],
)
def test_every_single_bit_flip_is_refused_or_harmless(plaintext: bytes) -> None:
    """No damage may crash the reader (a bad frame size once raised MemoryError)
    or return other bytes than the object's plaintext."""
    codec = Codec()
    oid, stored = codec.encode(plaintext)
    refused = 0
    for pos in range(len(stored)):
        for bit in range(8):
            damaged = bytearray(stored)
            damaged[pos] ^= 1 << bit
            try:
                result = codec.decode(oid, bytes(damaged))
            except IntegrityError:
                refused += 1
                continue
            except KeyError_:
                assert pos == 4  # the flags byte now claims encryption
                continue
            assert result == plaintext  # an unused bit: the hash check still passed
    assert refused >= len(stored) * 4


def test_decode_refuses_a_wrong_oid() -> None:
    codec = Codec()
    _, stored = codec.encode(b"payload one")
    other = hashlib.sha256(b"payload two").hexdigest()
    with pytest.raises(IntegrityError, match=f"{other[:16]}.*hash check"):
        codec.decode(other, stored)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: b"XYZ" + s[3:],  # wrong magic
        lambda s: s[:3] + bytes([99]) + s[4:],  # unknown format version
        lambda s: s[:4],  # truncated header
        lambda s: b"",
    ],
    ids=["magic", "version", "truncated", "empty"],
)
def test_decode_refuses_a_bad_header(mangle: Callable[[bytes], bytes]) -> None:
    codec = Codec()
    oid, stored = codec.encode(b"some content")
    with pytest.raises(IntegrityError, match=f"object {oid}"):
        codec.decode(oid, mangle(stored))


def test_compression_shrinks_compressible_data() -> None:
    plaintext = b"2025-01-16 12:00:00 INFO checkpoint complete\n" * 20_000
    _, stored = Codec().encode(plaintext)
    assert len(stored) < len(plaintext) // 20
    # Incompressible data does not grow by more than the framing.
    raw = noise(100_000)
    _, stored_raw = Codec().encode(raw)
    assert len(stored_raw) < len(raw) + 64


def test_encrypted_ids_differ_from_sha256_and_are_stable() -> None:
    codec = Codec(key=KEY)
    assert codec.encrypted
    plaintext = b"secret row: card 4111-1111-1111-1111"
    oid1, stored1 = codec.encode(plaintext)
    oid2, stored2 = Codec(key=KEY).encode(plaintext)
    assert oid1 != hashlib.sha256(plaintext).hexdigest()
    assert oid1 == oid2
    assert len(oid1) == 64
    # Equal plaintexts still get fresh nonces.
    assert stored1 != stored2
    assert codec.decode(oid1, stored2) == plaintext
    # Another key names the same plaintext differently.
    assert Codec(key=b"j" * 32).object_id(plaintext) != oid1


def test_encrypted_stored_bytes_do_not_contain_the_plaintext() -> None:
    # Incompressible, so that the plaintext would show verbatim without encryption.
    plaintext = noise(2000, seed=3)
    probe = plaintext[500:532]
    _, plain_stored = Codec().encode(plaintext)
    assert probe in plain_stored  # the probe is meaningful
    _, stored = Codec(key=KEY).encode(plaintext)
    assert probe not in stored
    assert b"secret" not in Codec(key=KEY).encode(b"secret " * 10)[1]


def test_encrypted_object_with_a_different_key_fails_integrity() -> None:
    oid, stored = Codec(key=KEY).encode(b"for the right key only")
    with pytest.raises(IntegrityError, match=oid):
        Codec(key=b"j" * 32).decode(oid, stored)


def test_encrypted_object_flipped_byte_fails_integrity() -> None:
    codec = Codec(key=KEY)
    oid, stored = codec.encode(noise(1000))
    with pytest.raises(IntegrityError, match=oid):
        codec.decode(oid, flip(stored, len(stored) - 5))


def test_plain_codec_reading_encrypted_object_raises_key_error() -> None:
    oid, stored = Codec(key=KEY).encode(b"needs a key")
    with pytest.raises(KeyError_, match="no repository key"):
        Codec().decode(oid, stored)


def test_encrypted_codec_refuses_an_unencrypted_object() -> None:
    oid, stored = Codec().encode(b"stored in the clear")
    with pytest.raises(IntegrityError, match="unencrypted"):
        Codec(key=KEY).decode(oid, stored)
