"""pitr archive-command: the archive_command line to give PostgreSQL."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, cast

import click

from pitr.context import AppContext

if TYPE_CHECKING:
    from pitr.kinds.postgres import PostgresConfig


@click.command(name="archive-command")
@click.option("--source", "source_name", metavar="NAME", help="Postgres source of the config.")
@click.pass_obj
def command(app: AppContext, source_name: str | None) -> None:
    """Print the archive_command for a source: `pitr wal-push`, with a shortcut
    in the shell for segments the daemon has already archived."""
    from pitr.pgsetup import recommended_archive_command

    src = cast("PostgresConfig", app.source(source_name, "postgres"))
    for name in ("PITR_REPO", "PITR_CATALOG"):
        if os.environ.get(name):
            click.echo(f"pitr: warning: {name} is set here; PostgreSQL must see it too", err=True)
    click.echo(recommended_archive_command(app, src))
