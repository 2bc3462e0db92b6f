"""Marks: named instants (`pitr mark NAME`), one record per source a mark
covers, under records/<source>/marks/<name>.

A mark's name is unique across the repository: PostgreSQL stops a
recovery_target_name restore at the first restore point of that name, so a
name used twice would silently bring back the older instant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from catalog.recordbase import Record, record_key

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from catalog.db.models import Mark

# A letter first, so that no mark name reads as a time; 63 characters at
# most, PostgreSQL's limit for a restore point name.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,62}$")
# --to words that are not marks: they name targets of their own.
RESERVED = frozenset({"latest", "end-of-backup", "immediate", "now"})


def check_mark_name(name: str) -> str | None:
    """Why a name cannot be a mark's, or None when it can."""
    if not NAME_RE.match(name):
        return (
            f"invalid mark name {name!r}: use 1 to 63 letters, digits, '_', '.', ':' "
            "or '-', beginning with a letter"
        )
    if name.lower() in RESERVED:
        return f"invalid mark name {name!r}: it is a --to word of its own"
    return None


@dataclass(frozen=True)
class MarkRecord(Record):
    """One source's side of a mark: the instant it covers and, for
    PostgreSQL, the restore point's LSN and timeline."""

    TYPE: ClassVar[str] = "mark"
    name: str
    kind: str  # the kind of the source it belongs to
    at: datetime  # PostgreSQL: the restore point's time; others: archived up to here
    created_at: datetime
    lsn: str | None = None  # PostgreSQL: where pg_create_restore_point wrote it
    timeline: int | None = None

    @property
    def key(self) -> str:
        return mark_key(self.source, self.name)

    @property
    def source_kind(self) -> str:  # marks are written for every kind of source
        return self.kind

    def row(self, source_id: int) -> Mark:
        from catalog.db.models import Mark

        return Mark(
            source_id=source_id,
            name=self.name,
            at=self.at,
            lsn=self.lsn,
            timeline=self.timeline,
            created_at=self.created_at,
        )


def mark_key(source: str, name: str) -> str:
    return record_key(source, "marks", name)


@dataclass(frozen=True)
class MarkPoint:
    """A mark as the catalog knows it, for one source."""

    source: str
    name: str
    at: datetime
    lsn: str | None
    timeline: int | None


def marks_named(session: Session, name: str) -> list[MarkPoint]:
    """Every source's side of the mark NAME (none: no such mark)."""
    from sqlalchemy import select

    from catalog.db.models import Mark, Source

    rows = session.execute(
        select(Source.name, Mark).join(Source, Source.id == Mark.source_id).where(Mark.name == name)
    ).all()
    return sorted(
        (MarkPoint(src, m.name, m.at, m.lsn, m.timeline) for src, m in rows),
        key=lambda p: p.source,
    )


def marks_by_source(session: Session) -> dict[str, list[MarkPoint]]:
    """Every mark, per source name, oldest first."""
    from sqlalchemy import select

    from catalog.db.models import Mark, Source

    rows = session.execute(
        select(Source.name, Mark).join(Source, Source.id == Mark.source_id).order_by(Mark.at)
    ).all()
    found: dict[str, list[MarkPoint]] = {}
    for src, m in rows:
        found.setdefault(src, []).append(MarkPoint(src, m.name, m.at, m.lsn, m.timeline))
    return found


def mark_names(session: Session) -> list[str]:
    from sqlalchemy import select

    from catalog.db.models import Mark

    return sorted(session.scalars(select(Mark.name).distinct()))
