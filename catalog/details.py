"""Backup details, typed once: the small summary a backup record carries
(catalog.records.BackupRecord.details, as JSON) and its catalog row holds in
backups.details. The JSON field names are a stored format: never rename
one. A field has the default its readers always took (only a SQLite base
copy's db, which they always required, has none), so a row of an older pitr
reads; a field of the wrong type or a missing db raises FormatError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from catalog.errors import FormatError
from catalog.jsondoc import JsonDoc, JsonFields
from catalog.manifests import SnapshotManifest

D = TypeVar("D", bound="Details")


class Details:
    def to_json(self) -> JsonDoc:
        raise NotImplementedError

    @classmethod
    def from_json(cls: type[D], doc: object, where: str = "backup details") -> D:
        raise NotImplementedError


@dataclass(frozen=True)
class PgBackupDetails(Details):
    files: int = 0
    stop_segment: str = ""

    def to_json(self) -> JsonDoc:
        return {"files": self.files, "stop_segment": self.stop_segment}

    @classmethod
    def from_json(cls, doc: object, where: str = "backup details") -> PgBackupDetails:
        d = JsonFields(doc or {}, where)
        return cls(d.integer("files", 0), d.text("stop_segment", ""))


@dataclass(frozen=True)
class SnapshotDetails(Details):
    keys: int = 0
    chunks: int = 0
    redis_version: str = ""
    started_ms: int = 0
    # stream label -> last ID contained in the snapshot (replay starts after it)
    streams: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> JsonDoc:
        return {
            "keys": self.keys,
            "chunks": self.chunks,
            "redis_version": self.redis_version,
            "started_ms": self.started_ms,
            "streams": dict(self.streams),
        }

    @classmethod
    def from_json(cls, doc: object, where: str = "snapshot details") -> SnapshotDetails:
        d = JsonFields(doc or {}, where)
        return cls(
            d.integer("keys", 0),
            d.integer("chunks", 0),
            d.text("redis_version", ""),
            d.integer("started_ms", 0),
            d.text_table("streams"),
        )

    @classmethod
    def of(cls, manifest: SnapshotManifest) -> SnapshotDetails:
        return cls(
            manifest.keys,
            len(manifest.chunks),
            manifest.redis_version,
            manifest.started_ms,
            {label: s.last_id for label, s in manifest.streams.items()},
        )


@dataclass(frozen=True)
class SqliteBaseDetails(Details):
    """Where a SQLite base copy stands in its database's WAL: the generation
    and WAL cycle it attaches to, and the last frame it holds."""

    db: str  # the database's name in the source
    generation: str = ""  # the capture's, or "" for a copy taken on its own
    cycle: str = ""  # the WAL cycle's label, "" when the copy read no WAL
    frame: int = 0
    cksum: str = ""  # hex
    page_size: int = 0
    pages: int = 0
    wal_mode: bool = False
    path: str = ""  # the file it was copied from ("" before pitr wrote it)

    def to_json(self) -> JsonDoc:
        return {
            "path": self.path,
            "db": self.db,
            "generation": self.generation,
            "cycle": self.cycle,
            "frame": self.frame,
            "cksum": self.cksum,
            "page_size": self.page_size,
            "pages": self.pages,
            "wal_mode": self.wal_mode,
        }

    @classmethod
    def from_json(cls, doc: object, where: str = "base copy details") -> SqliteBaseDetails:
        d = JsonFields(doc or {}, where)
        return cls(
            d.text("db"),
            d.text("generation", ""),
            d.text("cycle", ""),
            d.integer("frame", 0),
            d.text("cksum", ""),
            d.integer("page_size", 0),
            d.integer("pages", 0),
            d.flag("wal_mode", False),
            d.text("path", ""),
        )


# Each backup kind's details type (catalog.records.BackupRecord.KINDS).
DETAILS_TYPES: dict[str, type[Details]] = {
    "pg_base": PgBackupDetails,
    SnapshotManifest.KIND: SnapshotDetails,
    "sqlite_base": SqliteBaseDetails,
}


def backup_details(kind: str, doc: object) -> Details:
    """The typed details of a backup of this kind, from their JSON."""
    cls = DETAILS_TYPES.get(kind)
    if cls is None:
        raise FormatError(f"no details type for backup kind {kind!r}")
    return cls.from_json(doc, f"details of a {kind} backup")
