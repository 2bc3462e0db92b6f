"""What every source kind tells the reports (info, report rpo, check, verify,
expire) about itself: the recovery side of the source-kind seam. Each kind
implements it in recovery/<kind>/report.py; the generic code in status,
integrity and retention calls it and never asks which kind it has."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from catalog.queries import SourceRow
from catalog.repository import Repository
from recovery.coverage import Coverage

if TYPE_CHECKING:
    from recovery.integrity import Problem
    from recovery.retention import Policy, SourceExpiry
    from recovery.status import SourceStatus


class KindReports(Protocol):
    def status(self, repo: Repository, src: SourceRow, status: SourceStatus) -> None:
        """Fill in identity, totals, coverage, facts lost, last archived and notes."""

    def check(
        self, repo: Repository, src: SourceRow, continuity: bool
    ) -> tuple[list[Problem], dict[str, str]]:
        """Continuity problems (when asked for), and objects found unreadable
        on the way (oid -> why)."""

    def damage(
        self, repo: Repository, src: SourceRow, oids: Collection[str], names: Collection[str]
    ) -> tuple[Coverage, Coverage]:
        """The window before and after losing these objects (names: of the
        facts that reference them)."""

    def plan_expiry(
        self, repo: Repository, src: SourceRow, policy: Policy, now: datetime
    ) -> SourceExpiry:
        """What a retention policy removes of this source."""
