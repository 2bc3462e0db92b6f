"""What a PostgreSQL source tells the reports (recovery.reporting.KindReports)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from catalog import reports
from catalog.queries import SourceRow
from catalog.records import wal_folder, wal_key
from catalog.repository import Repository
from catalog.wal import parse_wal_name
from recovery.coverage import Coverage
from recovery.integrity import Problem
from recovery.postgres.continuity import wal_continuity
from recovery.postgres.coverage import pg_coverage
from recovery.postgres.facts import WalRef, load_source
from recovery.postgres.retention import pg_chooser, wal_to_expire
from recovery.retention import (
    Candidate,
    ExpiredFact,
    Policy,
    SourceExpiry,
    select_backups,
    settle,
    source_backups,
    unplanned,
)
from recovery.status import SourceStatus


class PostgresReports:
    def status(self, repo: Repository, src: SourceRow, status: SourceStatus) -> None:
        status.identity = {
            "system_identifier": src.system_identifier,
            "pg_version": src.pg_version,
            "wal_segment_size": src.wal_segment_size,
        }
        with repo.catalog.session() as s:
            status.totals = reports.wal_totals(s, src.id)
        status.last_archived_at = status.totals.pop("last_archived_at")
        streamed = status.totals["streamed"]
        if streamed:
            status.notes.append(
                f"streams WAL: segment {streamed['segment']} received up to "
                f"{streamed['received_bytes']} bytes, newest byte at {streamed['newest_at']}"
            )
        facts = load_source(repo, src)
        status.notes += [why for _, why in facts.unreadable.values()]
        status.coverage = pg_coverage(
            facts.backups, facts.segments(), facts.timelines, facts.seg_size
        )
        if status.backups and status.coverage.recoverable_from is None:
            status.notes.append(
                "no WAL archived after a backup ended yet: the window opens with the next "
                "archived segment (see archive_timeout)"
            )

    def check(
        self, repo: Repository, src: SourceRow, continuity: bool
    ) -> tuple[list[Problem], dict[str, str]]:
        facts = load_source(repo, src)
        # A .history file read for the planner: damage found on the way.
        unreadable = dict(facts.unreadable.values())
        if not continuity:
            return [], unreadable
        return wal_continuity(src.name, facts) + _missing_records(repo, src, facts.wal), unreadable

    def damage(
        self, repo: Repository, src: SourceRow, oids: Collection[str], names: Collection[str]
    ) -> tuple[Coverage, Coverage]:
        pg = load_source(repo, src)
        before = pg_coverage(pg.backups, pg.segments(), pg.timelines, pg.seg_size)
        lost_tl = set()
        for n in names:
            w = parse_wal_name(n)
            if w is not None and w.kind == "history":
                lost_tl.add(w.timeline)
        timelines = {t: i for t, i in pg.timelines.items() if t not in lost_tl}
        after = pg_coverage(
            pg.backups, pg.segments(exclude_oids=oids), timelines, pg.seg_size, names
        )
        return before, after

    def plan_expiry(
        self, repo: Repository, src: SourceRow, policy: Policy, now: datetime
    ) -> SourceExpiry:
        rows = source_backups(repo, src.id)
        if policy.empty:
            return unplanned(src.name, src.kind, rows)
        facts = load_source(repo, src)
        items = [Candidate(b.id, b.finished_at, b.finished_at) for b in facts.backups]
        breakpoints = [b.finished_at for b in facts.backups] + [
            t.created_at for t in facts.timelines.values()
        ]
        chooser = pg_chooser(facts.backups, facts.timelines)
        sel = select_backups(items, policy, now, chooser, breakpoints, policy.marks_of(src.name))
        kept_points = [b for b in facts.backups if b.id in sel.kept]
        plan = SourceExpiry(src.name, src.kind)
        plan.facts = [
            ExpiredFact("wal", w.id, w.name, wal_key(src.name, w.name))
            for w in wal_to_expire(kept_points, facts.wal, facts.timelines, facts.seg_size)
        ]
        return settle(plan, sel, items, rows)


def _missing_records(repo: Repository, src: SourceRow, wal: Collection[WalRef]) -> list[Problem]:
    """WAL the catalog knows whose record is gone from the store: a catalog
    rebuild would lose it, so it is a hole in what the store alone proves."""
    folder = wal_folder(src.name) + "/"
    stored = {info.key[len(folder) :] for info in repo.store.list(folder)}
    return [
        Problem(
            src.name,
            "missing_record",
            f"WAL file {w.name}: its record is missing from the store (the catalog still "
            "has it, and wal-fetch serves it from there; catalog rebuild would lose it)",
            {"file": w.name},
        )
        for w in sorted(wal, key=lambda w: w.name)
        if w.name not in stored
    ]
