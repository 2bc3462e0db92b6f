"""The planners of the PostgreSQL targets that are not an instant, and the
recovery settings of every form, without servers (fixtures of test_planner)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from recovery.errors import PlanError
from recovery.postgres.planner import PgTarget
from recovery.postgres.targets import Archive, plan_target, target_settings
from tests.test_planner import B1, B2, FORK, LINE, SEG, TL2, seg, without


def archive(segs: dict = LINE, timelines: dict | None = None) -> Archive:
    return Archive("db", [B1, B2], segs, timelines or {}, SEG)


def test_lsn_uses_the_newest_backup_ending_before_it_and_wal_through_its_segment() -> None:
    plan = plan_target(archive(), PgTarget("lsn", lsn=7 * SEG + 0x10))
    assert (plan.backup.id, plan.first_segment, plan.last_needed_segment) == (
        "b2",
        seg(1, 6),
        seg(1, 7),
    )
    earlier = plan_target(archive(), PgTarget("lsn", lsn=5 * SEG))
    assert (earlier.backup.id, earlier.last_needed_segment) == ("b1", seg(1, 5))


def test_a_mark_stops_in_the_segment_before_its_end_lsn() -> None:
    plan = plan_target(archive(), PgTarget("name", name="m", lsn=8 * SEG), timeline=1)
    assert plan.last_needed_segment == seg(1, 7)  # the restore point's record ends at 8/0


@pytest.mark.parametrize(
    ("lsn", "says"),
    [(0x100, "before the end of the oldest backup"), (20 * SEG, "which is not archived")],
)
def test_lsn_outside_the_archive_is_refused_with_the_window(lsn: int, says: str) -> None:
    with pytest.raises(PlanError) as info:
        plan_target(archive(), PgTarget("lsn", lsn=lsn))
    assert says in str(info.value) and "recoverable window" in str(info.value)


def test_latest_replays_everything_and_refuses_a_gap() -> None:
    plan = plan_target(archive(), PgTarget("latest"))
    assert (plan.backup.id, plan.last_needed_segment) == ("b2", seg(1, 9))
    with pytest.raises(PlanError, match="gap at segment"):
        plan_target(archive(without(LINE, 1, 8)), PgTarget("latest"))


def test_latest_follows_the_newest_timeline() -> None:
    plan = plan_target(archive(FORK, TL2), PgTarget("latest"))
    assert (plan.timeline, plan.last_needed_segment) == (2, seg(2, 9))


def test_xid_replays_all_wal_from_the_oldest_backup() -> None:
    plan = plan_target(archive(), PgTarget("xid", xid=1234))
    assert (plan.backup.id, plan.first_segment, plan.last_needed_segment) == (
        "b1",
        seg(1, 2),
        seg(1, 9),
    )


def test_immediate_stops_at_the_newest_backups_consistent_point() -> None:
    plan = plan_target(archive(), PgTarget("immediate"))
    assert (plan.backup.id, plan.last_needed_segment, plan.needed) == ("b2", seg(1, 6), 1)


def test_settings_of_every_form() -> None:
    base = plan_target(archive(), PgTarget("xid", xid=1234, inclusive=False, action="pause"))
    assert target_settings(base, True) == [
        "recovery_target_xid = '1234'",
        "recovery_target_inclusive = off",
        "recovery_target_action = 'pause'",
    ]
    named = replace(base, goal=PgTarget("name", name="it's", lsn=8 * SEG))
    assert target_settings(named, True) == [
        "recovery_target_name = 'it''s'",
        "recovery_target_action = 'promote'",
    ]
    lsn = replace(base, goal=PgTarget("lsn", lsn=0x3000060, action="shutdown"))
    assert target_settings(lsn, True)[0] == "recovery_target_lsn = '0/3000060'"
    assert target_settings(replace(base, goal=PgTarget("immediate")), True)[0] == (
        "recovery_target = 'immediate'"
    )
    assert target_settings(replace(base, goal=PgTarget("latest")), True) == []
    assert target_settings(replace(base, goal=PgTarget("time")), False) == []
