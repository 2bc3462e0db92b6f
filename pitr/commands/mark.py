"""pitr mark NAME: a named instant across the sources of the config, to
restore to later with `pitr restore --to NAME`."""

from __future__ import annotations

from datetime import timedelta

import click

from pitr.context import AppContext
from pitr.output import duration


@click.command(name="mark")
@click.argument("name")
@click.option(
    "--source",
    "source_names",
    multiple=True,
    metavar="NAME",
    help="Only this source (repeatable; default: every source).",
)
@duration(
    "--wait",
    "How long a Redis or SQLite capture may take to archive up to the mark (default 30s).",
)
@click.pass_obj
def command(
    app: AppContext, name: str, source_names: tuple[str, ...], wait: timedelta | None
) -> None:
    """Record the named instant NAME."""
    from pitr.config import ConfigError
    from pitr.marking import take_marks
    from pitr.timeparse import format_utc

    names = list(dict.fromkeys(source_names))
    sources = [app.source(n) for n in names] if names else list(app.config.sources.values())
    if not sources:
        raise ConfigError("the configuration has no sources to mark")
    timeout = 30.0 if wait is None else wait.total_seconds()
    for record in take_marks(app, sources, name, timeout):
        where = (
            f"restore point at LSN {record.lsn} on timeline {record.timeline}"
            if record.lsn
            else "archived up to"
        )
        click.echo(f"mark {name}: {record.source} ({record.kind}) {where} {format_utc(record.at)}")
