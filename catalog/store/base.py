"""The object store interface: a flat namespace of immutable keys."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float  # seconds since the epoch, as the backend reports it


class ObjectStore(ABC):
    """Every backend offers these few operations; retries and fault
    injection are wrappers around a backend, not code inside it."""

    url: str

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Store data under key durably unless key exists. True if written."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes of key; ObjectNotFound if absent."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Size and time of key, or None if absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every key starting with prefix (order is not part of the contract)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove key; removing an absent key is not an error."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; most backends hold none."""


def check_key(key: str) -> str:
    """Keys are relative slash-separated names without dot segments."""
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")
    return key
