"""Which instants a restore can reach, as intervals, with the reason for every
hole: what `info`, `report rpo`, `check` and `verify` print.

The planners choose one backup (PostgreSQL) or snapshot (Redis) per target
and never fall back to an older one, so the answer is piecewise: between two
consecutive "breakpoints" (backups finishing, timelines being created,
snapshots starting) the same backup is chosen, and the instants it can reach
are those up to the end of its unbroken WAL chain. Walking those pieces gives
exactly the targets the planner accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class Piece:
    """[start, end]: restorable (ok) or not, and why not. end None: open-ended."""

    start: datetime
    end: datetime | None
    ok: bool
    detail: str = ""


@dataclass
class Coverage:
    pieces: list[Piece] = field(default_factory=list)

    @property
    def restorable(self) -> list[Piece]:
        return [p for p in self.pieces if p.ok]

    @property
    def recoverable_from(self) -> datetime | None:
        ok = self.restorable
        return ok[0].start if ok else None

    @property
    def recoverable_to(self) -> datetime | None:
        ok = self.restorable
        return ok[-1].end if ok else None

    @property
    def gaps(self) -> list[Piece]:
        """Holes inside the window, each with its reason."""
        lo, hi = self.recoverable_from, self.recoverable_to
        if lo is None or hi is None:
            return []
        return [
            p
            for p in self.pieces
            if not p.ok and p.start >= lo and p.end is not None and p.end <= hi
        ]


def merge(pieces: Iterable[Piece]) -> Coverage:
    out: list[Piece] = []
    for p in pieces:
        if p.end is not None and p.end < p.start:
            continue
        if out and out[-1].ok == p.ok and out[-1].detail == p.detail and out[-1].end == p.start:
            out[-1] = Piece(out[-1].start, p.end, p.ok, p.detail)
        else:
            out.append(p)
    return Coverage(out)


def fmt(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- comparing ----------------------------------------------------------------------


def lost_ranges(before: Coverage, after: Coverage) -> list[Piece]:
    """Instants restorable in `before` that `after` can no longer reach, each
    with the reason `after` gives for it."""
    keep = after.restorable
    out: list[Piece] = []
    for good in before.restorable:
        assert good.end is not None
        left = [(good.start, good.end)]
        for k in keep:
            assert k.end is not None
            rest = []
            for lo, hi in left:
                if k.end < lo or k.start > hi:
                    rest.append((lo, hi))
                    continue
                if k.start > lo:
                    rest.append((lo, k.start))
                if k.end < hi:
                    rest.append((k.end, hi))
            left = rest
        out.extend(Piece(lo, hi, False, _reason(after, lo, hi)) for lo, hi in left if lo < hi)
    return out


def _reason(after: Coverage, lo: datetime, hi: datetime) -> str:
    holes = [p for p in after.pieces if not p.ok and p.start < hi and (p.end is None or p.end > lo)]
    covering = [p for p in holes if p.start <= lo]
    chosen = covering[-1] if covering else holes[0] if holes else None
    return chosen.detail if chosen else "beyond what the remaining archive reaches"
