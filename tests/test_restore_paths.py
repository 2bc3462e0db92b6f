"""A manifest is data from the store: a path in it that tries to leave the
target directory is refused before anything is written."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from catalog.db.models import Backup
from catalog.errors import IntegrityError
from catalog.manifests import FileEntry, PgBackupManifest
from catalog.queries import ensure_source
from catalog.repository import Repository
from recovery.postgres.planner import BackupPoint, PgPlan
from recovery.postgres.restore import restore_postgres

NOW = datetime(2025, 1, 16, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("path", ["../escaped", "/etc/escaped", "base/../../escaped", "a\\..\\b"])
def test_a_manifest_path_leaving_the_target_is_refused(tmp_path: Path, path: str) -> None:
    repo, _ = Repository.init((tmp_path / "repo").as_uri(), f"sqlite:///{tmp_path}/catalog.db")
    data = repo.put_chunk(b"not for outside")
    manifest = PgBackupManifest(
        id="b1",
        source="db",
        system_identifier="7300000000000000001",
        pg_version=160000,
        wal_segment_size=16 << 20,
        owner="",
        timeline=1,
        start_lsn="0/2000028",
        stop_lsn="0/2000100",
        stop_segment="000000010000000000000002",
        started_at=NOW,
        finished_at=NOW,
        backup_label="",
        tablespace_map="",
        entries=(
            FileEntry("PG_VERSION", "file", 0o600, (), 0),
            FileEntry(path, "file", 0o600, (data.oid,), 15),
        ),
    )
    oid = repo.put_chunk(manifest.encode()).oid
    with repo.catalog.session() as s:
        src = ensure_source(s, "db", "postgres")
        s.add(
            Backup(
                id="b1",
                source_id=src.id,
                kind="pg_base",
                started_at=NOW,
                finished_at=NOW,
                size_bytes=15,
                stored_bytes=15,
                manifest_oid=oid,
            )
        )
    point = BackupPoint("b1", 1, 0x2000028, 0x2000100, NOW)
    plan = PgPlan(NOW, 1, point, (("000000010000000000000002", NOW),), 1, NOW, NOW)
    target = tmp_path / "deep" / "restored"
    with pytest.raises(IntegrityError, match="leaves the target directory"):
        restore_postgres(repo, plan, target, restore_command="true", stop_at_target=False)
    assert not target.exists()
    assert not (tmp_path / "deep" / "escaped").exists() and not (tmp_path / "escaped").exists()
    leftovers = list((tmp_path / "deep").glob("*")) + list((tmp_path / "deep").glob(".*"))
    assert leftovers == []  # no staging directory left behind either


def _lay_down_case(tmp_path: Path, chunk_size: int | None) -> tuple[Repository, list[FileEntry]]:
    import os

    repo, _ = Repository.init((tmp_path / "repo").as_uri(), f"sqlite:///{tmp_path}/catalog.db")
    files = {
        "base/1/16384": os.urandom(3 << 20),  # whole pages, >= 1 MiB: O_DIRECT, split in pieces
        "base/1/16385": os.urandom(200_001),  # an odd size: ordinary writes
        "base/1/16386": b"",
        "PG_VERSION": b"15\n",
    }
    step = chunk_size or 64 << 10
    entries = [FileEntry("base/1", "dir", 0o700)]
    for path, data in files.items():
        chunks = tuple(repo.put_chunk(data[i : i + step]).oid for i in range(0, len(data), step))
        entries.append(FileEntry(path, "file", 0o600, chunks, len(data)))
    return repo, entries


@pytest.mark.parametrize("chunk_size", [64 << 10, None], ids=["pieces", "whole-files"])
def test_large_files_are_written_in_parallel_pieces_byte_for_byte(
    tmp_path: Path, chunk_size: int | None
) -> None:
    from recovery.postgres.restore import PIECE_CHUNKS, _lay_down

    repo, entries = _lay_down_case(tmp_path, chunk_size)
    assert len(entries[1].chunks) > 2 * PIECE_CHUNKS  # several pieces of one file
    root = tmp_path / "restored"
    root.mkdir()
    written = _lay_down(repo, root, entries, 2, None, chunk_size)
    assert written == sum(e.size or 0 for e in entries)
    for entry in entries[1:]:
        restored = (root / entry.path).read_bytes()
        assert restored == b"".join(repo.get_chunk(oid) for oid in entry.chunks)
        assert (root / entry.path).stat().st_mode & 0o777 == 0o600


def test_a_chunk_of_the_wrong_size_is_refused_not_written_at_a_wrong_offset(
    tmp_path: Path,
) -> None:
    from recovery.postgres.restore import _lay_down

    repo, entries = _lay_down_case(tmp_path, 64 << 10)
    big = entries[1]
    short = repo.put_chunk(b"short").oid  # not the manifest's chunk size
    entries[1] = replace(big, chunks=(*big.chunks[:3], short, *big.chunks[4:]))
    root = tmp_path / "restored"
    root.mkdir()
    with pytest.raises(IntegrityError, match="chunk 3 holds 5 bytes"):
        _lay_down(repo, root, entries, 2, None, 64 << 10)


def test_a_filesystem_refusing_o_direct_gets_ordinary_writes(tmp_path: Path, monkeypatch) -> None:
    import errno
    import os

    from recovery.postgres import restore as pgrestore

    real = pgrestore._write_chunks
    refused: list[str] = []

    def no_direct(repo, path, oids, first, end, chunk_size, create, flags):  # type: ignore[no-untyped-def]
        if flags & os.O_DIRECT:  # as tmpfs did before Linux 6.6
            refused.append(path.name)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(repo, path, oids, first, end, chunk_size, create, flags)

    monkeypatch.setattr(pgrestore, "_write_chunks", no_direct)
    repo, entries = _lay_down_case(tmp_path, 64 << 10)
    root = tmp_path / "restored"
    root.mkdir()
    pgrestore._lay_down(repo, root, entries, 2, None, 64 << 10)
    assert "16384" in refused
    big = entries[1]
    assert (root / big.path).read_bytes() == b"".join(repo.get_chunk(o) for o in big.chunks)
