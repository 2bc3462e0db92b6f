"""What a SQLite source tells the reports (recovery.reporting.KindReports)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import func, select

from catalog.db.models import SqliteBatch, StoredObject
from catalog.queries import SourceRow
from catalog.records import sqlite_batch_key, sqlite_gap_key
from catalog.repository import Repository
from recovery.coverage import Coverage
from recovery.integrity import Problem
from recovery.retention import (
    Candidate,
    ExpiredFact,
    Policy,
    Selection,
    SourceExpiry,
    select_backups,
    settle,
    source_backups,
    unplanned,
)
from recovery.sqlite.facts import BaseRef, BatchRef, DbFacts, load_sqlite
from recovery.sqlite.plan import coverage, intersect
from recovery.status import SourceStatus


def _facts(repo: Repository, src: SourceRow) -> dict[str, DbFacts]:
    with repo.catalog.session() as s:
        return load_sqlite(s, src.id, src.name)


def _totals(repo: Repository, src: SourceRow, dbs: dict[str, DbFacts]) -> dict[str, Any]:
    with repo.catalog.session() as s:
        batches, commits, newest = s.execute(
            select(
                func.count(SqliteBatch.id),
                func.sum(SqliteBatch.commits),
                func.max(SqliteBatch.last_seen),
            ).where(SqliteBatch.source_id == src.id)
        ).one()
        logical, stored = s.execute(
            select(func.sum(StoredObject.size), func.sum(StoredObject.stored_size)).where(
                StoredObject.oid.in_(
                    select(SqliteBatch.oid).where(SqliteBatch.source_id == src.id).distinct()
                )
            )
        ).one()
    return {
        "databases": len(dbs),
        "generations": sum(len(f.generations()) for f in dbs.values()),
        "commits": int(commits or 0),
        "batches": int(batches or 0),
        "bytes": int(logical or 0),
        "stored_bytes": int(stored or 0),
        "gaps": sum(len(f.gaps) for f in dbs.values()),
        "newest_commit_seen": newest,
    }


class SqliteReports:
    def status(self, repo: Repository, src: SourceRow, status: SourceStatus) -> None:
        dbs = _facts(repo, src)
        status.identity = {"databases": sorted(dbs)}
        status.totals = _totals(repo, src, dbs)
        newest = status.totals.pop("newest_commit_seen")
        status.coverage = intersect([coverage(f) for f in dbs.values()])
        # Recorded gaps are holes of the coverage already (with their reason).
        # Idle databases: the capture's heartbeat says everything up to it is archived.
        beats = [t for f in dbs.values() for t in f.caught_up.values()]
        candidates = [newest, *beats, status.last_backup_at]
        status.last_archived_at = max((c for c in candidates if c), default=None)

    def check(
        self, repo: Repository, src: SourceRow, continuity: bool
    ) -> tuple[list[Problem], dict[str, str]]:
        if not continuity:
            return [], {}
        problems: list[Problem] = []
        for facts in _facts(repo, src).values():
            problems += _continuity(src.name, facts)
        return problems, {}

    def damage(
        self, repo: Repository, src: SourceRow, oids: Collection[str], names: Collection[str]
    ) -> tuple[Coverage, Coverage]:
        dbs = _facts(repo, src)
        before = intersect([coverage(f) for f in dbs.values()])
        lost, gone = set(oids), set(names)
        after = intersect(
            [
                coverage(
                    replace(
                        f,
                        bases=[b for b in f.bases if b.id not in gone],
                        batches=[b for b in f.batches if b.oid not in lost],
                    )
                )
                for f in dbs.values()
            ]
        )
        return before, after

    def plan_expiry(
        self, repo: Repository, src: SourceRow, policy: Policy, now: datetime
    ) -> SourceExpiry:
        rows = source_backups(repo, src.id)
        if policy.empty:
            return unplanned(src.name, src.kind, rows)
        dbs = _facts(repo, src)
        # Each database keeps what its own window needs.
        kept: dict[str, str] = {}
        starts: list[datetime] = []
        plan = SourceExpiry(src.name, src.kind)
        for facts in dbs.values():
            sel = select_backups(
                [Candidate(b.id, b.seen, b.seen) for b in facts.bases],
                policy,
                now,
                partial(_newest_base, facts),
                [b.seen for b in facts.bases],
                policy.marks_of(src.name),
            )
            kept.update(sel.kept)
            starts += [sel.window_start] if sel.window_start else []
            plan.facts += _expired_facts(
                src.name, facts, [b for b in facts.bases if b.id in sel.kept]
            )
        items = [Candidate(b.id, b.seen, b.seen) for f in dbs.values() for b in f.bases]
        sel = Selection(kept, min(starts, default=None))
        return settle(plan, sel, items, rows)


def _newest_base(facts: DbFacts, t: datetime) -> str | None:
    before = [b for b in facts.bases if b.seen <= t]
    return before[-1].id if before else None


def _expired_facts(source: str, facts: DbFacts, kept: list[BaseRef]) -> list[ExpiredFact]:
    """Batches no kept base copy of their generation replays, and gaps
    older than every kept copy."""
    out: list[ExpiredFact] = []
    for b in facts.batches:
        if not any(k.generation == b.generation and k.gpos < b.glast for k in kept):
            name = f"{facts.db} {b.generation} {b.gfirst}..{b.glast}"
            key = sqlite_batch_key(source, facts.db, b.generation, b.gfirst)
            out.append(ExpiredFact("sqlite_batch", b.id, name, key))
    oldest = min((k.seen for k in kept), default=None)
    for g in facts.gaps:
        if oldest is not None and g.until <= oldest:
            name = f"{facts.db} gap before {g.generation}"
            key = sqlite_gap_key(source, facts.db, g.generation, g.since)
            out.append(ExpiredFact("sqlite_gap", g.id, name, key))
    return out


def _continuity(source: str, facts: DbFacts) -> list[Problem]:
    problems: list[Problem] = []
    starts = {b.generation: b for b in facts.bases}
    by_gen: dict[str, list[BatchRef]] = {}
    for b in facts.batches:
        by_gen.setdefault(b.generation, []).append(b)
    for generation, batches in sorted(by_gen.items()):
        base = starts.get(generation)
        if base is None:
            problems.append(
                Problem(
                    source,
                    "sqlite_no_base",
                    f"{facts.db}: generation {generation} has frame batches but no base copy",
                    {"db": facts.db, "generation": generation},
                )
            )
            continue
        nxt = min(b.gpos for b in facts.bases if b.generation == generation) + 1
        for b in batches:
            if b.glast < nxt:
                continue
            if b.gfirst > nxt:
                problems.append(
                    Problem(
                        source,
                        "sqlite_frame_gap",
                        f"{facts.db}: generation {generation} is missing frames "
                        f"{nxt}..{b.gfirst - 1}",
                        {"db": facts.db, "generation": generation, "from": nxt},
                    )
                )
            nxt = max(nxt, b.glast + 1)
    for g in facts.gaps:
        problems.append(
            Problem(
                source,
                "sqlite_gap",
                f"{facts.db}: commits between {g.since.isoformat()} and {g.until.isoformat()} "
                f"may be missing ({g.detail})",
                {"db": facts.db, "generation": g.generation},
            )
        )
    return problems
