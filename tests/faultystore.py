"""Fault injection around any ObjectStore, for tests.

A seeded share of calls fails. Of the failing writes, a share is
"ambiguous": the write reaches the inner store and only then does the call
report an error, as when a connection drops after S3 stored the object but
before its answer arrived. Listings fail part-way, after some keys.
Counters record what was injected so that tests can check it happened.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable, Iterator

from catalog.errors import CatalogError, TransientStorageError
from catalog.store.base import ObjectInfo, ObjectStore

ALL_OPERATIONS = frozenset({"put_if_absent", "get", "get_range", "stat", "list", "delete"})
WRITES = frozenset({"put_if_absent", "delete"})


class FaultyStore(ObjectStore):
    def __init__(
        self,
        inner: ObjectStore,
        fail_ratio: float,
        seed: int = 0,
        operations: Iterable[str] = ALL_OPERATIONS,
        exc: type[CatalogError] = TransientStorageError,
        ambiguous_ratio: float = 0.0,
    ) -> None:
        unknown = set(operations) - ALL_OPERATIONS
        if unknown:
            raise ValueError(f"faulty store: unknown operations {sorted(unknown)}")
        self.inner = inner
        self.url = inner.url
        self.lists_sorted = bool(getattr(inner, "lists_sorted", False))
        self.fail_ratio = fail_ratio
        self.ambiguous_ratio = ambiguous_ratio
        self.operations = frozenset(operations)
        self.exc = exc
        self.calls: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()  # failed before reaching the inner store
        self.ambiguous: Counter[str] = Counter()  # reached it, then reported failure
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def _roll(self, op: str) -> str:
        """ok, fail or ambiguous, drawn from the seeded generator."""
        with self._lock:
            self.calls[op] += 1
            if op not in self.operations or self._rng.random() >= self.fail_ratio:
                return "ok"
            if op in WRITES and self._rng.random() < self.ambiguous_ratio:
                self.ambiguous[op] += 1
                return "ambiguous"
            self.failures[op] += 1
            return "fail"

    def _fail(self, op: str, key: str, after: bool = False) -> CatalogError:
        when = "after the write" if after else "before the call"
        return self.exc(f"{op} {key}: injected failure {when}")

    def put_if_absent(self, key: str, data: bytes) -> bool:
        outcome = self._roll("put_if_absent")
        if outcome == "fail":
            raise self._fail("put", key)
        written = self.inner.put_if_absent(key, data)
        if outcome == "ambiguous":
            raise self._fail("put", key, after=True)
        return written

    def get(self, key: str) -> bytes:
        if self._roll("get") != "ok":
            raise self._fail("get", key)
        return self.inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if self._roll("get_range") != "ok":
            raise self._fail("get range", key)
        get_range = getattr(self.inner, "get_range", None)
        if get_range is None:
            return self.inner.get(key)[start : start + length]
        return bytes(get_range(key, start, length))

    def stat(self, key: str) -> ObjectInfo | None:
        if self._roll("stat") != "ok":
            raise self._fail("stat", key)
        return self.inner.stat(key)

    def delete(self, key: str) -> None:
        outcome = self._roll("delete")
        if outcome == "fail":
            raise self._fail("delete", key)
        self.inner.delete(key)
        if outcome == "ambiguous":
            raise self._fail("delete", key, after=True)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self._listing(prefix, self.inner.list(prefix))

    def list_after(self, prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        """Resumable listing, when the inner store lists in order."""
        list_after = getattr(self.inner, "list_after", None)
        if list_after is not None:
            return self._listing(prefix, list_after(prefix, start_after))
        items = (i for i in self.inner.list(prefix) if i.key > start_after)
        return self._listing(prefix, items)

    def _listing(self, prefix: str, items: Iterator[ObjectInfo]) -> Iterator[ObjectInfo]:
        if self._roll("list") == "ok":
            yield from items
            return
        with self._lock:
            cut = self._rng.randrange(0, 40)  # keys yielded before the failure
        for n, info in enumerate(items):
            if n == cut:
                break
            yield info
        raise self._fail("list", prefix or "(all)")

    def close(self) -> None:
        self.inner.close()
