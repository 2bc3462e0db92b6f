"""pitr archive-command: the archive_command line to give PostgreSQL."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from pitr.config import ConfigError
from pitr.context import AppContext


@click.command(name="archive-command")
@click.option("--source", "source_name", metavar="NAME", help="Postgres source of the config.")
@click.pass_obj
def command(app: AppContext, source_name: str | None) -> None:
    """Print the archive_command for a source: `pitr wal-push`, with a shortcut
    in the shell for segments the daemon has already archived."""
    from archiver.postgres.walmarks import archive_command, mark_tag

    src = app.source(source_name, "postgres")
    if not app.config.path:
        raise ConfigError("archive-command: the configuration must be a file (--config FILE)")
    for name in ("PITR_REPO", "PITR_CATALOG"):
        if os.environ.get(name):
            click.echo(f"pitr: warning: {name} is set here; PostgreSQL must see it too", err=True)
    script = Path(sys.executable).parent / "pitr"  # the console script beside this interpreter
    pitr = str(script) if script.exists() else os.path.abspath(sys.argv[0])
    config = os.path.abspath(app.config.path)
    tag = mark_tag(app.config.repository.url, src.name)
    click.echo(archive_command(pitr, config, src.name, tag))
