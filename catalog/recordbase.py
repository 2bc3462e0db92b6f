"""The base of every record type (catalog.records): a fact of one source,
its key under records/<source>/ and its JSON form. Kept apart so that record
types living beside their own queries (catalog.marks) can extend it without
importing catalog.records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from catalog.errors import FormatError

if TYPE_CHECKING:
    from catalog.db.models import Base

R = TypeVar("R", bound="Record")


def record_key(source: str, folder: str, name: str) -> str:
    return f"records/{source}/{folder}/{name}"


def source_records_prefix(source: str) -> str:
    return f"records/{source}/"


@dataclass(frozen=True)
class Record:
    """Fields common to every record: which source the fact belongs to."""

    TYPE: ClassVar[str] = ""
    SOURCE_KIND: ClassVar[str] = ""  # the kind of source that writes it
    source: str

    @property
    def source_kind(self) -> str:
        return self.SOURCE_KIND

    @property
    def key(self) -> str:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.TYPE}
        for name, value in asdict(self).items():
            doc[name] = value.isoformat() if isinstance(value, datetime) else value
        return doc

    @classmethod
    def from_json(cls: type[R], doc: dict[str, Any]) -> R:
        values: dict[str, Any] = {}
        try:
            for f in fields(cls):
                if f.name not in doc:
                    continue  # an optional field an older pitr did not write
                value = doc[f.name]
                if f.type in ("datetime", "datetime | None") and value is not None:
                    value = datetime.fromisoformat(str(value))
                values[f.name] = value
            return cls(**values)
        except (TypeError, ValueError) as e:
            raise FormatError(f"record of type {cls.TYPE!r}: {e}") from e

    def row(self, source_id: int) -> Base:
        """The catalog row this fact projects to."""
        raise NotImplementedError
