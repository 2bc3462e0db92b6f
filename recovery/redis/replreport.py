"""What a replication capture adds to a Redis source's reports (called by
recovery.redis.report.RedisReports): the window and its instants of lower
precision, the offset continuity of each epoch, the instants lost to
damaged objects, and the epochs a retention policy lets go."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from catalog.queries import SourceRow
from catalog.redisformat import from_ms
from catalog.replfacts import (
    BatchLink,
    EpochFact,
    batch_links,
    epoch_batches,
    load_epochs,
    offset_holes,
    orphan_batches,
    repl_totals,
)
from catalog.replication import epoch_key, repl_batch_key
from catalog.repository import Repository
from recovery.coverage import Coverage
from recovery.integrity import Problem
from recovery.redis.replwindow import epochs_json, lower_precision, repl_coverage
from recovery.redis.retention import epochs_to_keep
from recovery.retention import ExpiredFact, Policy, SourceExpiry
from recovery.status import SourceStatus


def epochs_of(
    repo: Repository, src: SourceRow, bad_oids: Collection[str] = ()
) -> tuple[list[EpochFact], list[BatchLink]]:
    """The epochs, and the batch links a coverage or a check reads."""
    with repo.catalog.session() as s:
        epochs = load_epochs(s, src.id)
        return epochs, batch_links(s, src.id, bad_oids) if epochs else []


def repl_status(repo: Repository, src: SourceRow, status: SourceStatus) -> None:
    """The window, totals and newest arrival of a source with epochs; a
    replicated source is restored from them, not from snapshots."""
    epochs, links = epochs_of(repo, src)
    if not epochs:
        return
    with repo.catalog.session() as s:
        totals = repl_totals(s, src.id, epochs)
    status.coverage = repl_coverage(epochs, links)
    status.imprecise = lower_precision(epochs)
    status.totals.update({**totals, "epochs": epochs_json(epochs)})
    status.newest_base_at = from_ms(max(e.base_ms for e in epochs))
    # The server pings its replicas (every 10 s by default) through the same
    # stream, so the newest arrival is the capture's heartbeat too.
    newest = from_ms(max(e.newest_ms for e in epochs))
    if status.last_archived_at is None or newest > status.last_archived_at:
        status.last_archived_at = newest


def repl_problems(repo: Repository, src: SourceRow) -> list[Problem]:
    epochs, links = epochs_of(repo, src)
    return [
        Problem(
            src.name,
            "repl_offset_gap",
            f"replication epoch {epoch.name}: no batch holds offsets {start}..{end}",
            {"epoch": epoch.name, "from": start, "to": end},
        )
        for epoch in epochs
        for start, end in offset_holes(epoch, links)
    ]


def repl_damage(
    repo: Repository, src: SourceRow, oids: Collection[str]
) -> tuple[Coverage, Coverage] | None:
    """The window before and after losing these objects; None without epochs."""
    epochs, links = epochs_of(repo, src)
    if not epochs:
        return None
    bad = set(oids)
    _, bad_links = epochs_of(repo, src, bad)
    return repl_coverage(epochs, links), repl_coverage(epochs, bad_links, bad)


def repl_expiry(
    repo: Repository, src: SourceRow, policy: Policy, now: datetime, plan: SourceExpiry
) -> None:
    """Add to the plan the epochs no kept instant falls in, with their
    batches (records first, so that the epoch's record goes last), and
    batches whose epoch is already gone."""
    with repo.catalog.session() as s:
        epochs = load_epochs(s, src.id)
        kept = epochs_to_keep(epochs, policy, now, policy.marks_of(src.name))
        plan.kept.update((f"epoch {name}", why) for name, why in kept.items())
        for row_id, name, start in orphan_batches(s, src.id):
            plan.facts.append(_batch(src.name, row_id, name, start))
        for epoch in epochs:
            if epoch.name in kept:
                continue
            plan.facts += [
                _batch(src.name, row_id, epoch.name, start)
                for row_id, start in epoch_batches(s, src.id, epoch.name)
            ]
            plan.facts.append(
                ExpiredFact("repl_epoch", epoch.id, epoch.name, epoch_key(src.name, epoch.name))
            )


def _batch(source: str, row_id: int, epoch: str, start: int) -> ExpiredFact:
    return ExpiredFact(
        "repl_batch", row_id, f"{epoch} {start}", repl_batch_key(source, epoch, start)
    )
