"""Local-directory backend: temp file, fsync, link into place, fsync the directory.

os.link refuses an existing name atomically, which gives put-if-absent
without a lock: two writers of the same key both succeed and leave one file.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from catalog.durable import fsync_dir, synced_temp
from catalog.errors import ObjectNotFound, StorageError
from catalog.store.base import ObjectInfo, ObjectStore, check_key

TMP_DIR = ".tmp"


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.url = self.root.resolve().as_uri()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        tmp_dir = self.root / TMP_DIR
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with synced_temp(tmp_dir / f"{uuid.uuid4().hex}.tmp", data) as tmp:
                    os.link(tmp, path)  # refuses a name that exists
            except FileExistsError:
                return False
            fsync_dir(path.parent)
            return True
        except OSError as e:
            raise StorageError(f"put {key}: {e.strerror or e}") from e

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"get {key}: no such object") from None
        except OSError as e:
            raise StorageError(f"get {key}: {e.strerror or e}") from e

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"stat {key}: {e.strerror or e}") from e
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the directory that can hold the prefix, in sorted order.
        base, _, _ = prefix.rpartition("/")
        start = self.root / base if base else self.root
        if not start.is_dir():
            return
        yield from self._walk(start, prefix)

    def _walk(self, directory: Path, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for entry in entries:
            rel = Path(entry.path).relative_to(self.root).as_posix()
            if rel == TMP_DIR:
                continue
            if entry.is_dir(follow_symlinks=False):
                if rel.startswith(prefix) or prefix.startswith(rel + "/"):
                    yield from self._walk(Path(entry.path), prefix)
            elif rel.startswith(prefix):
                st = entry.stat(follow_symlinks=False)
                yield ObjectInfo(rel, st.st_size, st.st_mtime)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise StorageError(f"delete {key}: {e.strerror or e}") from e
