"""pitr daemon: run all continuous work of the config in the foreground."""

from __future__ import annotations

import click

from pitr.context import AppContext


@click.command(name="daemon")
@click.pass_obj
def command(app: AppContext) -> None:
    """WAL look-ahead push, stream tailers and scheduled backups, until SIGTERM."""
    from pitr.daemon import Daemon

    Daemon(app, lambda line: click.echo(line, err=True)).run()
