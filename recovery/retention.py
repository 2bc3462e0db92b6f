"""Retention: which backups, WAL files and stream batches a policy keeps.

The policy says which backups to keep (the N newest, those finished within
a duration, or both); the window they open must stay whole, so the backup
the planner would choose for any instant from the window's start on is kept
too (the newest backup older than the window's start, or one on another
timeline's history). WAL is removed only where it lies before a kept
backup's start on a history that backup is on, and is needed by none:
WAL ahead of every kept backup (where a backup in progress reads) stays.
.history files always stay. Stream batches and recorded gaps go when they
end at or before every kept snapshot's position in their stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from catalog.db.models import Backup
from catalog.queries import source_row
from catalog.repository import Repository

if TYPE_CHECKING:
    from catalog.marks import MarkPoint
    from recovery.reporting import KindReports


@dataclass(frozen=True)
class Policy:
    keep: int | None = None  # the N newest backups
    keep_within: timedelta | None = None  # backups finished within this long before now
    # Marks whose restores stay possible, whatever their age (--ignore-marks: none)
    marks: tuple[MarkPoint, ...] = ()

    def marks_of(self, source: str) -> list[MarkPoint]:
        return [m for m in self.marks if m.source == source]

    @property
    def empty(self) -> bool:
        return self.keep is None and self.keep_within is None


@dataclass(frozen=True)
class Candidate:
    id: str
    finished_at: datetime
    opens_at: datetime  # the first instant a restore from it reaches


@dataclass
class Selection:
    kept: dict[str, str]  # id -> why
    window_start: datetime | None


def _fmt(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def select_backups(
    items: list[Candidate],
    policy: Policy,
    now: datetime,
    chosen_at: Callable[[datetime], str | None],
    breakpoints: Iterable[datetime],
    marks: Iterable[MarkPoint] = (),
) -> Selection:
    """Backups the policy keeps, plus those the window they open and the
    marks need. chosen_at(t) is the backup the planner restores instant t from."""
    if not items:
        return Selection({}, None)
    if policy.empty:
        return Selection({c.id: "no retention policy given" for c in items}, None)
    kept: dict[str, str] = {}
    starts: list[datetime] = []
    newest = sorted(items, key=lambda c: c.finished_at, reverse=True)
    if policy.keep is not None:
        chosen = newest[: policy.keep]
        why = "the newest" if policy.keep == 1 else f"one of the {policy.keep} newest"
        kept.update((c.id, why) for c in chosen)
        starts.append(min(c.opens_at for c in chosen))
    if policy.keep_within is not None:
        cutoff = now - policy.keep_within
        kept.update(
            (c.id, kept.get(c.id) or f"finished after {_fmt(cutoff)}")
            for c in items
            if c.finished_at >= cutoff
        )
        starts.append(cutoff)
    start = min(starts)
    for t in [start, *sorted(p for p in breakpoints if p > start)]:
        needed = chosen_at(t)
        if needed is not None and needed not in kept:
            kept[needed] = f"needed to restore {_fmt(t)}"
    for mark in marks:
        needed = chosen_at(mark.at)
        if needed is not None and needed not in kept:
            kept[needed] = f"needed by mark {mark.name}"
    return Selection(kept, start)


# -- a source's plan ----------------------------------------------------------------


@dataclass(frozen=True)
class ExpiredFact:
    """A fact other than a backup that a plan removes: its record and its row."""

    type: str  # the record type: wal | stream_batch | stream_gap
    id: int  # catalog row id
    name: str  # WAL file name, or "<stream> <first id>"
    key: str  # record key in the store


@dataclass
class SourceExpiry:
    name: str
    kind: str
    kept: dict[str, str] = field(default_factory=dict)  # backup id -> why
    removed: list[tuple[str, datetime]] = field(default_factory=list)  # (backup id, finished)
    removed_keys: list[str] = field(default_factory=list)  # records of the removed backups
    window_start: datetime | None = None
    facts: list[ExpiredFact] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.removed and not self.facts

    def of_type(self, record_type: str) -> list[ExpiredFact]:
        return [f for f in self.facts if f.type == record_type]


def source_backups(repo: Repository, source_id: int) -> list[Backup]:
    """The catalog rows of a source's backups, for a kind's plan_expiry."""
    from sqlalchemy import select

    with repo.catalog.session() as s:
        return list(s.scalars(select(Backup).where(Backup.source_id == source_id)))


def unplanned(name: str, kind: str, rows: list[Backup]) -> SourceExpiry:
    """No retention asked for: no fact goes, not even WAL older than every backup."""
    return SourceExpiry(name, kind, kept={b.id: "no retention policy given" for b in rows})


def settle(
    plan: SourceExpiry, sel: Selection, items: list[Candidate], rows: list[Backup]
) -> SourceExpiry:
    """Complete a plan with a selection: what it keeps and which backups go."""
    from catalog.records import backup_key

    by_id = {b.id: b for b in rows}
    plan.kept = sel.kept
    plan.window_start = sel.window_start
    plan.removed = sorted(
        ((c.id, by_id[c.id].finished_at) for c in items if c.id not in sel.kept),
        key=lambda r: r[1],
    )
    plan.removed_keys = [backup_key(plan.name, by_id[b].kind, b) for b, _ in plan.removed]
    return plan


def plan_expiry(
    repo: Repository, name: str, hooks: KindReports, policy: Policy, now: datetime
) -> SourceExpiry:
    with repo.catalog.session() as s:
        src = source_row(s, name)
    if src is None:
        return SourceExpiry(name, "")  # nothing archived: nothing to expire
    return hooks.plan_expiry(repo, src, policy, now)
