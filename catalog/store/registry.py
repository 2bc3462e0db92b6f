"""Backends by URL scheme: one factory per scheme, registered once.

A factory gets the parsed repository URL and the store options, and
imports its backend only when it is called, so that boto3 loads only for
an s3:// repository. Retries, logging and fault injection are wrappers
around what a factory returns, never code inside a backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import ParseResult, unquote, urlparse

from catalog.store.base import ObjectStore


@dataclass(frozen=True)
class StoreOptions:
    """What a backend needs besides its URL; each backend reads its own fields."""

    endpoint_url: str | None = None  # s3: an S3-compatible endpoint (None: the AWS chain)


Factory = Callable[[ParseResult, StoreOptions], ObjectStore]

_FACTORIES: dict[str, Factory] = {}


def register(scheme: str) -> Callable[[Factory], Factory]:
    """Make the decorated factory the backend of scheme:// URLs."""

    def add(factory: Factory) -> Factory:
        if scheme in _FACTORIES:
            raise ValueError(f"store scheme {scheme!r}: registered twice")
        _FACTORIES[scheme] = factory
        return factory

    return add


def schemes() -> tuple[str, ...]:
    """The schemes a repository URL may have, in the order they were registered."""
    return tuple(_FACTORIES)


def one_of(words: tuple[str, ...] | list[str]) -> str:
    """'a, b or c': how messages list the choices."""
    if len(words) < 2:
        return "".join(words)
    return f"{', '.join(words[:-1])} or {words[-1]}"


def open_store(url: str, options: StoreOptions | None = None) -> ObjectStore:
    """The backend for url (file:///path, s3://bucket/prefix, memory://name)."""
    parsed = urlparse(url)
    factory = _FACTORIES.get(parsed.scheme)
    if factory is None:
        raise ValueError(f"repository url {url!r}: scheme must be {one_of(schemes())}")
    return factory(parsed, options or StoreOptions())


@register("file")
def _local(url: ParseResult, options: StoreOptions) -> ObjectStore:
    from catalog.store.local import LocalStore

    return LocalStore(unquote(url.path))


@register("s3")
def _s3(url: ParseResult, options: StoreOptions) -> ObjectStore:
    from catalog.store.retry import RetryingStore
    from catalog.store.s3 import S3Store

    # Network stores fail transiently; botocore's own retries are off.
    store = S3Store(url.netloc, url.path.strip("/"), endpoint_url=options.endpoint_url)
    return RetryingStore(store)


@register("memory")
def _memory(url: ParseResult, options: StoreOptions) -> ObjectStore:
    from catalog.store.memory import MemoryStore

    return MemoryStore(url.geturl())
