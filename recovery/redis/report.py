"""What a Redis source tells the reports (recovery.reporting.KindReports)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select

from catalog import reports
from catalog.db.models import StreamBatch, StreamGap
from catalog.queries import SourceRow
from catalog.records import batch_key, gap_key
from catalog.redisformat import from_ms, parse_id, stream_name
from catalog.repository import Repository
from recovery.coverage import Coverage, Piece
from recovery.integrity import Problem
from recovery.redis.continuity import stream_continuity
from recovery.redis.coverage import redis_coverage
from recovery.redis.facts import batch_refs, load_redis, snapshot_ref
from recovery.redis.replreport import repl_damage, repl_expiry, repl_problems, repl_status
from recovery.redis.retention import StreamFact, facts_to_expire
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


class RedisReports:
    def status(self, repo: Repository, src: SourceRow, status: SourceStatus) -> None:
        with repo.catalog.session() as s:
            status.totals = reports.stream_totals(s, src.id)
            gaps = reports.stream_gaps(s, src.id)
            redis = load_redis(s, src.id, src.name)
        status.lost = [
            Piece(
                from_ms(parse_id(g.from_id)[0]),
                from_ms(parse_id(g.to_id)[0]),
                False,
                f"stream {g.stream}: {g.detail}",
            )
            for g in gaps
        ]
        status.coverage = redis_coverage(redis.snapshots, redis.covered)
        # Snapshots and the tailer's heartbeat count as archiving too.
        candidates = [status.totals.pop("last_archived_at"), redis.covered, status.last_backup_at]
        status.last_archived_at = max((c for c in candidates if c), default=None)
        repl_status(repo, src, status)

    def check(
        self, repo: Repository, src: SourceRow, continuity: bool
    ) -> tuple[list[Problem], dict[str, str]]:
        if not continuity:
            return [], {}
        return stream_continuity(repo, src) + repl_problems(repo, src), {}

    def damage(
        self, repo: Repository, src: SourceRow, oids: Collection[str], names: Collection[str]
    ) -> tuple[Coverage, Coverage]:
        replicated = repl_damage(repo, src, oids)
        if replicated is not None:
            return replicated
        with repo.catalog.session() as s:
            facts = load_redis(s, src.id, src.name)
            broken = batch_refs(s, src.id, oids)
        before = redis_coverage(facts.snapshots, facts.covered)
        after = redis_coverage(facts.snapshots, facts.covered, names, broken)
        return before, after

    def plan_expiry(
        self, repo: Repository, src: SourceRow, policy: Policy, now: datetime
    ) -> SourceExpiry:
        rows = source_backups(repo, src.id)
        with repo.catalog.session() as s:
            stream_facts = [
                StreamFact(b.id, "batch", b.stream, b.first_id, b.last_id, b.archived_at)
                for b in s.scalars(select(StreamBatch).where(StreamBatch.source_id == src.id))
            ] + [
                StreamFact(g.id, "gap", g.stream, g.from_id, g.to_id, g.detected_at)
                for g in s.scalars(select(StreamGap).where(StreamGap.source_id == src.id))
            ]
        if policy.empty:
            return unplanned(src.name, src.kind, rows)
        snaps = {b.id: snapshot_ref(b) for b in rows if b.kind == "redis_snapshot"}
        items = [Candidate(b.id, b.finished_at, b.started_at) for b in rows if b.id in snaps]

        def chosen(t: datetime) -> str | None:
            before = [v for v in snaps.values() if v.started_at <= t]
            return max(before, key=lambda v: v.started_at).id if before else None

        starts = [v.started_at for v in snaps.values()]
        sel = select_backups(items, policy, now, chosen, starts, policy.marks_of(src.name))
        kept_snaps = [v for v in snaps.values() if v.id in sel.kept]
        plan = SourceExpiry(src.name, src.kind)
        plan.facts = [_expired(src.name, f) for f in facts_to_expire(kept_snaps, stream_facts)]
        settle(plan, sel, items, rows)
        repl_expiry(repo, src, policy, now, plan)
        return plan


def _expired(source: str, f: StreamFact) -> ExpiredFact:
    name = stream_name(f.stream)
    if f.kind == "batch":
        return ExpiredFact("stream_batch", f.id, f.stream, batch_key(source, name, f.first_id))
    return ExpiredFact("stream_gap", f.id, f.stream, gap_key(source, name, f.first_id))
