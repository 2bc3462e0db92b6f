"""Manifests, typed once (a backup's details: catalog/details.py).

A manifest is the JSON document a finished base backup (PostgreSQL) or
keyspace snapshot (Redis) stores as an object of its own: what the backup
holds and which objects hold it. Its record carries the manifest's object id
(catalog.records.BackupRecord.manifest_oid) and a small summary, the
details, which the catalog's backups.details column holds too.

The JSON field names are a stored format: never rename one. Fields an older
pitr did not write are optional here and read with the default it implied.
Malformed input raises FormatError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, TypeVar

from catalog.errors import FormatError
from catalog.jsondoc import JsonDoc, JsonFields, dump_json, load_json

if TYPE_CHECKING:
    from catalog.repository import Repository

MANIFEST_FORMAT = 1  # the newest manifest format this pitr reads and writes

M = TypeVar("M", bound="Manifest")


def _check_format(d: JsonFields) -> int:
    version = d.integer("format", MANIFEST_FORMAT)
    if version > MANIFEST_FORMAT:
        raise FormatError(
            f"{d.where}: manifest format {version}, written by a newer pitr "
            f"(this one reads up to {MANIFEST_FORMAT})"
        )
    return version


# -- manifests ---------------------------------------------------------------------


class Manifest:
    """What a backup of any kind stores about itself."""

    def to_json(self) -> JsonDoc:
        raise NotImplementedError

    @classmethod
    def from_json(cls: type[M], doc: object, where: str = "manifest") -> M:
        raise NotImplementedError

    def objects(self) -> set[str]:
        """Ids of the objects the manifest references (not its own)."""
        raise NotImplementedError

    def encode(self) -> bytes:
        """The manifest as it is stored: compact JSON."""
        return dump_json(self.to_json())

    @classmethod
    def parse(cls: type[M], data: bytes | str, where: str = "manifest") -> M:
        return cls.from_json(load_json(data, where), where)


@dataclass(frozen=True)
class FileEntry:
    """One entry of PGDATA in a base backup: a directory, a file with the
    chunks that hold its bytes, or a tablespace link."""

    path: str  # relative to PGDATA, slash-separated
    kind: str  # dir | file | link
    mode: int
    chunks: tuple[str, ...] = ()  # files: object ids, in order
    size: int | None = None  # files: bytes stored (None: not recorded, not checked)
    target: str | None = None  # links: where the link pointed

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    def to_json(self) -> JsonDoc:
        doc: JsonDoc = {"path": self.path, "kind": self.kind, "mode": self.mode}
        if self.target is not None:
            doc["target"] = self.target
        if self.is_file:
            doc["chunks"] = list(self.chunks)
        if self.size is not None:
            doc["size"] = self.size
        return doc

    @classmethod
    def from_json(cls, doc: object, where: str = "manifest entry") -> FileEntry:
        d = JsonFields(doc, where)
        return cls(
            d.text("path"),
            d.text("kind"),
            d.integer("mode"),
            d.texts("chunks", ()),
            d.opt_integer("size"),
            d.opt_text("target"),
        )


@dataclass(frozen=True)
class PgBackupManifest(Manifest):
    """The manifest of a PostgreSQL base backup (backup kind pg_base)."""

    id: str
    source: str
    system_identifier: str
    pg_version: int
    wal_segment_size: int
    owner: str  # the user who owned PGDATA ("" when unknown)
    timeline: int
    start_lsn: str
    stop_lsn: str
    stop_segment: str
    started_at: datetime
    finished_at: datetime
    backup_label: str
    tablespace_map: str
    entries: tuple[FileEntry, ...]
    # Every chunk of a file but its last holds this many bytes, so restore
    # writes pieces of a file in parallel; None in manifests of older pitrs.
    chunk_size: int | None = None
    format: int = MANIFEST_FORMAT

    def to_json(self) -> JsonDoc:
        doc: JsonDoc = {
            "format": self.format,
            "id": self.id,
            "source": self.source,
            "system_identifier": self.system_identifier,
            "pg_version": self.pg_version,
            "wal_segment_size": self.wal_segment_size,
        }
        if self.chunk_size is not None:
            doc["chunk_size"] = self.chunk_size
        doc |= {
            "owner": self.owner,
            "timeline": self.timeline,
            "start_lsn": self.start_lsn,
            "stop_lsn": self.stop_lsn,
            "stop_segment": self.stop_segment,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "backup_label": self.backup_label,
            "tablespace_map": self.tablespace_map,
            "entries": [e.to_json() for e in self.entries],
        }
        return doc

    @classmethod
    def from_json(cls, doc: object, where: str = "manifest") -> PgBackupManifest:
        d = JsonFields(doc, where)
        version = _check_format(d)
        entries = tuple(
            FileEntry.from_json(e, f"{where}: entry {i}") for i, e in enumerate(d.array("entries"))
        )
        return cls(
            id=d.text("id"),
            source=d.text("source"),
            system_identifier=d.text("system_identifier"),
            pg_version=d.integer("pg_version"),
            wal_segment_size=d.integer("wal_segment_size"),
            owner=d.text("owner", ""),
            timeline=d.integer("timeline"),
            start_lsn=d.text("start_lsn"),
            stop_lsn=d.text("stop_lsn"),
            stop_segment=d.text("stop_segment"),
            started_at=d.when("started_at"),
            finished_at=d.when("finished_at"),
            backup_label=d.text("backup_label"),
            tablespace_map=d.text("tablespace_map", ""),
            entries=entries,
            chunk_size=d.opt_integer("chunk_size"),
            format=version,
        )

    @property
    def files(self) -> list[FileEntry]:
        return [e for e in self.entries if e.is_file]

    def objects(self) -> set[str]:
        return {oid for entry in self.entries for oid in entry.chunks}


@dataclass(frozen=True)
class StreamState:
    """A stream's counters as read with its DUMP (XINFO STREAM): where replay
    of archived entries resumes."""

    last_id: str  # the last ID generated: the snapshot holds entries up to it
    entries_added: int | None = None  # Redis 7 and later
    max_deleted_id: str | None = None

    def to_json(self) -> JsonDoc:
        return {
            "last_id": self.last_id,
            "entries_added": self.entries_added,
            "max_deleted_id": self.max_deleted_id,
        }

    @classmethod
    def from_json(cls, doc: object, where: str = "stream") -> StreamState:
        d = JsonFields(doc, where)
        return cls(d.text("last_id"), d.opt_integer("entries_added"), d.opt_text("max_deleted_id"))


@dataclass(frozen=True)
class SnapshotManifest(Manifest):
    """The manifest of a Redis keyspace snapshot (backup kind redis_snapshot)."""

    KIND: ClassVar[str] = "redis_snapshot"
    id: str
    source: str
    redis_version: str
    started_ms: int  # the server's TIME when the SCAN started: the snapshot time
    finished_ms: int
    patterns: tuple[str, ...]
    keys: int
    expiring: int  # keys with a TTL
    types: Mapping[str, int]  # key type -> how many
    size_bytes: int
    chunks: tuple[str, ...]  # object ids of the key records, in key order
    streams: Mapping[str, StreamState] = field(default_factory=dict)  # by stream label
    format: int = MANIFEST_FORMAT

    def to_json(self) -> JsonDoc:
        return {
            "format": self.format,
            "kind": self.KIND,
            "id": self.id,
            "source": self.source,
            "redis_version": self.redis_version,
            "started_ms": self.started_ms,
            "finished_ms": self.finished_ms,
            "patterns": list(self.patterns),
            "keys": self.keys,
            "expiring": self.expiring,
            "types": dict(self.types),
            "size_bytes": self.size_bytes,
            "chunks": list(self.chunks),
            "streams": {label: s.to_json() for label, s in self.streams.items()},
        }

    @classmethod
    def from_json(cls, doc: object, where: str = "manifest") -> SnapshotManifest:
        d = JsonFields(doc, where)
        version = _check_format(d)
        if d.text("kind", cls.KIND) != cls.KIND:
            raise FormatError(f"{where}: a {d.doc['kind']!r} manifest, not a {cls.KIND!r} one")
        return cls(
            id=d.text("id"),
            source=d.text("source"),
            redis_version=d.text("redis_version"),
            started_ms=d.integer("started_ms"),
            finished_ms=d.integer("finished_ms"),
            patterns=d.texts("patterns"),
            keys=d.integer("keys"),
            expiring=d.integer("expiring"),
            types=d.counts("types"),
            size_bytes=d.integer("size_bytes"),
            chunks=d.texts("chunks"),
            streams={
                str(label): StreamState.from_json(s, f"{where}: stream {label}")
                for label, s in d.table("streams", {}).items()
            },
            format=version,
        )

    def objects(self) -> set[str]:
        return set(self.chunks)


@dataclass(frozen=True)
class SqliteBaseManifest(Manifest):
    """The manifest of a SQLite base copy (backup kind sqlite_base): the
    database's pages, in order, cut into chunks."""

    page_size: int
    pages: int
    chunks: tuple[str, ...]

    def to_json(self) -> JsonDoc:
        return {"page_size": self.page_size, "pages": self.pages, "chunks": list(self.chunks)}

    @classmethod
    def from_json(cls, doc: object, where: str = "manifest") -> SqliteBaseManifest:
        d = JsonFields(doc, where)
        return cls(d.integer("page_size"), d.integer("pages"), d.texts("chunks"))

    def objects(self) -> set[str]:
        return set(self.chunks)


# Each backup kind's manifest type (catalog.records.BackupRecord.KINDS).
MANIFEST_TYPES: dict[str, type[Manifest]] = {
    "pg_base": PgBackupManifest,
    SnapshotManifest.KIND: SnapshotManifest,
    "sqlite_base": SqliteBaseManifest,
}


def manifest_type(kind: str) -> type[Manifest]:
    try:
        return MANIFEST_TYPES[kind]
    except KeyError:
        raise FormatError(f"no manifest type for backup kind {kind!r}") from None


def read_manifest(repo: Repository, oid: str, cls: type[M]) -> M:
    """Fetch the manifest stored as object oid and parse it as a cls."""
    return cls.parse(repo.get_chunk(oid), f"manifest {oid[:16]}…")
