"""`pitr mark NAME`: one record per source, written once the source can be
restored to the mark.

PostgreSQL writes a restore point of its own (recovery stops exactly there);
Redis and SQLite have no such thing, so their side of the mark is the mark's
instant, recorded once their capture has archived everything up to it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime

from catalog.marks import MarkRecord, check_mark_name, mark_key, marks_named
from catalog.queries import ensure_source
from catalog.repository import Repository
from pitr.config import ConfigError
from pitr.context import AppContext
from pitr.kinds.base import SourceConfig
from pitr.timeparse import format_utc

POLL = 0.2  # seconds between looks at how far a capture has archived


class MarkError(Exception):
    """A mark that cannot be taken as asked (a name taken, a capture behind)."""

    def __init__(self, message: str, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def refuse_taken(repo: Repository, sources: list[SourceConfig], name: str) -> None:
    """A mark name is used once in the whole repository (catalog and store)."""
    why = check_mark_name(name)
    if why is not None:
        raise ConfigError(why)
    with repo.catalog.session() as s:
        holders = [p.source for p in marks_named(s, name)]
    holders += [src.name for src in sources if repo.store.stat(mark_key(src.name, name))]
    if holders:
        raise MarkError(
            f"mark {name!r} exists already (on {', '.join(sorted(set(holders)))}): "
            "choose another name"
        )


def take_marks(
    app: AppContext, sources: list[SourceConfig], name: str, timeout: float
) -> list[MarkRecord]:
    """Each source's side of the mark, all at once: a PostgreSQL restore
    point is written at the mark's instant while captures are still being
    waited for, whatever the order of the config. Each is recorded as it is
    taken: a restore point already in a WAL keeps its name taken even when
    another source fails."""
    from pitr import kinds

    repo = app.repo()
    for src in sources:
        why = kinds.get(src.kind).mark_refusal(src)
        if why is not None:
            raise MarkError(f"mark {name}: {why}")
    refuse_taken(repo, sources, name)
    at = datetime.now(UTC)
    done: list[MarkRecord] = []
    failed: list[BaseException] = []
    with ThreadPoolExecutor(len(sources)) as pool:
        futures = [
            pool.submit(kinds.get(src.kind).mark, app, src, name, at, timeout) for src in sources
        ]
        for future in as_completed(futures):
            try:
                record = future.result()
                record_mark(repo, record)
            except Exception as e:
                failed.append(e)
                continue
            done.append(record)
    if failed:
        first = failed[0]
        code = getattr(first, "exit_code", 5)
        names = ", ".join(sorted(r.source for r in done))
        covered = f" (recorded for {names} only)" if done else ""
        raise MarkError(f"{first}{covered}", code if isinstance(code, int) else 5) from first
    order = [src.name for src in sources]
    return sorted(done, key=lambda r: order.index(r.source))


def record_mark(repo: Repository, record: MarkRecord) -> None:
    """The record (put-if-absent: two marks racing for a name, one wins),
    then its catalog row."""
    if repo.put_fact(record) is not None:
        raise MarkError(f"mark {record.name!r} exists already (on {record.source})")
    with repo.catalog.session() as s:
        src = ensure_source(s, record.source, record.kind)
        s.add(record.row(src.id))


def archived_mark(
    app: AppContext, src: SourceConfig, name: str, at: datetime, timeout: float
) -> MarkRecord:
    """A capture's side of a mark: `at`, once the source's recoverable
    window reaches it (the capture's heartbeat says so within a second when
    nothing is written; a Redis replication capture, within the server's
    repl-ping-replica-period, 10 s by default). Raises MarkError when it has
    not after timeout."""
    from catalog.catchup import catch_up
    from pitr import kinds
    from recovery.status import source_status

    repo = app.repo()
    reports = kinds.get(src.kind).reports
    deadline = time.monotonic() + timeout
    while True:
        # Captures write records, not catalog rows (a Redis replication
        # capture, a batch every 150 ms): project what is new before each look.
        catch_up(repo)
        status = source_status(repo, src.name, src.kind, reports, True)
        reached = status.coverage.recoverable_to
        start = status.coverage.recoverable_from
        if start is not None and start > at:  # waiting cannot help: nothing restores it
            raise MarkError(
                f"mark {name}: {src.name} is recoverable only from {format_utc(start)}, "
                f"after the mark's instant {format_utc(at)}: take a backup first"
            )
        if reached is not None and reached >= at:
            return MarkRecord(src.name, name, src.kind, at, datetime.now(UTC))
        if time.monotonic() >= deadline:
            raise MarkError(
                f"mark {name}: {src.name} is recoverable only up to {format_utc(reached) or '-'}, "
                f"{timeout:g}s after the mark's instant {format_utc(at)}: is its capture "
                "(pitr daemon or pitr tail) running and is there a snapshot?"
            )
        time.sleep(POLL)
