"""Object store backends, chosen by repository URL."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from catalog.store.base import ObjectInfo, ObjectStore

__all__ = ["ObjectInfo", "ObjectStore", "open_store"]


def open_store(url: str, *, endpoint_url: str | None = None) -> ObjectStore:
    """file:///path, s3://bucket/prefix or memory://name."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from catalog.store.local import LocalStore

        return LocalStore(unquote(parsed.path))
    if parsed.scheme == "memory":
        from catalog.store.memory import MemoryStore

        return MemoryStore(url)
    if parsed.scheme == "s3":
        from catalog.store.retry import RetryingStore
        from catalog.store.s3 import S3Store

        # Network stores fail transiently; botocore's own retries are off.
        return RetryingStore(
            S3Store(parsed.netloc, parsed.path.strip("/"), endpoint_url=endpoint_url)
        )
    raise ValueError(f"repository url {url!r}: scheme must be file, s3 or memory")
