"""Planning the recovery targets that are not an instant (a restore point,
an LSN, a transaction, all WAL, the end of a backup) and the
recovery_target_* settings of every form.

Each planner picks the base backup its form needs and checks that the
archived WAL reaches the target, or raises PlanError with the window:
- lsn, name (a mark's restore point): the newest backup whose consistent
  point (stop LSN) is at or before the target LSN, WAL through the target's
  segment;
- immediate: the newest backup that can reach consistency, WAL to its stop;
- latest: the newest backup, all archived WAL from it, which must have no gap;
- xid: a transaction's commit cannot be located from the catalog, so replay
  starts at the oldest backup on the newest timeline and reads all archived
  WAL (PostgreSQL refuses to promote when it never meets the transaction).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from catalog.wal import format_lsn, lsn_segno, segment_name
from recovery.errors import PlanError
from recovery.postgres.planner import (
    BackupPoint,
    PgPlan,
    PgTarget,
    Span,
    TimelineInfo,
    ancestry,
    fmt,
    on_history,
    reaches_consistency,
    timeline_for_segment,
    walk_chain,
    window,
)


@dataclass(frozen=True)
class Archive:
    """What the catalog knows of a source's WAL, as the planners take it."""

    source: str
    backups: list[BackupPoint]
    segments: Mapping[tuple[int, int], datetime]
    timelines: Mapping[int, TimelineInfo]
    seg_size: int = 16 << 20

    def window_text(self) -> str:
        w_from, w_to = window(self.backups, self.segments, self.timelines, self.seg_size)
        return f"recoverable window: {fmt(w_from)} .. {fmt(w_to)}"

    def newest_timeline(self) -> int:
        return max({1, *self.timelines, *(b.timeline for b in self.backups)})

    def refuse(self, why: str) -> PlanError:
        return PlanError(f"restore {self.source}: {why}; {self.window_text()}")


def plan_target(archive: Archive, goal: PgTarget, timeline: int | None = None) -> PgPlan:
    """The plan of a goal of any form but time (recovery.postgres.planner)."""
    if not archive.backups:
        raise PlanError(f"restore {archive.source}: no base backup is archived (run pitr backup)")
    tli = timeline or archive.newest_timeline()
    if goal.form in ("lsn", "name"):
        assert goal.lsn is not None
        # A restore point's LSN is the end of its record: the record lies before it.
        need = goal.lsn - 1 if goal.form == "name" else goal.lsn
        return _plan_to_lsn(archive, goal, tli, need)
    if goal.form == "immediate":
        return _plan_from(archive, goal, tli, _newest(archive, tli), everything=False)
    if goal.form == "latest":
        return _plan_from(archive, goal, tli, _newest(archive, tli), everything=True)
    if goal.form == "xid":
        return _plan_from(archive, goal, tli, _consistent(archive, tli)[0], everything=True)
    raise ValueError(f"unknown target form {goal.form!r}")


def _consistent(archive: Archive, tli: int) -> list[BackupPoint]:
    """Backups on the timeline's history whose WAL reaches their consistent
    point, oldest first."""
    spans = ancestry(tli, archive.timelines)

    def complete(b: BackupPoint) -> bool:
        chain, _ = walk_chain(b, spans, archive.segments, archive.seg_size)
        return reaches_consistency(b, chain, archive.seg_size)

    by_end = sorted(archive.backups, key=lambda b: b.stop_lsn)
    found = [b for b in by_end if on_history(b, spans) and complete(b)]
    if not found:
        raise archive.refuse(f"no backup on timeline {tli}'s history has the WAL to be consistent")
    return found


def _newest(archive: Archive, tli: int) -> BackupPoint:
    return _consistent(archive, tli)[-1]


def _stop_count(b: BackupPoint, seg_size: int) -> int:
    """Segments from the backup's start through its consistent point."""
    return lsn_segno(b.stop_lsn - 1, seg_size) - lsn_segno(b.start_lsn, seg_size) + 1


def _plan_to_lsn(archive: Archive, goal: PgTarget, tli: int, need: int) -> PgPlan:
    spans = ancestry(tli, archive.timelines)
    lsn = format_lsn(goal.lsn or 0)
    candidates = [b for b in _consistent(archive, tli) if b.stop_lsn <= need]
    if not candidates:
        raise archive.refuse(
            f"target LSN {lsn} is before the end of the oldest backup on timeline {tli}"
        )
    backup = candidates[-1]
    chain, missing = walk_chain(backup, spans, archive.segments, archive.seg_size)
    needed = lsn_segno(need, archive.seg_size) - lsn_segno(backup.start_lsn, archive.seg_size) + 1
    if len(chain) < needed:
        want = _name(lsn_segno(need, archive.seg_size), spans, archive.seg_size)
        raise archive.refuse(
            f"target LSN {lsn} is in segment {want}, which is not archived "
            f"(archived WAL from backup {backup.id} stops before "
            f"{_name(missing, spans, archive.seg_size)})"
        )
    needed = max(needed, _stop_count(backup, archive.seg_size))
    return _plan(archive, goal, tli, backup, chain, needed)


def _plan_from(
    archive: Archive, goal: PgTarget, tli: int, backup: BackupPoint, everything: bool
) -> PgPlan:
    """From this backup: to its consistent point, or through all archived WAL
    (everything), refused when a gap cuts the WAL after it short (recovery
    would end at the gap and promote without what follows)."""
    spans = ancestry(tli, archive.timelines)
    chain, missing = walk_chain(backup, spans, archive.segments, archive.seg_size)
    if not everything:
        return _plan(archive, goal, tli, backup, chain, _stop_count(backup, archive.seg_size))
    # Only WAL this history reads counts: an old timeline's segments past
    # its fork are not a gap in the new one.
    if any(
        n > missing and timeline_for_segment(n, spans, archive.seg_size) == t
        for (t, n) in archive.segments
    ):
        raise archive.refuse(
            f"gap at segment {_name(missing, spans, archive.seg_size)}: WAL after "
            f"{fmt(max(t for _, t in chain))} cannot be replayed"
        )
    return _plan(archive, goal, tli, backup, chain, len(chain))


def _plan(
    archive: Archive,
    goal: PgTarget,
    tli: int,
    backup: BackupPoint,
    chain: list[tuple[str, datetime]],
    needed: int,
) -> PgPlan:
    w_from, _ = window(archive.backups, archive.segments, archive.timelines, archive.seg_size)
    return PgPlan(
        target=chain[needed - 1][1],
        timeline=tli,
        backup=backup,
        chain=tuple(chain),
        needed=needed,
        recoverable_from=backup.finished_at if w_from is None else w_from,
        recoverable_to=max(t for _, t in chain),
        goal=goal,
    )


def _name(segno: int, spans: list[Span], seg_size: int) -> str:
    return segment_name(timeline_for_segment(segno, spans, seg_size), segno, seg_size)


def target_settings(plan: PgPlan, stop_at_target: bool) -> list[str]:
    """The recovery_target_* lines of postgresql.auto.conf for the plan's goal
    (none: replay all archived WAL and promote at its end)."""
    g = plan.goal
    if g.form == "latest" or (g.form == "time" and not stop_at_target):
        return []
    target = {
        "time": f"recovery_target_time = '{plan.target.isoformat(sep=' ')}'",
        "name": f"recovery_target_name = {quote(g.name or '')}",
        "lsn": f"recovery_target_lsn = '{format_lsn(g.lsn or 0)}'",
        "xid": f"recovery_target_xid = '{g.xid}'",
        "immediate": "recovery_target = 'immediate'",
    }[g.form]
    lines = [target]
    if g.form in ("time", "lsn", "xid"):  # the forms PostgreSQL can stop before
        lines.append(f"recovery_target_inclusive = {'on' if g.inclusive else 'off'}")
    return [*lines, f"recovery_target_action = '{g.action}'"]


def describe_goal(plan: PgPlan, stop_at_target: bool) -> str:
    """What replay does, for the plan printed before a restore."""
    g = plan.goal
    when = plan.target.isoformat().replace("+00:00", "Z")
    if g.form == "latest" or (g.form == "time" and not stop_at_target):
        return (
            "replay all archived WAL (nothing archived happened after the target), then promote"
            if g.form == "time"
            else "replay all archived WAL, then promote"
        )
    stop = {
        "time": f"stop before the first transaction after {when}"
        if g.inclusive
        else f"stop before the first transaction at or after {when}",
        "name": f"stop at restore point {g.name!r} (LSN {format_lsn(g.lsn or 0)})",
        "lsn": f"stop {'after' if g.inclusive else 'before'} the WAL record at "
        f"LSN {format_lsn(g.lsn or 0)}",
        "xid": f"stop {'after' if g.inclusive else 'just before'} transaction {g.xid} commits",
        "immediate": f"stop as soon as backup {plan.backup.id} is consistent",
    }[g.form]
    return f"{stop}, then {g.action}"


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
