"""Repository keys: from a passphrase to the 32-byte key the codec uses.

The key is derived with scrypt, a memory-hard KDF, from the passphrase and
a random salt. The salt, the scrypt parameters and a key check value (an
HMAC of a fixed label under the derived key) are kept in the plain
`pitr-repository.json`, under "encryption", so that any pitr can derive
the same key and tell a wrong passphrase at open time, before it reads an
object. Nothing here ever puts the passphrase or the key into a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

from catalog.errors import FormatError, KeyError_

KDF = "scrypt"
CIPHER = "aes-256-gcm"
NAMES = "hmac-sha256"
KEY_LEN = 32
SALT_LEN = 16
# 64 MiB of memory and about 0.2 s on a small machine: paid once per command.
DEFAULT_N = 1 << 16
DEFAULT_R = 8
DEFAULT_P = 1
# What a repository file may ask for; beyond this it is damaged or hostile
# (scrypt needs 128 * n * r * p bytes).
MIN_N, MAX_N = 1 << 10, 1 << 22
MAX_R, MAX_P = 32, 16
CHECK_LABEL = b"pitr key check v1"


@dataclass(frozen=True)
class KdfParams:
    salt: bytes
    n: int = DEFAULT_N
    r: int = DEFAULT_R
    p: int = DEFAULT_P

    def to_json(self) -> dict[str, Any]:
        return {
            "name": KDF,
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "salt": base64.b64encode(self.salt).decode(),
            "length": KEY_LEN,
        }

    @classmethod
    def from_json(cls, raw: Any, where: str) -> KdfParams:
        """Parameters read from a repository file, refused unless sane."""
        bad = f"{where}: encryption parameters are damaged"
        if not isinstance(raw, dict) or raw.get("name") != KDF:
            raise FormatError(f"{bad} (kdf must be {KDF})")
        n, r, p = raw.get("n"), raw.get("r"), raw.get("p")
        if not all(type(v) is int for v in (n, r, p)):
            raise FormatError(f"{bad} (n, r and p must be integers)")
        assert isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
        if not (MIN_N <= n <= MAX_N and n & (n - 1) == 0 and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
            raise FormatError(f"{bad} (n={n}, r={r}, p={p} out of range)")
        if raw.get("length", KEY_LEN) != KEY_LEN:
            raise FormatError(f"{bad} (key length must be {KEY_LEN})")
        try:
            salt = base64.b64decode(str(raw.get("salt", "")), validate=True)
        except binascii.Error:
            raise FormatError(f"{bad} (salt is not base64)") from None
        if len(salt) < SALT_LEN:
            raise FormatError(f"{bad} (salt shorter than {SALT_LEN} bytes)")
        return cls(salt, n, r, p)


def new_params(n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> KdfParams:
    """Fresh parameters with a random salt, for a new repository."""
    return KdfParams(os.urandom(SALT_LEN), n, r, p)


def derive_key(passphrase: bytes, params: KdfParams) -> bytes:
    """The repository key: scrypt(passphrase, salt). Deterministic for salt+params."""
    if not passphrase:
        raise KeyError_("the passphrase is empty")
    maxmem = 128 * params.n * params.r * params.p + (1 << 20)
    return hashlib.scrypt(
        passphrase,
        salt=params.salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=maxmem,
        dklen=KEY_LEN,
    )


def check_value(key: bytes) -> str:
    """What a repository file stores to recognise its key (reveals nothing of it)."""
    return hmac.new(key, CHECK_LABEL, hashlib.sha256).hexdigest()


def new_encryption(
    passphrase: bytes, params: KdfParams | None = None
) -> tuple[dict[str, Any], bytes]:
    """The "encryption" entry of a new repository file, and its key."""
    params = params or new_params()
    key = derive_key(passphrase, params)
    meta = {"cipher": CIPHER, "names": NAMES, "kdf": params.to_json(), "check": check_value(key)}
    return meta, key


def is_encrypted(meta: dict[str, Any]) -> bool:
    return meta.get("encryption") is not None


def _encryption(meta: dict[str, Any], where: str) -> dict[str, Any]:
    enc = meta.get("encryption")
    if not isinstance(enc, dict):
        raise FormatError(f"{where}: encryption entry is not an object")
    if enc.get("cipher") != CIPHER or enc.get("names") != NAMES:
        raise FormatError(
            f"{where}: unknown encryption scheme {enc.get('cipher')!r}/{enc.get('names')!r}"
        )
    if not isinstance(enc.get("check"), str):
        raise FormatError(f"{where}: encryption entry has no key check value")
    return enc


def key_from_meta(meta: dict[str, Any], passphrase: bytes, where: str) -> bytes:
    """Derive the key of the repository described by meta, and check it.

    KeyError_ if the repository is not encrypted (a passphrase for it is a
    mistake worth stopping on) or the passphrase is wrong."""
    if not is_encrypted(meta):
        raise KeyError_(f"repository {where} is not encrypted: unset PITR_PASSPHRASE and key_file")
    params = KdfParams.from_json(_encryption(meta, where).get("kdf"), where)
    key = derive_key(passphrase, params)
    check_key(meta, key, where)
    return key


def check_key(meta: dict[str, Any], key: bytes | None, where: str) -> None:
    """Refuse a key that does not belong to the repository described by meta."""
    if not is_encrypted(meta):
        if key is not None:
            raise KeyError_(
                f"repository {where} is not encrypted: unset PITR_PASSPHRASE and key_file"
            )
        return
    enc = _encryption(meta, where)
    if key is None:
        raise KeyError_(f"repository {where} is encrypted: set PITR_PASSPHRASE or key_file")
    if not hmac.compare_digest(check_value(key), enc["check"]):
        raise KeyError_(f"wrong passphrase for repository {where}")
