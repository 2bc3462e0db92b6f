"""pitr restore: every chosen source back to one instant.

All plans are made before anything is touched, so a target that one source
cannot reach leaves every source as it was.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from pitr.config import ConfigError, SourceConfig
from pitr.context import AppContext
from pitr.timeparse import format_utc, parse_time


@click.command(name="restore")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="TIME",
    help="Target instant (local time unless a zone is given).",
)
@click.option(
    "--source", "source_name", metavar="NAME", help="Only this source (default: every source)."
)
@click.option(
    "--pgdata", metavar="DIR", help="Where to lay down a PostgreSQL source (default: its pgdata)."
)
@click.option(
    "--redis-url", metavar="URL", help="Redis to restore into (default: the source's url)."
)
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@click.option("--force", is_flag=True, help="Replace existing data (PostgreSQL's is set aside).")
@click.pass_obj
def command(
    app: AppContext,
    to: str,
    source_name: str | None,
    pgdata: str | None,
    redis_url: str | None,
    dry_run: bool,
    force: bool,
) -> None:
    """Restore sources to the instant TIME."""
    try:
        target = parse_time(to)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    sources = [app.source(source_name)] if source_name else list(app.config.sources.values())
    if not sources:
        raise ConfigError("the configuration has no sources to restore")
    if pgdata and sum(s.kind == "postgres" for s in sources) > 1:
        raise ConfigError("--pgdata names one directory: choose a postgres source with --source")

    click.echo(f"target: {to!r} = {format_utc(target)}")
    plans = [(src, _plan(app, src, target)) for src in sources]
    for src, plan in plans:
        for line in _describe(src, plan, pgdata, redis_url):
            click.echo(f"  {line}")
    if dry_run:
        click.echo("dry run: nothing changed")
        return
    # Every target is checked before any is touched: a refusal leaves all as they were.
    for src, plan in plans:
        if src.kind == "redis":
            from pitr import redis_ops

            redis_ops.check_restore_target(app, plan, redis_url, force)
        else:
            from recovery.postgres.restore import check_target

            check_target(Path(pgdata or src.pgdata), force)
    for src, plan in plans:
        if src.kind == "postgres":
            _restore_pg(app, src, plan, pgdata or src.pgdata, force)
        else:
            from pitr import redis_ops

            redis_ops.execute_restore(app, plan, redis_url, force, dry_run=False)


def _plan(app: AppContext, src: SourceConfig, target: Any) -> Any:
    if src.kind == "redis":
        from pitr import redis_ops

        return redis_ops.plan_restore(app, src, target)
    from recovery.postgres.catalog import load_pg_state
    from recovery.postgres.planner import plan_postgres
    from recovery.postgres.restore import stops_at_target

    repo = app.repo()
    state = load_pg_state(repo, src.name)
    plan = plan_postgres(
        src.name, target, state.backups, state.segments, state.timelines, state.seg_size
    )
    return PgRestore(plan, stops_at_target(repo, state.source_id, plan), state.source_id)


class PgRestore:
    def __init__(self, plan: Any, stop_at_target: bool, source_id: int) -> None:
        self.plan = plan
        self.stop_at_target = stop_at_target
        self.source_id = source_id


def _describe(src: SourceConfig, plan: Any, pgdata: str | None, redis_url: str | None) -> list[str]:
    if src.kind == "redis":
        return [f"{src.name} (redis): {line}" for line in plan.describe()]
    p = plan.plan
    how = (
        f"stop before the first transaction after {format_utc(p.target)}"
        if plan.stop_at_target
        else "replay all archived WAL (nothing archived happened after the target)"
    )
    return [
        f"{src.name} (postgres) into {pgdata or src.pgdata}:",
        f"  base backup {p.backup.id}, ended {format_utc(p.backup.finished_at)}",
        f"  WAL {p.first_segment} .. {p.last_needed_segment} "
        f"({p.needed} segments) on timeline {p.timeline}",
        f"  {how}, then promote",
        f"  recoverable window: {format_utc(p.recoverable_from)} .. {format_utc(p.recoverable_to)}",
    ]


def _restore_pg(
    app: AppContext, src: SourceConfig, plan: PgRestore, pgdata: str, force: bool
) -> None:
    from pitr.progress import byte_progress
    from pitr.units import human_bytes
    from recovery.postgres.restore import local_records_dir, restore_postgres, spool_entries
    from recovery.postgres.spool import write_index

    repo = app.repo()
    # The prefetch spool lives beside the data directory, never inside it.
    target = os.path.abspath(pgdata)
    spool = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.pitr-spool")
    shutil.rmtree(spool, ignore_errors=True)
    # The spool's index first: a data directory renamed into place has its spool.
    write_index(
        spool,
        src.name,
        spool_entries(repo, plan.source_id, plan.plan),
        not repo.codec.encrypted,
        local_records_dir(repo, src.name),
    )
    try:
        with byte_progress(f"restore {src.name}") as progress:
            result = restore_postgres(
                repo,
                plan.plan,
                pgdata,
                restore_command=restore_command(app, src, spool),
                stop_at_target=plan.stop_at_target,
                end_command=restore_command(app, src, spool, remove_spool=True),
                force=force,
                progress=progress,
            )
    except BaseException:
        shutil.rmtree(spool, ignore_errors=True)
        raise
    _give_to_owner(spool, result.pgdata)
    if os.geteuid() != 0:
        # Start fetching WAL now; run as root, the first wal-fetch starts it
        # as the user that runs PostgreSQL instead.
        from pitr.entry import start_prefetcher

        start_prefetcher(app.config_path, spool)
    click.echo(
        f"{src.name}: restored {result.files} files ({human_bytes(result.bytes)}) into "
        f"{result.pgdata}"
    )
    if result.set_aside:
        click.echo(f"{src.name}: the previous contents were moved to {result.set_aside}")
    click.echo(
        f"{src.name}: start PostgreSQL on {result.pgdata}; "
        "it replays WAL to the target and promotes"
    )


def _give_to_owner(path: str, pgdata: str) -> None:
    """Running as root: the spool belongs to whoever runs PostgreSQL on pgdata."""
    if os.geteuid() != 0:
        return
    st = os.stat(pgdata)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, st.st_uid, st.st_gid)


def restore_command(
    app: AppContext, src: SourceConfig, spool: str, remove_spool: bool = False
) -> str:
    """The restore_command PostgreSQL runs: this pitr, this configuration
    (remove_spool: the recovery_end_command that clears the prefetch spool)."""
    exe = os.path.abspath(sys.argv[0])
    if not os.access(exe, os.X_OK) or os.path.basename(exe) != "pitr":
        exe = shutil.which("pitr") or exe
    parts = []
    for var in ("PITR_REPO", "PITR_CATALOG"):
        if os.environ.get(var):
            parts.append(f"{var}={shlex.quote(os.environ[var])}")
    parts.append(shlex.quote(exe))
    if app.config.path:
        parts += ["--config", shlex.quote(os.path.abspath(app.config.path))]
    if remove_spool:
        return " ".join([*parts, "wal-prefetch", "--remove", "--spool", shlex.quote(spool)])
    parts += ["wal-fetch", "--source", shlex.quote(src.name), "--spool", shlex.quote(spool)]
    parts += ["%f", "%p"]
    return " ".join(parts)
