"""Wiring of the Redis side for the commands: snapshot (pitr backup), restore
planning and execution (pitr restore). The commands call these; the work is
in archiver.redis.snapshot, recovery.redis.plan and recovery.redis.restore."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import click

from pitr.config import SourceConfig
from pitr.context import AppContext

if TYPE_CHECKING:
    from recovery.redis.plan import RedisRestorePlan


def patterns(src: SourceConfig) -> list[str]:
    """What a source covers: its key patterns and its stream patterns."""
    return sorted(set(src.keys) | set(src.streams))


def backup(app: AppContext, src: SourceConfig) -> None:
    """Take a keyspace snapshot and print a one-line summary."""
    from archiver.redis.snapshot import take_snapshot
    from pitr.timeparse import format_utc
    from pitr.units import human_bytes

    r = take_snapshot(app.repo(), src.name, src.url, src.keys, src.streams)
    click.echo(
        f"snapshot {r.id} of {src.name}: {r.keys} keys ({r.streams} streams), "
        f"{human_bytes(r.size_bytes)}, {human_bytes(r.stored_bytes)} new in the store, "
        f"taken {format_utc(r.started_at)}, {r.seconds:.1f}s"
    )


def plan_restore(app: AppContext, src: SourceConfig, target: datetime) -> RedisRestorePlan:
    """The restore plan of a redis source at target; PlanError (exit 3) with
    the recoverable window when the target cannot be reached."""
    from catalog.queries import get_source
    from recovery.redis.plan import choose_snapshot, load_plan

    repo = app.repo()
    with repo.catalog.session() as s:
        source = get_source(s, src.name)
        if source is None:
            choose_snapshot(src.name, target, [], None)  # raises: no snapshot yet
            raise AssertionError("unreachable")
        return load_plan(s, src.name, source.id, target)


def check_restore_target(
    app: AppContext, plan: RedisRestorePlan, redis_url: str | None, force: bool
) -> int:
    """How many keys of the target a restore would replace; TargetNotEmpty
    (exit 3) when there are some and force is not given. For callers that
    want to check every target before restoring anything."""
    from recovery.redis.restore import check_target, connect_target

    src = app.source(plan.source, "redis")
    url = redis_url or src.url
    client = connect_target(url, f"restore {src.name}")
    try:
        return check_target(client, src.name, url, patterns(src), force)
    finally:
        client.close()


def execute_restore(
    app: AppContext,
    plan: RedisRestorePlan,
    redis_url: str | None,
    force: bool,
    dry_run: bool,
) -> None:
    """Carry out a plan into redis_url (None: the source's own url)."""
    from catalog.redisformat import safe_url
    from recovery.redis.restore import restore_redis

    src = app.source(plan.source, "redis")
    url = redis_url or src.url
    if dry_run:
        found = check_restore_target(app, plan, redis_url, force)
        replace = f", replacing its {found} matching keys" if found else ""
        click.echo(f"{src.name}: dry run: would restore into {safe_url(url)}{replace}")
        return
    r = restore_redis(app.repo(), plan, url, patterns(src), force=force)
    parts = [f"{src.name}: restored {r.keys} keys into {safe_url(url)}"]
    if r.expired:
        parts.append(f"left out {r.expired} keys already expired at the target")
    parts.append(f"replayed {r.entries} stream entries into {r.streams} streams")
    if r.cut:
        parts.append(f"removed {r.cut} snapshot entries newer than the target")
    if r.replaced:
        parts.append(f"replaced {r.replaced} existing keys")
    click.echo(", ".join(parts) + f" ({r.seconds:.1f}s)")
