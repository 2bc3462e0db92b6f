"""The blob codec: how plaintext becomes a named, stored object and back.

An object is named by the SHA-256 of its plaintext (HMAC-SHA256 under the
repository key when encrypted, so equal plaintexts do not show). Its stored
form is a 5-byte header, then zstd-compressed plaintext, then optionally
AES-256-GCM sealed. Every decode re-hashes and refuses a mismatch.
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import os
import threading
from typing import Protocol

import zstandard

from catalog.errors import IntegrityError, KeyError_

MAGIC = b"PTR"
VERSION = 1
FLAG_ZSTD = 0x01
FLAG_AESGCM = 0x02
HEADER_LEN = len(MAGIC) + 2
NONCE_LEN = 12


class Hasher(Protocol):
    """What hashlib's SHA-256 and hmac's HMAC both offer."""

    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


class Codec:
    def __init__(self, level: int = 3, key: bytes | None = None) -> None:
        self.level = level
        self.key = key
        self._local = threading.local()  # zstd contexts are not thread-safe
        self._aead = None
        if key is not None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(hashlib.sha256(b"pitr-object-key" + key).digest())
            self._name_key = hashlib.sha256(b"pitr-name-key" + key).digest()

    @property
    def encrypted(self) -> bool:
        return self.key is not None

    def _compressor(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self.level)
        return c

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    def object_id(self, plaintext: bytes | memoryview) -> str:
        return str(self._hasher(plaintext).hexdigest())

    def _hasher(self, data: bytes | memoryview = b"") -> Hasher:
        """SHA-256, keyed when the repository is encrypted; fed data so far."""
        if self.key is None:
            return hashlib.sha256(data)
        return hmac.new(self._name_key, data, hashlib.sha256)

    def encode(self, plaintext: bytes | memoryview) -> tuple[str, bytes]:
        """Name and stored bytes of plaintext."""
        oid = self.object_id(plaintext)
        return oid, self.seal(plaintext, oid)

    def seal(self, plaintext: bytes | memoryview, aad: str) -> bytes:
        """Compress and maybe encrypt; aad binds the ciphertext to its name."""
        return self._frame(self._compressor().compress(plaintext), aad)

    def _frame(self, body: bytes, aad: str) -> bytes:
        flags = FLAG_ZSTD
        if self._aead is not None:
            nonce = os.urandom(NONCE_LEN)
            body = nonce + self._aead.encrypt(nonce, body, aad.encode())
            flags |= FLAG_AESGCM
        return MAGIC + bytes([VERSION, flags]) + body

    def sealer(self, size: int) -> Sealer:
        """Name and seal a plaintext of `size` bytes handed over in pieces:
        hashing and compressing each piece while it is in the CPU cache
        costs less than passing over one large buffer twice."""
        return Sealer(self, size)

    def _open(self, stored: bytes, aad: str) -> tuple[int, memoryview]:
        """Check the header and decrypt: the flags and the (compressed) body."""
        if len(stored) < HEADER_LEN or stored[:3] != MAGIC:
            raise IntegrityError(f"object {aad}: not a pitr object (bad header)")
        version, flags = stored[3], stored[4]
        if version != VERSION:
            raise IntegrityError(f"object {aad}: unknown object format version {version}")
        body = memoryview(stored)[HEADER_LEN:]
        if flags & FLAG_AESGCM:
            if self._aead is None:
                raise KeyError_(f"object {aad}: is encrypted and no repository key was given")
            from cryptography.exceptions import InvalidTag

            try:
                body = memoryview(
                    self._aead.decrypt(
                        bytes(body[:NONCE_LEN]), bytes(body[NONCE_LEN:]), aad.encode()
                    )
                )
            except InvalidTag:
                raise IntegrityError(
                    f"object {aad}: failed authentication (wrong key or damaged object)"
                ) from None
        elif self._aead is not None:
            raise IntegrityError(f"object {aad}: stored unencrypted in an encrypted repository")
        return flags, body

    @staticmethod
    def _content_size(body: memoryview, aad: str) -> int:
        """The size the frame declares (-1 if it does not). A damaged header
        can claim an absurd size that zstd would allocate up front: refuse
        what no frame of this length can hold (a block of at most 128 KiB
        takes at least 4 bytes)."""
        try:
            size = zstandard.get_frame_parameters(body).content_size
        except zstandard.ZstdError as e:
            raise IntegrityError(f"object {aad}: damaged compressed data ({e})") from e
        if size == zstandard.CONTENTSIZE_UNKNOWN:
            return -1
        if size > (len(body) + 4) << 15:
            raise IntegrityError(f"object {aad}: damaged compressed data (impossible size {size})")
        return int(size)

    def unseal(self, stored: bytes, aad: str) -> bytes:
        flags, body = self._open(stored, aad)
        if not flags & FLAG_ZSTD:
            return bytes(body)
        self._content_size(body, aad)
        try:
            return self._decompressor().decompress(body)
        except zstandard.ZstdError as e:
            raise IntegrityError(f"object {aad}: damaged compressed data ({e})") from e

    def decode(self, oid: str, stored: bytes) -> bytes:
        """Plaintext of a stored object, refused unless it hashes to oid."""
        plaintext = self.unseal(stored, oid)
        if self.object_id(plaintext) != oid:
            raise IntegrityError(f"object {oid[:16]}…: failed its hash check")
        return plaintext

    def decode_view(self, oid: str, stored: bytes) -> memoryview:
        """decode() into a buffer this thread reuses, valid until its next
        call: a restore writes gigabytes, and a fresh buffer per chunk costs
        more in page faults than the decompression itself."""
        flags, body = self._open(stored, oid)
        size = self._content_size(body, oid) if flags & FLAG_ZSTD else -1
        if size < 0:  # not compressed, or a frame without its size: the plain way
            return memoryview(self.decode(oid, stored))
        buf: mmap.mmap | None = getattr(self._local, "buf", None)
        if buf is None or len(buf) < size + 1:
            # mmap: page-aligned memory, which O_DIRECT writes of it need
            buf = self._local.buf = mmap.mmap(-1, max(size + 1, (1 << 20) + 4096))
        view = memoryview(buf)
        n = 0
        try:
            reader = self._decompressor().stream_reader(body)
            while n <= size and (got := reader.readinto(view[n:])):
                n += got
        except zstandard.ZstdError as e:
            raise IntegrityError(f"object {oid}: damaged compressed data ({e})") from e
        if n != size:
            raise IntegrityError(f"object {oid}: damaged compressed data ({n} bytes, not {size})")
        plaintext = view[:n]
        if self.object_id(plaintext) != oid:
            raise IntegrityError(f"object {oid[:16]}…: failed its hash check")
        return plaintext


class Sealer:
    """Codec.sealer(): update() with consecutive pieces, then finish()."""

    def __init__(self, codec: Codec, size: int) -> None:
        self._codec = codec
        self._hash = codec._hasher()
        # The pledged size goes into the frame header, which decode relies on.
        self._zstd = codec._compressor().compressobj(size=size)
        self._body: list[bytes] = []

    def update(self, piece: bytes | memoryview) -> None:
        self._hash.update(piece)
        self._body.append(self._zstd.compress(piece))

    def finish(self) -> tuple[str, bytes]:
        """The object's name and its stored bytes."""
        oid = self._hash.hexdigest()
        self._body.append(self._zstd.flush())
        return oid, self._codec._frame(b"".join(self._body), oid)
