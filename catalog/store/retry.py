"""Retries with exponential backoff and jitter, around any ObjectStore.

Only TransientStorageError is retried. ObjectNotFound, permanent storage
errors and bad keys pass through at once. When the attempts run out, the
last transient error comes back as a plain (permanent) StorageError, so the
caller above does not start a second retry loop of its own.

put_if_absent after an ambiguous failure (the write may have happened
before the error came back): the retry finds the object there and answers
False ("already stored"), which every caller treats as stored. Writes are
atomic in every backend, so an object that is there is whole.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from catalog.errors import StorageError, TransientStorageError
from catalog.store.base import ObjectInfo, ObjectStore

T = TypeVar("T")


class RetryingStore(ObjectStore):
    def __init__(
        self,
        inner: ObjectStore,
        attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"retry attempts {attempts}: must be at least 1")
        self.inner = inner
        self.url = inner.url
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._rng = rng or random.Random()

    def delay(self, failures: int) -> float:
        """Backoff before the next attempt: half fixed, half random ("equal jitter")."""
        cap = min(self.max_delay, self.base_delay * 2.0 ** (failures - 1))
        return cap / 2 + self._rng.uniform(0, cap / 2)

    def _gave_up(self, error: TransientStorageError) -> StorageError:
        return StorageError(f"{error} (gave up after {self.attempts} attempts)")

    def _retry(self, fn: Callable[[], T]) -> T:
        for failures in range(1, self.attempts + 1):
            try:
                return fn()
            except TransientStorageError as e:
                if failures == self.attempts:
                    raise self._gave_up(e) from e
                self._sleep(self.delay(failures))
        raise AssertionError("unreachable")  # the loop returns or raises

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._retry(lambda: self.inner.put_if_absent(key, data))

    def get(self, key: str) -> bytes:
        return self._retry(lambda: self.inner.get(key))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Ranged read, for inner stores that offer one (S3)."""
        get_range = getattr(self.inner, "get_range", None)
        if get_range is None:
            return self.get(key)[start : start + length]
        return self._retry(lambda: bytes(get_range(key, start, length)))

    def stat(self, key: str) -> ObjectInfo | None:
        return self._retry(lambda: self.inner.stat(key))

    def delete(self, key: str) -> None:
        self._retry(lambda: self.inner.delete(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Restart a failed listing and skip what was already yielded.

        An inner store that lists in ascending key order (lists_sorted) is
        resumed after the last key (with its list_after when it has one);
        any other is deduplicated by a set of the keys seen. Progress since
        the last failure renews the attempts, so a long listing survives
        occasional errors.
        """
        ordered = bool(getattr(self.inner, "lists_sorted", False))
        list_after = getattr(self.inner, "list_after", None) if ordered else None
        last: str | None = None
        seen: set[str] = set()
        failures = 0
        while True:
            progressed = False
            if list_after is not None and last is not None:
                listing = list_after(prefix, last)
            else:
                listing = self.inner.list(prefix)
            try:
                for info in listing:
                    if ordered:
                        if last is not None and info.key <= last:
                            continue
                        last = info.key
                    else:
                        if info.key in seen:
                            continue
                        seen.add(info.key)
                    progressed = True
                    yield info
                return
            except TransientStorageError as e:
                failures = 1 if progressed else failures + 1
                if failures >= self.attempts:
                    raise self._gave_up(e) from e
                self._sleep(self.delay(failures))

    def close(self) -> None:
        self.inner.close()
