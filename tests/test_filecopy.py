"""archiver.filecopy: files copied in ranges of chunks, by several threads,
come back whole and in order, whatever their size and whatever happened to
them between being listed and being read."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.filecopy import RANGE_CHUNKS, Copier
from catalog.repository import Repository

CHUNK = 4096
RANGE = RANGE_CHUNKS * CHUNK


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    repository, _ = Repository.init((tmp_path / "repo").as_uri(), f"sqlite:///{tmp_path}/c.db")
    yield repository
    repository.close()


def restored(repo: Repository, chunks: list) -> bytes:
    return b"".join(repo.get_chunk(c.oid) for c in chunks)


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, RANGE, RANGE + 1, 3 * RANGE, 3 * RANGE + 100],
)
def test_a_file_comes_back_whole_whatever_its_size(
    repo: Repository, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    with Copier(repo, set(), CHUNK, sealers=2, writers=2) as copier:
        chunks = copier.copy(path, size).chunks()
    assert chunks is not None
    assert restored(repo, chunks) == data
    assert all(c.size == CHUNK for c in chunks[:-1])
    assert len(chunks) == -(-size // CHUNK)


def test_many_files_at_once_and_repeated_content_is_stored_once(
    repo: Repository, tmp_path: Path
) -> None:
    block = os.urandom(CHUNK)
    files = {}
    for i in range(40):
        data = os.urandom(i * 1000) + block * 3  # the last chunks repeat across files
        files[tmp_path / f"f{i}"] = data
        (tmp_path / f"f{i}").write_bytes(data)
    with Copier(repo, set(), CHUNK) as copier:
        copies = {p: copier.copy(p, len(d)) for p, d in files.items()}
        results = {p: c.chunks() for p, c in copies.items()}
    for p, chunks in results.items():
        assert chunks is not None and restored(repo, chunks) == files[p]
    objects = {c.oid for chunks in results.values() for c in chunks or []}
    assert sum(c.stored_size > 0 for chunks in results.values() for c in chunks or []) == len(
        objects
    )


def test_a_file_that_grew_is_read_to_its_end(repo: Repository, tmp_path: Path) -> None:
    path = tmp_path / "grew"
    data = os.urandom(2 * RANGE + 10)
    path.write_bytes(data)
    with Copier(repo, set(), CHUNK) as copier:
        chunks = copier.copy(path, RANGE // 2).chunks()  # listed when it was smaller
    assert chunks is not None and restored(repo, chunks) == data


def test_a_file_that_shrank_ends_where_it_ends_with_no_gap(
    repo: Repository, tmp_path: Path
) -> None:
    path = tmp_path / "shrank"
    data = os.urandom(RANGE + 3 * CHUNK)  # ends on a chunk boundary inside the second range
    path.write_bytes(data)
    with Copier(repo, set(), CHUNK) as copier:
        chunks = copier.copy(path, 4 * RANGE).chunks()  # listed when it was larger
    assert chunks is not None and restored(repo, chunks) == data


def test_a_file_removed_before_it_was_read_is_left_out(repo: Repository, tmp_path: Path) -> None:
    with Copier(repo, set(), CHUNK) as copier:
        assert copier.copy(tmp_path / "gone", 3 * RANGE).chunks() is None


def test_known_objects_are_not_written_again(repo: Repository, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(5 * CHUNK))
    with Copier(repo, set(), CHUNK) as copier:
        first = copier.copy(path, 5 * CHUNK).chunks()
    assert first is not None and all(c.stored_size > 0 for c in first)
    with Copier(repo, {c.oid for c in first}, CHUNK) as copier:
        again = copier.copy(path, 5 * CHUNK).chunks()
    assert again is not None and [c.oid for c in again] == [c.oid for c in first]
    assert all(c.stored_size == 0 for c in again)


def test_a_read_error_is_raised_not_swallowed(repo: Repository, tmp_path: Path) -> None:
    path = tmp_path / "dir-not-file"
    path.mkdir()
    with Copier(repo, set(), CHUNK) as copier, pytest.raises(IsADirectoryError):
        copier.copy(path, 10).chunks()
