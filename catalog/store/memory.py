"""In-memory backend, for tests and throwaway repositories."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from catalog.errors import ObjectNotFound
from catalog.store.base import ObjectInfo, ObjectStore, check_key


class MemoryStore(ObjectStore):
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def put_if_absent(self, key: str, data: bytes) -> bool:
        check_key(key)
        with self._lock:
            if key in self._objects:
                return False
            self._objects[key] = (bytes(data), time.time())
            return True

    def get(self, key: str) -> bytes:
        try:
            return self._objects[check_key(key)][0]
        except KeyError:
            raise ObjectNotFound(f"get {key}: no such object") from None

    def stat(self, key: str) -> ObjectInfo | None:
        entry = self._objects.get(check_key(key))
        return None if entry is None else ObjectInfo(key, len(entry[0]), entry[1])

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            items = sorted((k, v) for k, v in self._objects.items() if k.startswith(prefix))
        for key, (data, mtime) in items:
            yield ObjectInfo(key, len(data), mtime)

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(check_key(key), None)
