"""Planning the restore of a SQLite database to an instant, and the window
of instants it can reach.

A generation is a base copy and the unbroken run of frame batches after
it. A target is reached from the newest base copy at or before it whose chain
reaches it: the frames after that copy, up to the last commit seen at or
before the target. Between generations lies a gap,
and a target in it is refused with the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from recovery.coverage import Coverage, Piece, fmt, merge
from recovery.errors import PlanError
from recovery.sqlite.facts import BaseRef, BatchRef, DbFacts

# How far past the capture's heartbeat a target may lie and still be waited for.
CATCH_UP = timedelta(seconds=5)


@dataclass(frozen=True)
class DbPlan:
    db: str
    base: BaseRef
    batches: list[BatchRef]  # in order; the last may hold commits after the target
    target: datetime
    last_commit: datetime | None  # the newest commit applied was seen then (None: none)

    def describe(self) -> list[str]:
        lines = [f"{self.db}: base copy {self.base.id} of {fmt(self.base.seen)}"]
        if self.batches:
            commits = sum(b.commits for b in self.batches)
            lines.append(
                f"{self.db}: then up to {commits} commits from {len(self.batches)} batches, "
                f"the last seen {fmt(self.last_commit or self.base.seen)}"
            )
        else:
            lines.append(f"{self.db}: no archived commit after the base copy")
        return lines


def chain(facts: DbFacts, base: BaseRef) -> tuple[list[BatchRef], datetime]:
    """The batches that follow base without a break, and the newest instant
    they (or the capture's heartbeat) show archived."""
    run: list[BatchRef] = []
    reach = base.seen
    nxt = base.gpos + 1
    for b in facts.batches_of(base.generation):
        if b.glast < nxt:
            continue
        if b.gfirst > nxt:
            return run, reach  # a batch is missing: the chain ends here
        run.append(b)
        nxt = b.glast + 1
        if b.commits:
            reach = max(reach, b.last_seen)
    beat = facts.caught_up.get(base.generation)
    if beat is not None and beat > reach:
        reach = beat
    return run, reach


def windows(facts: DbFacts) -> list[tuple[BaseRef, datetime]]:
    """Each base copy with the newest instant its chain reaches."""
    return [(base, chain(facts, base)[1]) for base in facts.bases]


def coverage(facts: DbFacts) -> Coverage:
    """Every base copy reaches the instants from its own to the end of its
    chain; the window is their union, with the reason for every hole."""
    pieces: list[Piece] = []
    end: datetime | None = None
    for base, reach in sorted(windows(facts), key=lambda w: w[0].seen):
        if end is not None and base.seen > end:
            pieces.append(Piece(end, base.seen, False, _hole(facts, end, base.seen)))
        if end is None or reach > end:
            pieces.append(Piece(base.seen if end is None else max(end, base.seen), reach, True))
            end = reach
    for gap in facts.gaps:  # instants inside a generation that cannot be restored
        pieces = [q for p in pieces for q in _cut(p, gap.since, gap.until, facts.db, gap.detail)]
    return merge(sorted(pieces, key=lambda p: p.start))


def _cut(p: Piece, lo: datetime, hi: datetime, db: str, why: str) -> list[Piece]:
    if not p.ok or p.end is None or hi <= p.start or lo >= p.end:
        return [p]
    out = [Piece(p.start, lo, True)] if lo > p.start else []
    out.append(Piece(max(lo, p.start), min(hi, p.end), False, f"{db}: {why}"))
    if hi < p.end:
        out.append(Piece(hi, p.end, True))
    return out


def intersect(coverages: list[Coverage]) -> Coverage:
    """The instants every database of a source can reach together."""
    if len(coverages) == 1:
        return coverages[0]
    if not coverages:
        return Coverage()
    cuts = sorted({t for c in coverages for p in c.pieces for t in (p.start, p.end) if t})
    pieces = []
    for lo, hi in zip(cuts, cuts[1:] + [cuts[-1]], strict=True):
        where = [_at(c, lo, hi) for c in coverages]
        if any(w is None for w in where):
            continue
        bad = [w for w in where if w is not None and not w.ok]
        pieces.append(Piece(lo, hi, not bad, bad[0].detail if bad else ""))
    return merge(pieces)


def _at(c: Coverage, lo: datetime, hi: datetime) -> Piece | None:
    for p in c.pieces:
        if p.start <= lo and (p.end is None or hi <= p.end):
            return p
    return None


def _hole(facts: DbFacts, start: datetime, end: datetime) -> str:
    for gap in facts.gaps:
        if gap.since <= end and gap.until >= start:
            return f"{facts.db}: {gap.detail}"
    return f"{facts.db}: commits after {fmt(start)} are not archived"


def plan_db(facts: DbFacts, target: datetime) -> DbPlan:
    """The plan for one database; PlanError (exit 3) with the window when
    the target is before, after or in a hole of what is archived."""
    candidates = [b for b in facts.bases if b.seen <= target]
    if not candidates:
        raise PlanError(f"{facts.db}: no base copy at or before {fmt(target)}{_window(facts)}")
    for gap in facts.gaps:
        if gap.since < target < gap.until:
            raise PlanError(
                f"{facts.db}: {fmt(target)} is in a gap from {fmt(gap.since)} to "
                f"{fmt(gap.until)} ({gap.detail}){_window(facts)}"
            )
    # The newest copy whose chain reaches the target (a copy taken on its
    # own reaches only its instant).
    for base in reversed(candidates):
        run, reach = chain(facts, base)
        if target <= reach:
            break
    else:
        run, reach = chain(facts, candidates[-1])
        raise PlanError(
            f"{facts.db}: {fmt(target)} is after the newest archived commit "
            f"({fmt(reach)}){_window(facts)}"
        )
    used: list[BatchRef] = []
    last: datetime | None = None
    for b in run:
        if b.commits and b.first_seen > target:
            break
        used.append(b)
        if b.commits:
            last = min(b.last_seen, target)
    # Batches after the last one with a commit in reach add nothing.
    while used and not used[-1].commits:
        used.pop()
    return DbPlan(facts.db, base, used, target, last)


def plan_caught_up(load: Callable[[], DbFacts], target: datetime) -> DbPlan:
    """plan_db, except that a recent target a running capture has not reached
    yet (such as "now") is waited for, a few seconds at most."""
    deadline = time.monotonic() + CATCH_UP.total_seconds()
    facts = load()
    while True:
        try:
            return plan_db(facts, target)
        except PlanError:
            beat = max(facts.caught_up.values(), default=None)
            running = beat is not None and beat >= target - CATCH_UP
            # Only a target past what is archived can be reached by waiting.
            ahead = all(target > (p.end or p.start) for p in coverage(facts).restorable)
            late = target > datetime.now(UTC) or time.monotonic() > deadline
            if not running or not ahead or late:
                raise
        time.sleep(0.1)
        facts = load()


def _window(facts: DbFacts) -> str:
    ok = coverage(facts).restorable
    if not ok:
        return ""
    spans = ", ".join(f"{fmt(p.start)} .. {fmt(p.end or p.start)}" for p in ok)
    return f"; recoverable: {spans}"
