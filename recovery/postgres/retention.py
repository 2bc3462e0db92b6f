"""Retention for PostgreSQL: which backup restores an instant, and which WAL
no kept backup needs (see recovery.retention)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from catalog.wal import lsn_segno
from recovery.postgres.facts import WalRef
from recovery.postgres.planner import (
    BackupPoint,
    Span,
    TimelineInfo,
    ancestry,
    choose_timeline,
    on_history,
    timeline_for_segment,
)


def pg_chooser(
    backups: list[BackupPoint], timelines: Mapping[int, TimelineInfo]
) -> Callable[[datetime], str | None]:
    """The backup plan_postgres picks for an instant, as a function."""

    def chosen(t: datetime) -> str | None:
        spans = ancestry(choose_timeline(t, backups, timelines), timelines)
        candidates = [b for b in backups if b.finished_at <= t and on_history(b, spans)]
        return max(candidates, key=lambda b: b.finished_at).id if candidates else None

    return chosen


def histories(
    kept: Iterable[BackupPoint], timelines: Mapping[int, TimelineInfo], all_tlis: set[int]
) -> list[tuple[list[Span], int]]:
    """(history, first segment) for every kept backup and every timeline
    whose history it lies on."""
    out = []
    for b in kept:
        for tli in sorted(all_tlis | {b.timeline}):
            spans = ancestry(tli, timelines)
            if on_history(b, spans):
                out.append((spans, b.start_lsn))
    return out


def wal_to_expire(
    kept: list[BackupPoint],
    wal: list[WalRef],
    timelines: Mapping[int, TimelineInfo],
    seg_size: int,
) -> list[WalRef]:
    """WAL files no kept backup needs, that lie before some kept backup's start."""
    if not kept:
        return []
    tlis = {1} | set(timelines) | {w.timeline for w in wal}
    hist = [
        (spans, lsn_segno(start, seg_size)) for spans, start in histories(kept, timelines, tlis)
    ]
    out = []
    for w in wal:
        if w.kind == "history" or w.segno is None:
            continue
        on = [
            start
            for spans, start in hist
            if timeline_for_segment(w.segno, spans, seg_size) == w.timeline
        ]
        if on and all(w.segno < start for start in on):
            out.append(w)
    return sorted(out, key=lambda w: w.name)
