"""Restore targets at the command-line edge: `--to TIME|MARK|latest|end-of-backup`,
`--to-lsn LSN`, `--to-xid XID`, `--exclusive` and `--target-action`, checked
before anything is planned (one line, exit 2, for every mistake)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pitr.config import ConfigError
from pitr.kinds.base import Goal
from pitr.timeparse import format_utc, parse_time

if TYPE_CHECKING:
    from pitr.context import AppContext

LSN_RE = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")
ACTIONS = ("promote", "pause", "shutdown")
WORDS = ("latest", "end-of-backup")
FIRST_NORMAL_XID = 3  # 0, 1 and 2 are PostgreSQL's own
FLAGS = {
    "time": "--to TIME",
    "mark": "--to MARK",
    "lsn": "--to-lsn",
    "xid": "--to-xid",
    "latest": "--to latest",
    "end-of-backup": "--to end-of-backup",
}


@dataclass(frozen=True)
class Target:
    goal: Goal
    instant: datetime  # time: the instant; other forms: now (not where replay stops)
    marks: dict[str, datetime] = field(default_factory=dict)  # mark: each source's instant

    def describe(self, text: str | None) -> str:
        g = self.goal
        how = "" if g.inclusive else " (exclusive)"
        if g.form == "time":
            return f"target: {text!r} = {format_utc(self.instant)}{how}"
        if g.form == "mark":
            at = ", ".join(f"{s} at {format_utc(t)}" for s, t in sorted(self.marks.items()))
            return f"target: mark {g.mark!r}: {at}"
        if g.form == "lsn":
            return f"target: LSN {g.lsn}{how}"
        if g.form == "xid":
            return f"target: transaction {g.xid}{how}"
        return f"target: {g.form}"


def parse_target(
    to: str | None,
    to_lsn: str | None,
    to_xid: str | None,
    exclusive: bool,
    action: str | None,
) -> Target:
    """The target of the options; a mark is only named here (resolve_mark)."""
    given = [f for f, v in (("--to", to), ("--to-lsn", to_lsn), ("--to-xid", to_xid)) if v]
    if not given:
        raise ConfigError(
            "no target: give --to TIME|MARK|latest|end-of-backup, --to-lsn LSN or --to-xid XID"
        )
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} conflict: give one target")
    goal, instant = _goal(to, to_lsn, to_xid)
    if exclusive and goal.form not in ("time", "lsn", "xid"):
        raise ConfigError(
            f"--exclusive applies to a time, --to-lsn or --to-xid target, not {FLAGS[goal.form]}"
        )
    if action is not None and goal.form == "latest":
        raise ConfigError(
            "--target-action needs a target where replay stops: "
            "--to latest replays all archived WAL and promotes"
        )
    goal = Goal(goal.form, goal.mark, goal.lsn, goal.xid, not exclusive, action or "promote")
    return Target(goal, instant)


def _goal(to: str | None, to_lsn: str | None, to_xid: str | None) -> tuple[Goal, datetime]:
    now = datetime.now(UTC)
    if to_lsn:
        if not LSN_RE.match(to_lsn.strip()):
            raise ConfigError(f"invalid LSN {to_lsn!r} (use the form 0/3000060)")
        return Goal("lsn", lsn=to_lsn.strip().upper()), now
    if to_xid:
        text = to_xid.strip()
        if not text.isdigit() or not FIRST_NORMAL_XID <= int(text) < 1 << 64:
            raise ConfigError(f"invalid transaction id {to_xid!r} (a number, 3 or more)")
        return Goal("xid", xid=int(text)), now
    assert to is not None
    if to.strip().lower() in WORDS:
        return Goal(to.strip().lower()), now
    try:
        return Goal("time"), parse_time(to)
    except ValueError as e:
        from catalog.marks import check_mark_name

        if check_mark_name(to) is not None:
            raise ConfigError(str(e)) from None  # not a name either: the time was meant
        return Goal("mark", mark=to), now


def resolve_mark(target: Target, points: list[tuple[str, datetime]], known: list[str]) -> Target:
    """The mark's instant on each source it covers; unknown mark: exit 2."""
    if target.goal.form != "mark":
        return target
    if not points:
        names = ", ".join(known) or "none yet"
        raise ConfigError(
            f"unknown mark {target.goal.mark!r} (and not a time such as '2025-01-16 12:00'); "
            f"marks: {names}"
        )
    return Target(target.goal, target.instant, dict(points))


def check_sources(target: Target, sources: list[tuple[str, str, frozenset[str]]]) -> None:
    """Every chosen source (name, kind, its target forms) can take the target."""
    g = target.goal
    for name, kind, forms in sources:
        if g.form not in forms:
            raise ConfigError(
                f"{FLAGS[g.form]} is not a target for {kind} source {name!r}: "
                "choose the sources it fits with --source"
            )
        if g.form == "mark" and name not in target.marks:
            covered = ", ".join(sorted(target.marks))
            raise ConfigError(
                f"mark {g.mark!r} does not cover source {name!r} (it covers {covered})"
            )


def with_marks(app: AppContext, target: Target) -> Target:
    """A mark target with each covered source's instant, from the catalog
    (any other target as it is); unknown mark: exit 2."""
    if target.goal.form != "mark":
        return target
    from catalog.marks import mark_names, marks_named

    with app.repo().catalog.session() as s:
        points = [(p.source, p.at) for p in marks_named(s, target.goal.mark or "")]
        known = mark_names(s) if not points else []
    return resolve_mark(target, points, known)
