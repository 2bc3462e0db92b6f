"""Stream batches: bounds that contradict each other, overlaps, and the gaps
the tailer recorded."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select

from catalog import reports
from catalog.db.models import StreamBatch
from catalog.queries import SourceRow
from catalog.redisformat import parse_id
from catalog.repository import Repository
from recovery.integrity import Problem


def stream_continuity(repo: Repository, src: SourceRow) -> list[Problem]:
    source = src.name
    problems: list[Problem] = []
    with repo.catalog.session() as s:
        gaps = reports.stream_gaps(s, src.id)
        rows = s.execute(
            select(
                StreamBatch.stream,
                StreamBatch.first_id,
                StreamBatch.last_id,
                StreamBatch.first_ms,
                StreamBatch.last_ms,
                StreamBatch.count,
            ).where(StreamBatch.source_id == src.id)
        ).all()
    recreated = {g.stream for g in gaps if g.detail.startswith("recreated")}
    by_stream: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        by_stream[row[0]].append(tuple(row))
    for stream, batches in sorted(by_stream.items()):
        batches.sort(key=lambda r: parse_id(r[1]))
        prev = None
        for _, first, last, first_ms, last_ms, count in batches:
            if (
                parse_id(first) > parse_id(last)
                or parse_id(first)[0] != first_ms
                or parse_id(last)[0] != last_ms
                or count < 1
            ):
                problems.append(
                    Problem(
                        source,
                        "batch_invalid",
                        f"stream {stream}: batch {first}..{last} has contradictory bounds",
                        {"stream": stream, "first_id": first},
                    )
                )
            # A recreated stream starts its IDs again: overlaps are expected there.
            if prev is not None and stream not in recreated and parse_id(first) <= parse_id(prev):
                problems.append(
                    Problem(
                        source,
                        "batch_overlap",
                        f"stream {stream}: batch {first}..{last} overlaps the batch ending "
                        f"at {prev}",
                        {"stream": stream, "first_id": first},
                    )
                )
            prev = last if prev is None or parse_id(last) > parse_id(prev) else prev
    for g in gaps:
        problems.append(
            Problem(
                source,
                "stream_gap",
                f"stream {g.stream}: entries between {g.from_id} and {g.to_id} were not "
                f"archived ({g.detail})",
                {"stream": g.stream, "from_id": g.from_id, "to_id": g.to_id},
            )
        )
    return problems
