"""The repository on a local directory with an SQLite catalog."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from archiver.filecopy import Copier
from catalog.db.engine import HEAD_REVISION, Catalog
from catalog.db.models import Base
from catalog.errors import (
    CatalogError,
    FormatError,
    IntegrityError,
    ObjectNotFound,
    StorageError,
)
from catalog.queries import ensure_source, get_source, known_objects, record_objects
from catalog.records import IdentityRecord, record_key
from catalog.repository import (
    FORMAT_VERSION,
    REPO_CONFIG_KEY,
    Chunk,
    Repository,
    object_key,
)

MiB = 1 << 20


def urls(root: Path) -> tuple[str, str]:
    return (root / "repo").as_uri(), f"sqlite:///{root / 'catalog.db'}"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    repository, created = Repository.init(*urls(tmp_path))
    assert created
    yield repository
    repository.close()


def stored_bytes(repo: Repository) -> int:
    return sum(info.size for info in repo.store.list("objects/"))


# -- init and open -----------------------------------------------------------------


def test_init_creates_the_repository_file_and_the_schema(tmp_path: Path) -> None:
    url, catalog_url = urls(tmp_path)
    repo, created = Repository.init(url, catalog_url)
    try:
        assert created is True
        meta = json.loads((tmp_path / "repo" / REPO_CONFIG_KEY).read_text())
        assert meta["format_version"] == FORMAT_VERSION
        assert "created_at" in meta
        assert repo.meta() == meta
        assert repo.catalog.revision() == HEAD_REVISION
        tables = set(inspect(repo.catalog.engine).get_table_names())
        # The migration builds exactly the tables the models describe.
        assert set(Base.metadata.tables) <= tables
        assert tables - set(Base.metadata.tables) == {"alembic_version"}
    finally:
        repo.close()


def test_init_twice_is_harmless(tmp_path: Path) -> None:
    url, catalog_url = urls(tmp_path)
    first, created = Repository.init(url, catalog_url)
    chunk = first.put_chunk(b"kept across init")
    first.close()
    meta_before = (tmp_path / "repo" / REPO_CONFIG_KEY).read_bytes()
    second, created_again = Repository.init(url, catalog_url)
    try:
        assert created is True
        assert created_again is False
        assert (tmp_path / "repo" / REPO_CONFIG_KEY).read_bytes() == meta_before
        assert second.get_chunk(chunk.oid) == b"kept across init"
        assert second.catalog.revision() == HEAD_REVISION
    finally:
        second.close()


def test_open_of_an_empty_directory_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    url, catalog_url = urls(tmp_path)
    with pytest.raises(FormatError, match="not a pitr repository"):
        Repository.open(url, catalog_url)


def test_open_refuses_a_newer_format_version(tmp_path: Path) -> None:
    url, catalog_url = urls(tmp_path)
    Repository.init(url, catalog_url)[0].close()
    config = tmp_path / "repo" / REPO_CONFIG_KEY
    meta = json.loads(config.read_text())
    meta["format_version"] = 99
    config.write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="version 99"):
        Repository.open(url, catalog_url)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"created_at": "2025-01-16"}', "format version None"),
    ],
)
def test_open_refuses_a_damaged_repository_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    url, catalog_url = urls(tmp_path)
    Repository.init(url, catalog_url)[0].close()
    (tmp_path / "repo" / REPO_CONFIG_KEY).write_bytes(content)
    with pytest.raises(FormatError, match=message):
        Repository.open(url, catalog_url)


def test_open_fills_a_catalog_without_schema_from_the_store(tmp_path: Path) -> None:
    url, catalog_url = urls(tmp_path)
    repo = Repository.init(url, catalog_url)[0]
    repo.put_record(record_key("db", "marks", "m"), {"type": "unknown-to-this-pitr"})
    repo.put_fact(IdentityRecord("db", "7000000000000000001", 150000, 16 << 20))
    repo.close()
    other = Repository.open(url, f"sqlite:///{tmp_path / 'empty.db'}")
    assert other.catalog.revision() == HEAD_REVISION
    with other.catalog.session() as s:
        src = get_source(s, "db")
        assert src is not None and src.system_identifier == "7000000000000000001"
    other.close()


# -- chunks --------------------------------------------------------------------------


def test_put_chunk_get_chunk_roundtrip(repo: Repository) -> None:
    data = bytes(range(256)) * 1000
    chunk = repo.put_chunk(data)
    assert chunk.size == len(data)
    assert chunk.stored_size > 0
    assert repo.store.stat(object_key(chunk.oid)) is not None
    assert object_key(chunk.oid) == f"objects/{chunk.oid[:2]}/{chunk.oid}"
    assert repo.get_chunk(chunk.oid) == data


def test_put_chunk_twice_stores_nothing_the_second_time(repo: Repository) -> None:
    data = random.Random(1).randbytes(100_000)
    first = repo.put_chunk(data)
    before = stored_bytes(repo)
    second = repo.put_chunk(data)
    assert second.oid == first.oid
    assert second.stored_size == 0
    assert stored_bytes(repo) == before == first.stored_size
    assert len(list(repo.store.list("objects/"))) == 1


def test_get_chunk_of_a_missing_object(repo: Repository) -> None:
    with pytest.raises(ObjectNotFound, match="missing"):
        repo.get_chunk("ab" * 32)


def test_flipped_byte_in_the_object_file_is_an_integrity_error(
    repo: Repository, tmp_path: Path
) -> None:
    chunk = repo.put_chunk(random.Random(2).randbytes(50_000))
    path = tmp_path / "repo" / object_key(chunk.oid)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(IntegrityError, match=chunk.oid[:16]):
        repo.get_chunk(chunk.oid)


# -- records ---------------------------------------------------------------------------


def test_put_record_get_record_roundtrip(repo: Repository) -> None:
    key = record_key("db", "wal", "000000010000000000000001")
    assert key == "records/db/wal/000000010000000000000001"
    fact = {"name": "000000010000000000000001", "oid": "ab" * 32, "size": 16 * MiB}
    assert repo.put_record(key, fact) is None
    assert repo.get_record(key) == fact
    assert list(repo.list_records("records/db/")) == [key]


def test_put_record_on_an_existing_key_returns_the_stored_fact(repo: Repository) -> None:
    key = record_key("db", "wal", "00000002.history")
    original = {"content": "1\t0/3000000\tno recovery target specified\n"}
    assert repo.put_record(key, original) is None
    assert repo.put_record(key, {"content": "something else"}) == original
    assert repo.put_record(key, original) == original
    assert repo.get_record(key) == original


def test_get_record_refuses_a_damaged_record(repo: Repository, tmp_path: Path) -> None:
    key = record_key("cache", "batch", "x")
    repo.put_record(key, {"n": 1})
    path = tmp_path / "repo" / key
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(IntegrityError, match=key):
        repo.get_record(key)


# -- catalog queries ---------------------------------------------------------------------


def test_catalog_queries_on_objects_and_sources(repo: Repository) -> None:
    chunks = [repo.put_chunk(bytes([i]) * 1000) for i in range(3)]
    with repo.catalog.session() as s:
        src = ensure_source(s, "db", "postgres")
        assert src.id is not None
        record_objects(s, chunks + chunks[:1])  # duplicates are fine
    with repo.catalog.session() as s:
        assert ensure_source(s, "db", "postgres").id == src.id
        assert known_objects(s, [c.oid for c in chunks] + ["cd" * 32]) == {c.oid for c in chunks}
        record_objects(s, chunks)  # already known: nothing new, no error
    with pytest.raises(CatalogError, match="recorded as postgres"), repo.catalog.session() as s:
        ensure_source(s, "db", "redis")


def test_catalog_session_rolls_back_on_error(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    catalog.upgrade()
    catalog.upgrade()  # idempotent
    with pytest.raises(RuntimeError), catalog.session() as s:
        ensure_source(s, "gone", "redis")
        raise RuntimeError("abort")
    with catalog.session() as s:
        assert known_objects(s, []) == set()
        assert get_source(s, "gone") is None
    catalog.close()


# -- the dedup acceptance test -------------------------------------------------------------

SIZE = 50 * MiB
CHUNK = MiB
CHANGE_AT = 20 * MiB + 700_000  # straddles the boundary between chunks 20 and 21
CHANGE_LEN = 500_000  # 1% of the file, in one place


def write_by_put_chunk(repo: Repository, path: Path) -> list[Chunk]:
    """One chunk at a time, as a Redis snapshot stores what it captured."""
    data = path.read_bytes()
    return [repo.put_chunk(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]


def write_by_copier(repo: Repository, path: Path) -> list[Chunk]:
    """In parallel from the file, as a base backup copies a relation file."""
    with Copier(repo, set(), CHUNK, sealers=2, writers=2) as copier:
        chunks = copier.copy(path, path.stat().st_size).chunks()
    assert chunks is not None
    return chunks


@pytest.mark.parametrize("writer", [write_by_put_chunk, write_by_copier], ids=["serial", "pool"])
def test_second_write_of_a_one_percent_change_stores_only_the_changed_chunks(
    repo: Repository, tmp_path: Path, writer: Callable[[Repository, Path], list[Chunk]]
) -> None:
    original = random.Random(42).randbytes(SIZE)
    changed = (
        original[:CHANGE_AT]
        + random.Random(43).randbytes(CHANGE_LEN)
        + original[CHANGE_AT + CHANGE_LEN :]
    )
    assert len(changed) == SIZE
    data_file = tmp_path / "relation.bin"

    def write(content: bytes) -> list[Chunk]:
        data_file.write_bytes(content)
        return writer(repo, data_file)

    first = write(original)
    after_first = stored_bytes(repo)
    second = write(changed)
    after_second = stored_bytes(repo)

    assert len(first) == len(second) == SIZE // CHUNK
    assert sum(c.stored_size for c in first) == after_first
    assert after_first >= SIZE  # random data does not compress

    touched = set(range(CHANGE_AT // CHUNK, (CHANGE_AT + CHANGE_LEN - 1) // CHUNK + 1))
    assert touched == {20, 21}
    new = {i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a.oid != b.oid}
    assert new == touched
    assert {i for i, c in enumerate(second) if c.stored_size > 0} == touched
    added = after_second - after_first
    assert added == sum(c.stored_size for c in second)
    assert len(touched) * CHUNK <= added <= len(touched) * (CHUNK + 1024)
    assert added <= 2 * (CHUNK + 1024)
    assert len(list(repo.store.list("objects/"))) == len(first) + len(touched)

    restored = b"".join(repo.get_chunk(c.oid) for c in second)
    assert restored == changed
    assert b"".join(repo.get_chunk(c.oid) for c in first) == original


# -- catalog URLs that cannot work -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("not a url", FormatError, "not a database URL"),
        ("nosuchdb://host/x", FormatError, "unsupported database"),
        ("sqlite:////proc/no/such/dir/catalog.db", StorageError, "/proc/no/such/dir"),
    ],
)
def test_unusable_catalog_url_is_one_clear_error(
    url: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        Catalog(url).upgrade()
    assert "\n" not in str(info.value)


def test_unreachable_catalog_server_is_a_one_line_storage_error() -> None:
    # Port 1 on loopback: a real connection attempt that is refused at once.
    catalog = Catalog("postgresql://pitr:hunter2@127.0.0.1:1/pitr")
    with pytest.raises(StorageError, match="127.0.0.1") as info:
        catalog.check_schema()
    assert "\n" not in str(info.value)
    assert "hunter2" not in str(info.value)
    catalog.close()
