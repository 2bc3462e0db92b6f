"""The restorable instants of a PostgreSQL source (see recovery.coverage)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from catalog.wal import lsn_segno, segment_name
from recovery.coverage import Coverage, Piece, fmt, merge
from recovery.postgres.planner import (
    BackupPoint,
    TimelineInfo,
    ancestry,
    choose_timeline,
    on_history,
    timeline_for_segment,
    walk_chain,
)


def pg_coverage(
    backups: list[BackupPoint],
    segments: Mapping[tuple[int, int], datetime],
    timelines: Mapping[int, TimelineInfo],
    seg_size: int,
    bad_backups: Collection[str] = (),
) -> Coverage:
    """The restorable instants of a PostgreSQL source, as plan_postgres decides
    them; bad_backups are treated as unusable (damaged objects)."""
    if not backups:
        return Coverage()
    first = min(b.finished_at for b in backups)
    points = sorted(
        {b.finished_at for b in backups}
        | {t.created_at for t in timelines.values() if t.created_at > first}
    )
    pieces: list[Piece] = []
    for i, start in enumerate(points):
        end = points[i + 1] if i + 1 < len(points) else None
        pieces.extend(_pg_epoch(start, end, backups, segments, timelines, seg_size, bad_backups))
    return merge(pieces)


def _pg_epoch(
    start: datetime,
    end: datetime | None,
    backups: list[BackupPoint],
    segments: Mapping[tuple[int, int], datetime],
    timelines: Mapping[int, TimelineInfo],
    seg_size: int,
    bad_backups: Collection[str],
) -> list[Piece]:
    timeline = choose_timeline(start, backups, timelines)
    spans = ancestry(timeline, timelines)
    candidates = [b for b in backups if b.finished_at <= start and on_history(b, spans)]
    if not candidates:
        return [Piece(start, end, False, f"no base backup on timeline {timeline}'s history")]
    backup = max(candidates, key=lambda b: b.finished_at)
    if backup.id in bad_backups:
        return [Piece(start, end, False, f"backup {backup.id} is damaged")]
    chain, missing = walk_chain(backup, spans, segments, seg_size)
    missing_name = segment_name(timeline_for_segment(missing, spans, seg_size), missing, seg_size)
    needed = lsn_segno(backup.stop_lsn - 1, seg_size) - lsn_segno(backup.start_lsn, seg_size) + 1
    if len(chain) < needed:
        return [
            Piece(
                start,
                end,
                False,
                f"backup {backup.id} cannot reach a consistent state: "
                f"WAL segment {missing_name} is missing",
            )
        ]
    reach = max(t for _, t in chain)
    if end is not None and reach >= end:
        return [Piece(start, end, True)]
    out = []
    if reach >= start:
        out.append(Piece(start, reach, True))
    # Open-ended in the last epoch: then simply the next segment to come.
    out.append(
        Piece(
            max(start, reach),
            end,
            False,
            f"WAL segment {missing_name} is missing: backup {backup.id} "
            f"cannot replay past {fmt(reach)}",
        )
    )
    return out
