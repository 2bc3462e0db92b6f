"""pitr backup: a PostgreSQL base backup or a Redis keyspace snapshot."""

from __future__ import annotations

import click

from pitr.context import AppContext


@click.command(name="backup")
@click.option("--source", "source_name", metavar="NAME", help="Source of the config.")
@click.pass_obj
def command(app: AppContext, source_name: str | None) -> None:
    """Take a PostgreSQL base backup or a Redis keyspace snapshot, by the source's kind."""
    src = app.source(source_name)
    if src.kind == "redis":
        from pitr import redis_ops

        redis_ops.backup(app, src)
        return
    from archiver.postgres.backup import take_base_backup
    from pitr.progress import byte_progress
    from pitr.units import human_bytes

    with byte_progress(f"backup {src.name}") as progress:
        result = take_base_backup(app.repo(), src.name, src.dsn, src.pgdata, progress=progress)
    click.echo(
        f"backup {result.id} of {src.name}: {result.files} files, "
        f"{human_bytes(result.size_bytes)}, {human_bytes(result.stored_bytes)} new in the store, "
        f"WAL {result.start_lsn}..{result.stop_lsn} on timeline {result.timeline}, "
        f"{result.seconds:.1f}s"
    )
