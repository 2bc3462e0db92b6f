"""Per-source status for the reports: what is archived, the recoverable
window with its gaps, and how recent the newest archived fact is.

What each kind knows of itself comes through its KindReports (the kind's
recovery/<kind>/report.py); this module holds what every kind shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from catalog import reports
from catalog.queries import source_row
from catalog.repository import Repository
from recovery.coverage import Coverage, Piece
from recovery.reporting import KindReports


@dataclass
class SourceStatus:
    name: str
    kind: str
    configured: bool
    identity: dict[str, Any] = field(default_factory=dict)
    backups: list[reports.BackupFact] = field(default_factory=list)
    coverage: Coverage = field(default_factory=Coverage)
    lost: list[Piece] = field(default_factory=list)  # facts known lost (e.g. stream gaps)
    # Restorable, but to an earlier instant than asked (a replication outage)
    imprecise: list[Piece] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    last_archived_at: datetime | None = None
    notes: list[str] = field(default_factory=list)
    marks: list[tuple[str, datetime]] = field(default_factory=list)  # named instants
    # A base a capture took itself (a Redis replication epoch's): a backup
    # as far as its age goes, though it is not listed among the backups.
    newest_base_at: datetime | None = None

    @property
    def last_backup_at(self) -> datetime | None:
        finished = [b.finished_at for b in self.backups]
        return max([*finished, self.newest_base_at] if self.newest_base_at else finished,
                   default=None)  # fmt: skip

    @property
    def gaps(self) -> list[Piece]:
        """Holes in the window and facts known lost, oldest first."""
        return sorted([*self.coverage.gaps, *self.lost], key=lambda p: p.start)


def source_status(
    repo: Repository, name: str, kind: str, hooks: KindReports, configured: bool
) -> SourceStatus:
    """Everything the reports say about one source (kind: the configured one,
    used when nothing is archived yet)."""
    with repo.catalog.session() as s:
        src = source_row(s, name)
        if src is None:
            return SourceStatus(name, kind, configured, notes=["nothing archived yet"])
        status = SourceStatus(name, src.kind, configured)
        status.backups = reports.backups(s, src.id)
    hooks.status(repo, src, status)
    if not status.backups and not status.coverage.restorable:
        status.notes.append("no backup yet: nothing can be restored")
    return status


def known_sources(
    repo: Repository, configured: dict[str, str], only: str | None = None
) -> list[tuple[str, str, bool]]:
    """(name, kind, configured) of every source in the config or the catalog."""
    with repo.catalog.session() as s:
        recorded = {src.name: src.kind for src in reports.sources(s)}
    merged = {**recorded, **configured}
    return [
        (name, merged[name], name in configured)
        for name in sorted(merged)
        if only is None or name == only
    ]
