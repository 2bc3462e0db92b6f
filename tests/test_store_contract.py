"""One contract for every ObjectStore backend.

Each backend is a factory in BACKENDS; adding one (S3 on moto_server, say)
is a new entry whose factory may pull other fixtures through `request`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import ParseResult

import pytest

from catalog.errors import ObjectNotFound
from catalog.store import ObjectStore, StoreOptions, open_store, register, registry, schemes
from catalog.store.local import TMP_DIR, LocalStore
from catalog.store.memory import MemoryStore


def _memory(request: pytest.FixtureRequest) -> ObjectStore:
    return MemoryStore(f"memory://{request.node.name}")


def _local(request: pytest.FixtureRequest) -> ObjectStore:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return open_store((tmp_path / "store").as_uri())


def _s3(request: pytest.FixtureRequest) -> ObjectStore:
    bucket = request.getfixturevalue("s3_bucket")
    options = StoreOptions(endpoint_url=bucket.endpoint_url)
    return open_store(f"s3://{bucket.bucket}/repo", options)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], ObjectStore]] = {
    "memory": _memory,
    "local": _local,
    "s3": _s3,
}


@pytest.fixture(params=list(BACKENDS))
def store(request: pytest.FixtureRequest) -> Iterator[ObjectStore]:
    backend = BACKENDS[request.param](request)
    try:
        yield backend
    finally:
        backend.close()


def keys(store: ObjectStore, prefix: str = "") -> set[str]:
    return {info.key for info in store.list(prefix)}


def test_put_if_absent_writes_once_and_keeps_first_content(store: ObjectStore) -> None:
    assert store.put_if_absent("objects/aa/first", b"one") is True
    assert store.put_if_absent("objects/aa/first", b"two") is False
    assert store.get("objects/aa/first") == b"one"


def test_get_of_absent_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound, match="nothing/here"):
        store.get("nothing/here")


def test_stat_reports_size_and_none_when_absent(store: ObjectStore) -> None:
    store.put_if_absent("records/db/wal/a", b"x" * 1234)
    info = store.stat("records/db/wal/a")
    assert info is not None
    assert info.key == "records/db/wal/a"
    assert info.size == 1234
    assert info.mtime > 0
    assert store.stat("records/db/wal/b") is None


def test_list_by_prefix(store: ObjectStore) -> None:
    names = [
        "objects/ab/ab01",
        "objects/ab/ab02",
        "objects/abc/abc1",
        "objects/cd/cd01",
        "records/db/wal/000000010000000000000001",
        "records/db/wal/000000010000000000000002",
        "records/dbx/wal/000000010000000000000001",
        "pitr-repository.json",
    ]
    for name in names:
        assert store.put_if_absent(name, name.encode())
    assert keys(store) == set(names)
    assert keys(store, "objects/ab/") == {"objects/ab/ab01", "objects/ab/ab02"}
    # A prefix is a string prefix, not a directory: it may end mid-name.
    assert keys(store, "objects/ab") == {"objects/ab/ab01", "objects/ab/ab02", "objects/abc/abc1"}
    assert keys(store, "objects/ab/ab0") == {"objects/ab/ab01", "objects/ab/ab02"}
    assert keys(store, "records/db/") == {
        "records/db/wal/000000010000000000000001",
        "records/db/wal/000000010000000000000002",
    }
    assert keys(store, "records/db") == {n for n in names if n.startswith("records/")}
    assert keys(store, "pitr-") == {"pitr-repository.json"}
    assert keys(store, "objects/zz/") == set()
    assert keys(store, "missing") == set()
    sizes = {info.key: info.size for info in store.list("objects/")}
    assert sizes == {n: len(n) for n in names if n.startswith("objects/")}


def test_delete_then_absent_and_delete_of_absent_is_fine(store: ObjectStore) -> None:
    store.put_if_absent("objects/ee/gone", b"bye")
    store.delete("objects/ee/gone")
    assert store.stat("objects/ee/gone") is None
    with pytest.raises(ObjectNotFound):
        store.get("objects/ee/gone")
    assert keys(store, "objects/") == set()
    store.delete("objects/ee/gone")
    store.delete("never/was")
    # A deleted key can be written again.
    assert store.put_if_absent("objects/ee/gone", b"back") is True
    assert store.get("objects/ee/gone") == b"back"


def test_binary_data_with_every_byte_value(store: ObjectStore) -> None:
    data = bytes(range(256)) * 64 + bytes(reversed(range(256)))
    assert store.put_if_absent("bin/all", data)
    assert store.get("bin/all") == data
    info = store.stat("bin/all")
    assert info is not None and info.size == len(data)


def test_empty_object(store: ObjectStore) -> None:
    assert store.put_if_absent("empty/one", b"") is True
    assert store.get("empty/one") == b""
    info = store.stat("empty/one")
    assert info is not None and info.size == 0
    assert store.put_if_absent("empty/one", b"late") is False
    assert store.get("empty/one") == b""
    assert keys(store, "empty/") == {"empty/one"}


@pytest.mark.parametrize("bad", ["../x", "/abs", "a//b", "a/./b", "a/../b", "", "a/"])
def test_invalid_keys_raise_value_error(store: ObjectStore, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        store.put_if_absent(bad, b"x")
    with pytest.raises(ValueError, match="invalid object key"):
        store.get(bad)
    with pytest.raises(ValueError, match="invalid object key"):
        store.stat(bad)
    with pytest.raises(ValueError, match="invalid object key"):
        store.delete(bad)


def test_concurrent_put_if_absent_of_one_key(store: ObjectStore) -> None:
    writers = 8
    barrier = threading.Barrier(writers)
    results: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def put(i: int) -> None:
        payload = f"writer {i}".encode() * 1000
        barrier.wait()
        try:
            written = store.put_if_absent("objects/cc/contended", payload)
        except BaseException as e:  # collected so that the main thread fails on it
            with lock:
                errors.append(e)
            return
        with lock:
            results.append(written)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == writers
    assert results.count(True) == 1
    assert keys(store, "objects/cc/") == {"objects/cc/contended"}
    stored = store.get("objects/cc/contended")
    assert stored in {f"writer {i}".encode() * 1000 for i in range(writers)}


# -- backends by scheme ---------------------------------------------------------


def test_an_unknown_scheme_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        open_store("ftp://host/repo")
    assert str(info.value) == "repository url 'ftp://host/repo': scheme must be file, s3 or memory"
    assert schemes() == ("file", "s3", "memory")


def test_open_store_picks_the_backend_of_the_scheme(tmp_path: Path) -> None:
    local = open_store((tmp_path / "a b").as_uri())
    assert isinstance(local, LocalStore) and local.root == tmp_path / "a b"
    memory = open_store("memory://scratch")
    assert isinstance(memory, MemoryStore) and memory.url == "memory://scratch"


def test_a_scheme_is_one_registration_given_its_url_and_the_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))  # undone afterwards
    seen: list[tuple[str, str, StoreOptions]] = []

    @register("probe")
    def probe(url: ParseResult, options: StoreOptions) -> ObjectStore:
        seen.append((url.netloc, url.path, options))
        return MemoryStore(url.geturl())

    options = StoreOptions(endpoint_url="http://127.0.0.1:9")
    assert open_store("probe://box/some/where", options).url == "probe://box/some/where"
    assert open_store("probe://box").url == "probe://box"
    assert seen == [("box", "/some/where", options), ("box", "", StoreOptions())]
    assert schemes()[-1] == "probe"
    with pytest.raises(ValueError, match="registered twice"):
        register("probe")(probe)


# -- local backend only ---------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_local_leaves_no_temp_files(local: LocalStore) -> None:
    for i in range(20):
        local.put_if_absent(f"objects/{i:02x}/obj{i}", bytes([i]) * 4096)
        local.put_if_absent(f"objects/{i:02x}/obj{i}", b"again")  # the losing path too
    tmp_dir = local.root / TMP_DIR
    assert tmp_dir.is_dir()
    assert list(tmp_dir.iterdir()) == []
    # The temp directory is never listed as an object.
    assert not any(k.startswith(TMP_DIR) for k in keys(local))
    assert len(keys(local)) == 20


def test_local_put_is_a_complete_file(local: LocalStore) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    assert local.put_if_absent("objects/ff/big", data)
    path = local.root / "objects" / "ff" / "big"
    assert path.read_bytes() == data
    # A second handle on the same directory sees the same, whole object.
    again = LocalStore(local.root)
    assert again.get("objects/ff/big") == data
    assert again.put_if_absent("objects/ff/big", b"other") is False
    assert path.read_bytes() == data


def test_local_failed_write_leaves_no_temp_file_and_no_object(local: LocalStore) -> None:
    # A real short write: the child may not grow any file beyond 64 KiB.
    script = f"""
import resource, signal
from catalog.errors import StorageError
from catalog.store.local import LocalStore
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
store = LocalStore({str(local.root)!r})
store.put_if_absent("objects/00/small", b"s" * 1000)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
try:
    store.put_if_absent("objects/00/big", b"b" * (1 << 20))
except StorageError as e:
    print("refused:", e)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused: put objects/00/big")
    assert list((local.root / TMP_DIR).iterdir()) == []
    assert local.stat("objects/00/big") is None
    assert local.get("objects/00/small") == b"s" * 1000
