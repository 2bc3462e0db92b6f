"""pitr wal-push: the archive_command shim."""

from __future__ import annotations

import click

from pitr.context import AppContext


@click.command(name="wal-push")
@click.option("--source", "source_name", metavar="NAME", help="Postgres source of the config.")
@click.argument("path", metavar="PATH")
@click.pass_obj
def command(app: AppContext, source_name: str | None, path: str) -> None:
    """archive_command: archive one WAL file (%p). Exits 0 only once it is durable."""
    from archiver.walpush import push_wal

    src = app.source(source_name, "postgres")
    push_wal(app.repo(), src.name, path)
