"""WAL continuity: from every base backup on, along every timeline history
the backup lies on, each missing segment between archived ones is named."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from catalog.wal import lsn_segno, segment_name
from recovery.integrity import Problem
from recovery.postgres.facts import PgFacts
from recovery.postgres.planner import Span, TimelineInfo, ancestry, on_history, timeline_for_segment


def name_segments(segnos: list[int], spans: list[Span], seg_size: int) -> list[str]:
    """Runs of consecutive segments, named (first .. last (n segments))."""
    out = []
    for run in _runs(segnos):
        first = segment_name(timeline_for_segment(run[0], spans, seg_size), run[0], seg_size)
        if len(run) == 1:
            out.append(first)
        else:
            tli = timeline_for_segment(run[-1], spans, seg_size)
            last = segment_name(tli, run[-1], seg_size)
            out.append(f"{first} .. {last} ({len(run)} segments)")
    return out


def wal_continuity(source: str, facts: PgFacts) -> list[Problem]:
    seg = facts.seg_size
    present = facts.segments()
    timelines: Mapping[int, TimelineInfo] = facts.timelines
    tlis = (
        {1}
        | set(timelines)
        | {b.timeline for b in facts.backups}
        | {w.timeline for w in facts.wal if w.kind == "segment"}
    )
    problems: list[Problem] = []
    for tli in sorted(tlis):
        if tli > 1 and tli not in timelines and tli not in facts.unreadable:
            problems.append(
                Problem(
                    source,
                    "missing_history",
                    f"timeline {tli} has WAL but its {tli:08X}.history file is not archived: "
                    "restores cannot follow it",
                    {"timeline": tli},
                )
            )
    # Per history: the segments missing from the oldest backup on it to its
    # newest archived segment, in runs; then which backups each run breaks.
    runs: dict[str, dict[str, Any]] = {}
    for tli in sorted(tlis):
        spans = ancestry(tli, timelines)
        on = [b for b in facts.backups if on_history(b, spans)]
        if not on:
            continue
        bounds = {
            b.id: (lsn_segno(b.start_lsn, seg), lsn_segno(max(b.stop_lsn, 1) - 1, seg)) for b in on
        }
        lo = min(first for first, _ in bounds.values())
        have = {s for (t, s) in present if s >= lo and timeline_for_segment(s, spans, seg) == t}
        hi = max([*have, *(stop for _, stop in bounds.values())])
        missing = [s for s in range(lo, hi + 1) if s not in have]
        for run in _runs(missing):
            (name,) = name_segments(run, spans, seg)
            entry = runs.setdefault(name, {"unusable": [], "short": [], "timelines": []})
            entry["timelines"].append(tli)
            for b in on:
                first, stop = bounds[b.id]
                if first > run[-1]:
                    continue  # the backup starts after the hole
                which = "unusable" if max(run[0], first) <= min(run[-1], stop) else "short"
                if b.id not in entry[which]:
                    entry[which].append(b.id)
    for name, e in runs.items():
        extra = {"segments": [name], "timelines": sorted(set(e["timelines"]))}
        if e["unusable"]:
            problems.append(
                Problem(
                    source,
                    "unusable_backup",
                    f"backup {', '.join(e['unusable'])} cannot be restored: WAL {name} "
                    "is missing before its end",
                    {**extra, "backups": e["unusable"]},
                )
            )
        short = [b for b in e["short"] if b not in e["unusable"]]
        if short:
            tl = ", ".join(map(str, extra["timelines"]))
            problems.append(
                Problem(
                    source,
                    "wal_gap",
                    f"WAL {name} is missing on timeline {tl}: restores from backup "
                    f"{', '.join(short)} cannot replay past it",
                    {**extra, "backups": short},
                )
            )
    return problems


def _runs(segnos: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for s in segnos:
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs
