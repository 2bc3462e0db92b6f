"""The recovery planner, table-driven, without servers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from catalog.wal import HistoryEntry
from recovery.errors import PlanError
from recovery.postgres.planner import BackupPoint, TimelineInfo, plan_postgres

SEG = 16 << 20
T0 = datetime(2025, 1, 16, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def backup(bid: str, tli: int, start_seg: int, stop_seg: int, ended: float) -> BackupPoint:
    # start at the segment's beginning + 0x28, stop inside stop_seg
    return BackupPoint(bid, tli, start_seg * SEG + 0x28, stop_seg * SEG + 0x100, at(ended))


def segments(tli: int, first: int, last: int, start_minute: float) -> dict:
    """Segments first..last of a timeline, one minute apart: `first` was
    finished at start_minute, the next one a minute later, and so on."""
    return {(tli, n): at(start_minute + (n - first)) for n in range(first, last + 1)}


@dataclass
class Case:
    name: str
    target: float
    backups: list[BackupPoint]
    segs: dict
    timelines: dict = field(default_factory=dict)
    # expectations: backup id, timeline, first segment, last needed segment; or an error
    expect: tuple[str, int, str, str] | None = None
    error: str | None = None


TL2 = {
    2: TimelineInfo(2, (HistoryEntry(1, 6 * SEG + 0x5000),), at(20)),
}

CASES = [
    Case("no backup", 5, [], segments(1, 1, 9, 0), error="no base backup"),
    Case(
        "target before the oldest backup",
        1,
        [backup("b1", 1, 2, 2, 2.5)],
        segments(1, 1, 9, 0),
        error="before the oldest backup",
    ),
    Case(
        "target after the newest archived point",
        30,
        [backup("b1", 1, 2, 2, 2.5)],
        segments(1, 1, 9, 0),
        error="after the newest archived point",
    ),
    Case(
        "right after the first backup: no WAL past its end is archived yet",
        2.6,
        [backup("b1", 1, 2, 2, 2.5)],
        segments(1, 1, 2, 1.2),  # the stop segment was written before the backup ended
        error=r"after the newest archived point .*recoverable window: none \.\. none",
    ),
    Case(
        "simple: newest backup before target, WAL through the target",
        5.5,
        [backup("b1", 1, 2, 2, 2.5)],
        segments(1, 1, 9, 0),
        expect=("b1", 1, "000000010000000000000002", "000000010000000000000007"),
    ),
    Case(
        "two backups, target between them: the older one",
        4.5,
        [backup("b1", 1, 2, 2, 2.5), backup("b2", 1, 6, 6, 6.5)],
        segments(1, 1, 9, 0),
        expect=("b1", 1, "000000010000000000000002", "000000010000000000000006"),
    ),
    Case(
        "two backups, target after both: the newer one",
        8,
        [backup("b1", 1, 2, 2, 2.5), backup("b2", 1, 6, 6, 6.5)],
        segments(1, 1, 9, 0),
        expect=("b2", 1, "000000010000000000000006", "000000010000000000000009"),
    ),
    Case(
        "gap after the backup: named",
        8,
        [backup("b1", 1, 2, 2, 2.5)],
        {k: v for k, v in segments(1, 1, 9, 0).items() if k != (1, 5)},
        error="gap at segment 000000010000000000000005",
    ),
    Case(
        "a gap beyond the target does not matter",
        3.5,
        [backup("b1", 1, 2, 2, 2.5)],
        {k: v for k, v in segments(1, 1, 9, 0).items() if k != (1, 6)},
        expect=("b1", 1, "000000010000000000000002", "000000010000000000000005"),
    ),
    Case(
        "the backup's own WAL is incomplete",
        9,
        [backup("b1", 1, 2, 4, 4.5)],
        {k: v for k, v in segments(1, 1, 9, 0).items() if k != (1, 3)},
        error="WAL of backup b1 is incomplete: segment 000000010000000000000003",
    ),
    Case(
        "before the promotion: the old timeline, even past the fork point",
        10,
        [backup("b1", 1, 2, 2, 2.5)],
        segments(1, 1, 12, 0) | segments(2, 6, 9, 20),
        TL2,
        expect=("b1", 1, "000000010000000000000002", "00000001000000000000000B"),
    ),
    Case(
        "after the promotion: the new timeline, switching at the fork segment",
        21.5,
        [backup("b1", 1, 2, 2, 2.5)],
        segments(1, 1, 12, 0) | segments(2, 6, 9, 20),
        TL2,
        expect=("b1", 2, "000000010000000000000002", "000000020000000000000008"),
    ),
    Case(
        "a backup taken on the abandoned branch is not used for the new timeline",
        22.5,
        [backup("b1", 1, 2, 2, 2.5), backup("b-abandoned", 1, 8, 8, 8.5)],
        segments(1, 1, 12, 0) | segments(2, 6, 9, 20),
        TL2,
        expect=("b1", 2, "000000010000000000000002", "000000020000000000000009"),
    ),
    Case(
        "a backup taken on the new timeline is preferred once it exists",
        22.8,
        [backup("b1", 1, 2, 2, 2.5), backup("b3", 2, 8, 8, 22.2)],
        segments(1, 1, 12, 0) | segments(2, 6, 9, 20),
        TL2,
        expect=("b3", 2, "000000020000000000000008", "000000020000000000000009"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan(case: Case) -> None:
    if case.error:
        with pytest.raises(PlanError, match=case.error) as info:
            plan_postgres("db", at(case.target), case.backups, case.segs, case.timelines, SEG)
        if case.backups:
            assert "recoverable window" in str(info.value)
        return
    plan = plan_postgres("db", at(case.target), case.backups, case.segs, case.timelines, SEG)
    assert case.expect is not None
    bid, tli, first, last = case.expect
    assert (plan.backup.id, plan.timeline, plan.first_segment, plan.last_needed_segment) == (
        bid,
        tli,
        first,
        last,
    )
    assert plan.recoverable_from <= plan.target <= plan.recoverable_to


def test_window_in_error_names_both_ends() -> None:
    with pytest.raises(PlanError) as info:
        plan_postgres("db", at(30), [backup("b1", 1, 2, 2, 2.5)], segments(1, 1, 9, 0), {}, SEG)
    message = str(info.value)
    assert "2025-01-16T12:02:30Z" in message  # oldest backup end
    assert "2025-01-16T12:08:00Z" in message  # newest archived segment
