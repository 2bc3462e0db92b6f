"""pitr restore: every chosen source back to one instant.

All plans are made before anything is touched, so a target that one source
cannot reach leaves every source as it was.
"""

from __future__ import annotations

import click

from pitr.config import ConfigError
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
@click.option(
    "--into",
    metavar="PATH",
    help="Where to write a SQLite source: a file, or a directory for several databases.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@click.option(
    "--force", is_flag=True, help="Replace existing data (PostgreSQL's and SQLite's is set aside)."
)
@click.option(
    "--delta",
    is_flag=True,
    help="PostgreSQL: rewrite only what differs in an existing, stopped data directory "
    "of the same cluster.",
)
@click.pass_obj
def command(
    app: AppContext,
    to: str,
    source_name: str | None,
    pgdata: str | None,
    redis_url: str | None,
    into: str | None,
    dry_run: bool,
    force: bool,
    delta: bool,
) -> None:
    """Restore sources to the instant TIME."""
    from pitr import kinds
    from pitr.kinds.base import RestoreRequest

    try:
        target = parse_time(to)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    sources = [app.source(source_name)] if source_name else list(app.config.sources.values())
    if not sources:
        raise ConfigError("the configuration has no sources to restore")
    if delta and not any(s.kind == "postgres" for s in sources):
        raise ConfigError("--delta is for postgres sources: name one with --source")
    request = RestoreRequest(
        target, force, {"pgdata": pgdata, "redis_url": redis_url, "into": into}, delta
    )
    for option, value in request.into.items():
        takers = [s for s in sources if kinds.get(s.kind).into_option == option]
        if value and len(takers) > 1:
            flag = "--" + option.replace("_", "-")
            raise ConfigError(
                f"{flag} names one target: choose a {takers[0].kind} source with --source"
            )

    click.echo(f"target: {to!r} = {format_utc(target)}")
    jobs = [kinds.get(src.kind).plan_restore(app, src, request) for src in sources]
    for job in jobs:
        for line in job.describe():
            click.echo(f"  {line}")
    if dry_run:
        click.echo("dry run: nothing changed")
        return
    # Every target is checked before any is touched: a refusal leaves all as they were.
    for job in jobs:
        job.check_target()
    for job in jobs:
        job.execute(app)
