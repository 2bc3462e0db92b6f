"""Manifests and backup details (catalog/manifests.py): their JSON is a
stored format, so what earlier pitrs wrote must keep reading, byte for byte
where pitr writes the same thing again."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from catalog.details import PgBackupDetails, SnapshotDetails, SqliteBaseDetails, backup_details
from catalog.errors import FormatError
from catalog.manifests import (
    FileEntry,
    PgBackupManifest,
    SnapshotManifest,
    SqliteBaseManifest,
    StreamState,
    manifest_type,
    read_manifest,
)
from catalog.repository import Repository

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


def pg_literal() -> dict[str, Any]:
    """A base backup manifest exactly as archiver/postgres/backup.py wrote it
    before manifests were typed (keys in its order)."""
    return {
        "format": 1,
        "id": "20250116T120000Z-1a2b",
        "source": "db",
        "system_identifier": "7301234567890123456",
        "pg_version": 160004,
        "wal_segment_size": 16777216,
        "chunk_size": 4194304,
        "owner": "postgres",
        "timeline": 1,
        "start_lsn": "0/2000028",
        "stop_lsn": "0/2000138",
        "stop_segment": "000000010000000000000002",
        "started_at": "2025-01-16T12:00:00.123456+00:00",
        "finished_at": "2025-01-16T12:00:05+00:00",
        "backup_label": "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n",
        "tablespace_map": "",
        "entries": [
            {"path": "base", "kind": "dir", "mode": 16832},
            {"path": "base/1", "kind": "dir", "mode": 16832},
            {"path": "base/1/16384", "kind": "file", "mode": 33152, "chunks": [A, B], "size": 5000},
            {"path": "base/1/16385", "kind": "file", "mode": 33152, "chunks": [B, C], "size": 4100},
            {"path": "base/1/empty", "kind": "file", "mode": 33152, "chunks": [], "size": 0},
            {"path": "pg_tblspc/16400", "kind": "link", "mode": 41471, "target": "/srv/ts"},
            {"path": "PG_VERSION", "kind": "file", "mode": 33152, "chunks": [D], "size": 3},
        ],
    }


def redis_literal() -> dict[str, Any]:
    """A snapshot manifest exactly as archiver/redis/snapshot.py wrote it."""
    return {
        "format": 1,
        "kind": "redis_snapshot",
        "id": "20250116T120000Z-9f9f",
        "source": "cache",
        "redis_version": "7.2.4",
        "started_ms": 1737028800123,
        "finished_ms": 1737028801456,
        "patterns": ["cb:*", "cb:stream:*"],
        "keys": 12,
        "expiring": 2,
        "types": {"hash": 1, "stream": 2, "string": 9},
        "size_bytes": 123456,
        "chunks": [A, B, A],
        "streams": {
            "cb:stream:orders": {
                "last_id": "1737028800000-3",
                "entries_added": 7,
                "max_deleted_id": "1737028700000-0",
            },
            "cb:stream:old": {"last_id": "5-0", "entries_added": None, "max_deleted_id": None},
        },
    }


def stored(doc: dict[str, Any]) -> bytes:
    """The bytes the writers stored: compact JSON (archiver/backups.py)."""
    return json.dumps(doc, separators=(",", ":")).encode()


# -- the stored form -----------------------------------------------------------------


def test_a_base_backup_manifest_in_the_stored_form_reads_and_writes_back_the_same_bytes() -> None:
    m = PgBackupManifest.parse(stored(pg_literal()))
    assert m.id == "20250116T120000Z-1a2b" and m.source == "db"
    assert m.system_identifier == "7301234567890123456" and m.pg_version == 160004
    assert m.chunk_size == 4 << 20 and m.owner == "postgres" and m.timeline == 1
    assert m.started_at == datetime(2025, 1, 16, 12, 0, 0, 123456, tzinfo=UTC)
    assert m.backup_label.startswith("START WAL LOCATION") and m.tablespace_map == ""
    assert [e.kind for e in m.entries] == ["dir", "dir", "file", "file", "file", "link", "file"]
    big = m.entries[2]
    assert (big.path, big.mode, big.chunks, big.size) == ("base/1/16384", 33152, (A, B), 5000)
    assert m.entries[0].size is None and m.entries[0].chunks == ()
    assert m.entries[5].target == "/srv/ts"
    assert [e.path for e in m.files] == [
        "base/1/16384",
        "base/1/16385",
        "base/1/empty",
        "PG_VERSION",
    ]
    assert m.encode() == stored(pg_literal())


def test_a_snapshot_manifest_in_the_stored_form_reads_and_writes_back_the_same_bytes() -> None:
    m = SnapshotManifest.parse(stored(redis_literal()))
    assert (m.id, m.source, m.redis_version) == ("20250116T120000Z-9f9f", "cache", "7.2.4")
    assert (m.started_ms, m.finished_ms, m.keys, m.expiring) == (
        1737028800123,
        1737028801456,
        12,
        2,
    )
    assert m.patterns == ("cb:*", "cb:stream:*") and m.chunks == (A, B, A)
    assert m.types == {"hash": 1, "stream": 2, "string": 9}
    assert m.streams["cb:stream:orders"] == StreamState("1737028800000-3", 7, "1737028700000-0")
    assert m.streams["cb:stream:old"] == StreamState("5-0")
    assert list(m.streams) == ["cb:stream:orders", "cb:stream:old"]  # order kept
    assert m.encode() == stored(redis_literal())


def test_a_manifest_without_the_chunk_size_older_pitrs_did_not_write() -> None:
    doc = pg_literal()
    del doc["chunk_size"]
    m = PgBackupManifest.parse(stored(doc))
    assert m.chunk_size is None
    assert m.encode() == stored(doc)  # still not written


def test_fields_the_readers_always_defaulted_may_be_absent() -> None:
    doc = pg_literal()
    del doc["owner"], doc["tablespace_map"], doc["format"]
    doc["entries"] = [{"path": "f", "kind": "file", "mode": 33152}]  # no chunks, no size
    m = PgBackupManifest.from_json(doc)
    assert (m.owner, m.tablespace_map, m.format) == ("", "", 1)
    assert m.entries[0].chunks == () and m.entries[0].size is None
    snap = redis_literal()
    del snap["streams"], snap["format"]
    del snap["types"]
    s = SnapshotManifest.from_json(snap)
    assert s.streams == {} and s.types == {} and s.format == 1


def test_details_in_the_stored_form() -> None:
    pg = {"files": 4, "stop_segment": "000000010000000000000002"}
    assert PgBackupDetails.from_json(pg) == PgBackupDetails(4, "000000010000000000000002")
    assert PgBackupDetails.from_json(pg).to_json() == pg
    snap = {
        "keys": 12,
        "chunks": 3,
        "redis_version": "7.2.4",
        "started_ms": 1737028800123,
        "streams": {"cb:stream:orders": "1737028800000-3"},
    }
    d = SnapshotDetails.from_json(snap)
    assert (d.keys, d.chunks, d.streams) == (12, 3, {"cb:stream:orders": "1737028800000-3"})
    assert json.dumps(d.to_json()) == json.dumps(snap)
    assert backup_details("pg_base", pg) == PgBackupDetails(4, "000000010000000000000002")
    assert backup_details("redis_snapshot", snap) == d
    # A row without details (the column's default) reads as the readers defaulted it.
    assert SnapshotDetails.from_json(None) == SnapshotDetails.from_json({}) == SnapshotDetails()
    assert SnapshotDetails().keys == 0 and SnapshotDetails().streams == {}


def test_a_sqlite_base_copy_manifest_and_details_in_the_stored_form() -> None:
    # As archiver/sqlite/basecopy.py wrote them before manifests were typed.
    doc = {"page_size": 4096, "pages": 3, "chunks": [A, B, A]}
    m = SqliteBaseManifest.parse(stored(doc))
    assert (m.page_size, m.pages, m.chunks) == (4096, 3, (A, B, A))
    assert m.objects() == {A, B} and m.encode() == stored(doc)
    assert SqliteBaseManifest.parse(m.encode()) == m
    assert manifest_type("sqlite_base") is SqliteBaseManifest
    details = {
        "db": "main",
        "generation": "g1",
        "cycle": "1-deadbeef",
        "frame": 12,
        "cksum": "00ff",
        "page_size": 4096,
        "pages": 3,
        "wal_mode": True,
    }
    d = SqliteBaseDetails.from_json(details)
    assert d == SqliteBaseDetails("main", "g1", "1-deadbeef", 12, "00ff", 4096, 3, True)
    assert json.dumps(d.to_json()) == json.dumps(details)
    assert backup_details("sqlite_base", details) == d
    assert SqliteBaseDetails.from_json({"db": "main"}) == SqliteBaseDetails("main")
    for bad, why in [({"pages": 3}, "no 'db'"), ({"db": "m", "wal_mode": 1}, "'wal_mode'")]:
        with pytest.raises(FormatError, match=why):
            SqliteBaseDetails.from_json(bad)
    with pytest.raises(FormatError, match="'chunks' holds something other than text"):
        SqliteBaseManifest.from_json({"page_size": 4096, "pages": 1, "chunks": [None]})


def test_snapshot_details_summarise_the_manifest() -> None:
    m = SnapshotManifest.parse(stored(redis_literal()))
    d = SnapshotDetails.of(m)
    assert d == SnapshotDetails(
        12,
        3,
        "7.2.4",
        1737028800123,
        {"cb:stream:orders": "1737028800000-3", "cb:stream:old": "5-0"},
    )


# -- round trips ---------------------------------------------------------------------


def test_a_base_backup_manifest_round_trips() -> None:
    m = PgBackupManifest(
        id="b1",
        source="db",
        system_identifier="1",
        pg_version=150000,
        wal_segment_size=1 << 24,
        owner="",
        timeline=3,
        start_lsn="1/28",
        stop_lsn="1/100",
        stop_segment="000000030000000100000000",
        started_at=datetime(2025, 1, 1, tzinfo=UTC),
        finished_at=datetime(2025, 1, 1, 0, 1, tzinfo=UTC),
        backup_label="label",
        tablespace_map="16400 /srv/ts\n",
        entries=(
            FileEntry("base", "dir", 0o40700),
            FileEntry("base/x", "file", 0o100600, (A, C), 9),
            FileEntry("pg_tblspc/16400", "link", 0o120777, target="/srv/ts"),
        ),
        chunk_size=1 << 22,
    )
    assert PgBackupManifest.parse(m.encode()) == m
    assert PgBackupManifest.from_json(json.loads(json.dumps(m.to_json()))) == m


def test_a_snapshot_manifest_round_trips() -> None:
    m = SnapshotManifest(
        id="s1",
        source="cache",
        redis_version="6.2.0",
        started_ms=1,
        finished_ms=2,
        patterns=("*",),
        keys=1,
        expiring=0,
        types={"stream": 1},
        size_bytes=10,
        chunks=(B,),
        streams={"s": StreamState("1-1", None, None)},
    )
    assert SnapshotManifest.parse(m.encode()) == m
    assert m.to_json()["kind"] == "redis_snapshot"


# -- objects -------------------------------------------------------------------------


def test_the_objects_a_manifest_references() -> None:
    pg = PgBackupManifest.parse(stored(pg_literal()))
    assert pg.objects() == {A, B, C, D}  # every file's chunks, each once
    dirs_only = pg_literal()
    dirs_only["entries"] = dirs_only["entries"][:2]
    assert PgBackupManifest.from_json(dirs_only).objects() == set()
    snap = SnapshotManifest.parse(stored(redis_literal()))
    assert snap.objects() == {A, B}


def test_read_manifest_fetches_from_the_store_and_refuses_a_malformed_object(
    tmp_path: Path,
) -> None:
    repo, _ = Repository.init((tmp_path / "repo").as_uri(), f"sqlite:///{tmp_path}/catalog.db")
    pg = repo.put_chunk(stored(pg_literal())).oid
    snap = repo.put_chunk(stored(redis_literal())).oid
    assert read_manifest(repo, pg, PgBackupManifest).objects() == {A, B, C, D}
    assert read_manifest(repo, snap, manifest_type("redis_snapshot")).objects() == {A, B}
    assert manifest_type("pg_base") is PgBackupManifest
    bad = repo.put_chunk(b"\x00not json").oid
    with pytest.raises(FormatError, match=f"manifest {bad[:16]}"):
        read_manifest(repo, bad, PgBackupManifest)
    with pytest.raises(FormatError, match="no 'redis_version'"):
        read_manifest(repo, pg, SnapshotManifest)  # a base backup's manifest has no kind...
    with pytest.raises(FormatError):
        read_manifest(repo, snap, PgBackupManifest)  # ...and a snapshot's lacks a base backup's


def test_an_unknown_backup_kind_has_no_manifest_or_details_type() -> None:
    with pytest.raises(FormatError, match="sqlite_copy"):
        manifest_type("sqlite_copy")
    with pytest.raises(FormatError, match="sqlite_copy"):
        backup_details("sqlite_copy", {})


# -- malformed input -----------------------------------------------------------------


def _pg(**change: Any) -> dict[str, Any]:
    doc = pg_literal()
    for key, value in change.items():
        if value is _DROP:
            del doc[key]
        else:
            doc[key] = value
    return doc


_DROP = object()


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ([], "not a JSON object"),
        (_pg(id=_DROP), "no 'id'"),
        (_pg(backup_label=_DROP), "no 'backup_label'"),
        (_pg(entries=_DROP), "no 'entries'"),
        (_pg(entries={"path": "x"}), "'entries' is not a list"),
        (_pg(entries=["x"]), "entry 0: not a JSON object"),
        (_pg(entries=[{"path": "x", "kind": "file"}]), "entry 0: no 'mode'"),
        (_pg(entries=[{"path": "x", "kind": "file", "mode": "0600"}]), "'mode' is not an integer"),
        (_pg(entries=[{"path": 1, "kind": "file", "mode": 1}]), "'path' is not text"),
        (_pg(entries=[{"path": "x", "kind": "file", "mode": 1, "chunks": A}]), "'chunks'"),
        (_pg(entries=[{"path": "x", "kind": "file", "mode": 1, "chunks": [1]}]), "'chunks'"),
        (_pg(entries=[{"path": "x", "kind": "file", "mode": 1, "size": "9"}]), "'size'"),
        (_pg(pg_version=True), "'pg_version' is not an integer"),
        (_pg(timeline=None), "'timeline' is not an integer"),
        (_pg(chunk_size="4M"), "'chunk_size'"),
        (_pg(started_at="yesterday"), "'started_at' is not an ISO time"),
        (_pg(format=2), "manifest format 2, written by a newer pitr"),
    ],
)
def test_a_malformed_base_backup_manifest_is_refused(doc: Any, why: str) -> None:
    with pytest.raises(FormatError, match=why):
        PgBackupManifest.from_json(doc)


def _snap(**change: Any) -> dict[str, Any]:
    doc = redis_literal()
    doc.update(change)
    return doc


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (_snap(kind="pg_base"), "a 'pg_base' manifest"),
        (_snap(chunks=None), "'chunks' is not a list"),
        (_snap(keys="12"), "'keys' is not an integer"),
        (_snap(types={"string": "9"}), "'types'"),
        (_snap(streams=[]), "'streams' is not a JSON object"),
        (_snap(streams={"s": {"entries_added": 1}}), "stream s: no 'last_id'"),
        (_snap(streams={"s": {"last_id": 5}}), "'last_id' is not text"),
    ],
)
def test_a_malformed_snapshot_manifest_is_refused(doc: Any, why: str) -> None:
    with pytest.raises(FormatError, match=why):
        SnapshotManifest.from_json(doc)


@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe", b'"a string"', b"[1, 2]"])
def test_bytes_that_are_no_manifest_are_refused(data: bytes) -> None:
    for cls in (PgBackupManifest, SnapshotManifest):
        with pytest.raises(FormatError):
            cls.parse(data)


def test_malformed_details_are_refused() -> None:
    with pytest.raises(FormatError, match="'files' is not an integer"):
        PgBackupDetails.from_json({"files": "4"})
    with pytest.raises(FormatError, match="'streams'"):
        SnapshotDetails.from_json({"streams": {"s": 5}})
    with pytest.raises(FormatError, match="not a JSON object"):
        SnapshotDetails.from_json([1])
