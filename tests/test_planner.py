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


def seg(tli: int, n: int) -> str:
    """The name of segment n (below 256) of a timeline, with 16 MiB segments."""
    return f"{tli:08X}00000000{n:08X}"


def without(segs: dict, tli: int, n: int) -> dict:
    return {k: v for k, v in segs.items() if k != (tli, n)}


@dataclass
class Case:
    target: float
    backups: list[BackupPoint]
    segs: dict
    # expectations: backup id, timeline, first segment, last needed segment; or an error
    expect: tuple[str, int, str, str] | None = None
    timelines: dict = field(default_factory=dict)
    error: str | None = None


TL2 = {
    2: TimelineInfo(2, (HistoryEntry(1, 6 * SEG + 0x5000),), at(20)),
}
B1 = backup("b1", 1, 2, 2, 2.5)
B2 = backup("b2", 1, 6, 6, 6.5)
LINE = segments(1, 1, 9, 0)  # timeline 1 alone
FORK = segments(1, 1, 12, 0) | segments(2, 6, 9, 20)  # timeline 2 forks off in segment 6

CASES = {
    "no backup": Case(5, [], LINE, error="no base backup"),
    "target before the oldest backup": Case(1, [B1], LINE, error="before the oldest backup"),
    "target after the newest archived point": Case(
        30, [B1], LINE, error="after the newest archived point"
    ),
    "right after the first backup: no WAL past its end is archived yet": Case(
        2.6,
        [B1],
        segments(1, 1, 2, 1.2),  # the stop segment was written before the backup ended
        error=r"after the newest archived point .*recoverable window: none \.\. none",
    ),
    "simple: newest backup before target, WAL through the target": Case(
        5.5, [B1], LINE, ("b1", 1, seg(1, 2), seg(1, 7))
    ),
    "two backups, target between them: the older one": Case(
        4.5, [B1, B2], LINE, ("b1", 1, seg(1, 2), seg(1, 6))
    ),
    "two backups, target after both: the newer one": Case(
        8, [B1, B2], LINE, ("b2", 1, seg(1, 6), seg(1, 9))
    ),
    "gap after the backup: named": Case(
        8, [B1], without(LINE, 1, 5), error="gap at segment 000000010000000000000005"
    ),
    "a gap beyond the target does not matter": Case(
        3.5, [B1], without(LINE, 1, 6), ("b1", 1, seg(1, 2), seg(1, 5))
    ),
    "the backup's own WAL is incomplete": Case(
        9,
        [backup("b1", 1, 2, 4, 4.5)],
        without(LINE, 1, 3),
        error="WAL of backup b1 is incomplete: segment 000000010000000000000003",
    ),
    "before the promotion: the old timeline, even past the fork point": Case(
        10, [B1], FORK, ("b1", 1, seg(1, 2), "00000001000000000000000B"), TL2
    ),
    "after the promotion: the new timeline, switching at the fork segment": Case(
        21.5, [B1], FORK, ("b1", 2, seg(1, 2), seg(2, 8)), TL2
    ),
    "a backup taken on the abandoned branch is not used for the new timeline": Case(
        22.5, [B1, backup("b-abandoned", 1, 8, 8, 8.5)], FORK, ("b1", 2, seg(1, 2), seg(2, 9)), TL2
    ),
    "a backup taken on the new timeline is preferred once it exists": Case(
        22.8, [B1, backup("b3", 2, 8, 8, 22.2)], FORK, ("b3", 2, seg(2, 8), seg(2, 9)), TL2
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
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
        plan_postgres("db", at(30), [B1], LINE, {}, SEG)
    message = str(info.value)
    assert "2025-01-16T12:02:30Z" in message  # oldest backup end
    assert "2025-01-16T12:08:00Z" in message  # newest archived segment
