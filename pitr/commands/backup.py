"""pitr backup: a base backup or snapshot, by the source's kind."""

from __future__ import annotations

import click

from pitr.context import AppContext


@click.command(name="backup")
@click.option("--source", "source_name", metavar="NAME", help="Source of the config.")
@click.pass_obj
def command(app: AppContext, source_name: str | None) -> None:
    """Take a PostgreSQL base backup, a Redis keyspace snapshot or a SQLite base
    copy, by the source's kind."""
    from pitr import kinds

    src = app.source(source_name)
    kinds.get(src.kind).backup(app, src, click.echo, progress=True)
