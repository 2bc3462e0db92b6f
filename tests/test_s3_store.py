"""The S3 backend against a real moto_server (the shared s3_server and s3_bucket
fixtures), and the retry and fault wrappers."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import boto3
import pytest

from catalog.errors import ObjectNotFound, StorageError, TransientStorageError
from catalog.store import StoreOptions, open_store
from catalog.store.memory import MemoryStore
from catalog.store.retry import RetryingStore
from catalog.store.s3 import S3Store
from tests.faultystore import FaultyStore
from tests.servers import S3Bucket, S3Server, free_port

MiB = 1024 * 1024

# -- helpers ------------------------------------------------------------------------


def client(endpoint_url: str) -> Any:
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url)


def s3(bucket: S3Bucket, prefix: str = "repo", **kw: Any) -> S3Store:
    return S3Store(bucket.bucket, prefix, endpoint_url=bucket.endpoint_url, **kw)


def no_sleep(_seconds: float) -> None:
    pass


def data_for(i: int) -> bytes:
    return f"object {i} ".encode() * (1 + i % 37)


# -- the S3 backend -------------------------------------------------------------------


def test_open_store_gives_a_retrying_s3_store(s3_bucket: S3Bucket) -> None:
    options = StoreOptions(endpoint_url=s3_bucket.endpoint_url)
    store = open_store(f"s3://{s3_bucket.bucket}/base/", options)
    assert isinstance(store, RetryingStore)
    assert isinstance(store.inner, S3Store)
    assert store.url == f"s3://{s3_bucket.bucket}/base"
    assert store.put_if_absent("objects/ab/ab01", b"hello") is True
    assert store.put_if_absent("objects/ab/ab01", b"other") is False
    assert store.get("objects/ab/ab01") == b"hello"
    raw = client(s3_bucket.endpoint_url).get_object(
        Bucket=s3_bucket.bucket, Key="base/objects/ab/ab01"
    )
    assert raw["Body"].read() == b"hello"
    store.close()


def test_multipart_upload_of_a_large_object(s3_bucket: S3Bucket) -> None:
    store = s3(s3_bucket, multipart_threshold=5 * MiB, part_size=5 * MiB)
    data = os.urandom(MiB) * 12  # 12 MiB: three parts, the last one short
    assert store.put_if_absent("objects/big/one", data) is True
    head = client(s3_bucket.endpoint_url).head_object(
        Bucket=s3_bucket.bucket, Key="repo/objects/big/one"
    )
    assert head["ETag"].strip('"').endswith("-3")  # S3 names multipart objects by part count
    assert store.get("objects/big/one") == data
    info = store.stat("objects/big/one")
    assert info is not None and info.size == len(data)
    assert store.put_if_absent("objects/big/one", b"small") is False
    assert store.get("objects/big/one") == data
    uploads = client(s3_bucket.endpoint_url).list_multipart_uploads(Bucket=s3_bucket.bucket)
    assert uploads.get("Uploads", []) == []


class _NoHeadCheck(S3Store):
    """A writer that lost the race: its HEAD saw nothing, then the other one wrote."""

    def _head(self, full: str, action: str) -> dict[str, Any] | None:
        return None


@pytest.mark.parametrize("size", [100, 6 * MiB], ids=["single", "multipart"])
def test_conditional_write_refuses_an_existing_object(s3_bucket: S3Bucket, size: int) -> None:
    first = s3(s3_bucket, multipart_threshold=5 * MiB, part_size=5 * MiB)
    late = _NoHeadCheck(
        s3_bucket.bucket,
        "repo",
        endpoint_url=s3_bucket.endpoint_url,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
    )
    original = b"a" * size
    assert first.put_if_absent("records/db/wal/x", original) is True
    # The endpoint itself refuses the write (If-None-Match: *), and no upload lingers.
    assert late.put_if_absent("records/db/wal/x", b"b" * size) is False
    assert first.get("records/db/wal/x") == original
    uploads = client(s3_bucket.endpoint_url).list_multipart_uploads(Bucket=s3_bucket.bucket)
    assert uploads.get("Uploads", []) == []


def test_prefixes_isolate_repositories_in_one_bucket(s3_bucket: S3Bucket) -> None:
    a, ab, bare = s3(s3_bucket, "a"), s3(s3_bucket, "ab/"), s3(s3_bucket, "")
    assert a.put_if_absent("records/x", b"from a") is True
    assert ab.put_if_absent("records/x", b"from ab") is True
    assert a.put_if_absent("records/y", b"only a") is True
    assert a.get("records/x") == b"from a"
    assert ab.get("records/x") == b"from ab"
    assert {i.key for i in a.list()} == {"records/x", "records/y"}
    assert {i.key for i in ab.list("records/")} == {"records/x"}
    with pytest.raises(ObjectNotFound):
        ab.get("records/y")
    assert ab.stat("records/y") is None
    ab.delete("records/x")
    assert a.get("records/x") == b"from a"
    assert {i.key for i in bare.list()} == {"a/records/x", "a/records/y"}


def test_ranged_get(s3_bucket: S3Bucket) -> None:
    store = s3(s3_bucket)
    data = bytes(range(256)) * 4
    store.put_if_absent("objects/r/one", data)
    assert store.get_range("objects/r/one", 10, 20) == data[10:30]
    assert store.get_range("objects/r/one", 0, 1) == data[:1]
    assert store.get_range("objects/r/one", 1000, 100) == data[1000:]  # short at the end
    assert store.get_range("objects/r/one", len(data), 10) == b""
    assert store.get_range("objects/r/one", 5, 0) == b""
    with pytest.raises(ObjectNotFound, match="objects/r/two"):
        store.get_range("objects/r/two", 0, 10)
    retrying = RetryingStore(FaultyStore(store, 0.5, seed=3), sleep=no_sleep)
    for start in range(0, 1000, 50):
        assert retrying.get_range("objects/r/one", start, 33) == data[start : start + 33]


def test_missing_bucket_is_a_one_line_permanent_error(s3_server: S3Server) -> None:
    store = S3Store("no-such-bucket-here", "p", endpoint_url=s3_server.endpoint_url)
    for call in (
        lambda: store.get("records/k1"),
        lambda: store.put_if_absent("records/k1", b"x"),
        lambda: list(store.list("records/")),
    ):
        with pytest.raises(StorageError) as info:
            call()
        err = info.value
        assert not isinstance(err, TransientStorageError)
        text = str(err)
        assert "\n" not in text
        assert "NoSuchBucket" in text
        assert "s3://no-such-bucket-here/p/records/" in text
        assert "testing" not in text  # no credentials in messages


def test_unreachable_endpoint_is_transient_then_given_up() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = S3Store("bucket", "p", endpoint_url=endpoint)
    with pytest.raises(TransientStorageError, match="records/k"):
        store.get("records/k")
    delays: list[float] = []
    retrying = RetryingStore(store, attempts=3, sleep=delays.append)
    with pytest.raises(StorageError, match="3 attempts") as info:
        retrying.stat("records/k")
    assert not isinstance(info.value, TransientStorageError)
    assert len(delays) == 2


def test_boto3_is_not_imported_for_the_store_package() -> None:
    code = (
        "import sys, catalog.store\n"
        "from catalog.store import open_store\n"
        "open_store('memory://x')\n"
        "from catalog.store import retry\n"
        "import tests.faultystore\n"
        "print('boto3' in sys.modules, 'botocore' in sys.modules)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where tests/ is
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.split() == ["False", "False"]


# -- the retry and fault wrappers ------------------------------------------------------


def test_retries_over_faults_archive_everything_with_no_false_success(s3_bucket: S3Bucket) -> None:
    raw = s3(s3_bucket)
    faulty = FaultyStore(
        raw, fail_ratio=0.3, seed=7, operations={"put_if_absent"}, ambiguous_ratio=0.4
    )
    store = RetryingStore(faulty, attempts=3, sleep=no_sleep)
    keys = [f"objects/{i % 16:02x}/obj{i:03d}" for i in range(200)]
    pending = list(range(200))
    gave_up = 0
    for _round in range(20):
        failed = []
        for i in pending:
            try:
                store.put_if_absent(keys[i], data_for(i))
            except TransientStorageError:
                pytest.fail("a transient error escaped the retry wrapper")
            except StorageError:
                failed.append(i)
                # A put that raised left the object absent or whole, never partial.
                info = raw.stat(keys[i])
                assert info is None or raw.get(keys[i]) == data_for(i)
                continue
            # A put that returned is stored: readable now, with its content.
            assert raw.get(keys[i]) == data_for(i)
        gave_up += len(failed)
        pending = failed
        if not pending:
            break
    assert pending == []
    assert faulty.failures["put_if_absent"] > 0
    assert faulty.ambiguous["put_if_absent"] > 0
    assert gave_up > 0  # some puts exhausted their attempts and were retried by the caller
    assert {i.key for i in raw.list()} == set(keys)
    for i, key in enumerate(keys):
        assert store.get(key) == data_for(i)


def test_object_not_found_is_not_retried() -> None:
    faulty = FaultyStore(MemoryStore(), fail_ratio=0.0)
    delays: list[float] = []
    store = RetryingStore(faulty, sleep=delays.append)
    with pytest.raises(ObjectNotFound):
        store.get("objects/none")
    assert store.stat("objects/none") is None
    assert faulty.calls["get"] == 1
    assert faulty.calls["stat"] == 1
    assert delays == []


def test_permanent_error_is_not_retried() -> None:
    faulty = FaultyStore(MemoryStore(), fail_ratio=1.0, operations={"get"}, exc=StorageError)
    delays: list[float] = []
    store = RetryingStore(faulty, sleep=delays.append)
    with pytest.raises(StorageError, match="injected") as info:
        store.get("objects/x")
    assert "attempts" not in str(info.value)
    assert faulty.calls["get"] == 1
    assert delays == []


def test_transient_errors_give_up_with_a_permanent_error_and_growing_delays() -> None:
    faulty = FaultyStore(MemoryStore(), fail_ratio=1.0)
    delays: list[float] = []
    store = RetryingStore(faulty, attempts=5, base_delay=0.2, max_delay=1.0, sleep=delays.append)
    with pytest.raises(StorageError, match="gave up after 5 attempts") as info:
        store.put_if_absent("objects/x", b"x")
    assert not isinstance(info.value, TransientStorageError)
    assert faulty.calls["put_if_absent"] == 5
    assert len(delays) == 4
    caps = [0.2, 0.4, 0.8, 1.0]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps, strict=True))


@pytest.mark.parametrize("backend", ["s3", "memory"])
def test_listing_survives_failures_without_duplicates(s3_bucket: S3Bucket, backend: str) -> None:
    inner = s3(s3_bucket) if backend == "s3" else MemoryStore()
    keys = {f"records/db/wal/{i:024X}" for i in range(150)}
    for key in keys:
        inner.put_if_absent(key, b"r")
    inner.put_if_absent("objects/aa/other", b"o")
    faulty = FaultyStore(inner, fail_ratio=0.4, seed=11, operations={"list"})
    store = RetryingStore(faulty, sleep=no_sleep)
    for _ in range(10):
        listed = [info.key for info in store.list("records/")]
        assert len(listed) == len(set(listed))
        assert set(listed) == keys
    assert faulty.failures["list"] >= 2
