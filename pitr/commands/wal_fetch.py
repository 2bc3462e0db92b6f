"""pitr wal-fetch: the restore_command shim.

Exit 1 means "not archived" (PostgreSQL then tries elsewhere or ends
recovery); any storage or integrity error exits above 125 so that
PostgreSQL stops recovery instead of promoting with data missing.
With --spool (written by pitr restore), files come from the prefetch spool.
"""

from __future__ import annotations

import sys
import time

import click

from pitr import exitcodes
from pitr.context import AppContext

ATTEMPTS = 3


@click.command(name="wal-fetch")
@click.option("--source", "source_name", metavar="NAME", help="Postgres source of the config.")
@click.option("--spool", metavar="DIR", help="Prefetch spool written by pitr restore.")
@click.argument("name", metavar="NAME")
@click.argument("dest", metavar="DEST")
@click.pass_obj
def command(
    app: AppContext, source_name: str | None, spool: str | None, name: str, dest: str
) -> None:
    """restore_command: fetch archived WAL file NAME (%f) to DEST (%p)."""
    from catalog.errors import TransientStorageError
    from recovery.postgres.walfetch import fetch_wal

    try:
        if spool:
            from pitr.entry import start_prefetcher
            from recovery.postgres.spool import serve

            served = serve(spool, name, dest)
            start_prefetcher(app.config_path, spool)
            if served:
                return
        src = app.source(source_name, "postgres")
        repo = app.repo(lazy_catalog=True)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                found = fetch_wal(repo, src.name, name, dest)
                break
            except TransientStorageError:
                if attempt == ATTEMPTS:
                    raise
                time.sleep(0.5 * attempt)
    except Exception as e:  # every failure must stop recovery, never look like "absent"
        click.echo(f"pitr: wal-fetch {name}: {e}", err=True)
        sys.exit(exitcodes.FETCH_FATAL)
    if not found:
        sys.exit(exitcodes.NOT_FOUND)


@click.command(name="wal-prefetch", hidden=True)
@click.option("--spool", metavar="DIR", required=True)
@click.option("--remove", is_flag=True, help="Stop the prefetcher and delete the spool.")
@click.pass_obj
def prefetch_command(app: AppContext, spool: str, remove: bool) -> None:
    """Keep the next WAL files of a restore downloaded into its spool."""
    from recovery.postgres import spool as spooling

    if remove:
        spooling.remove(spool)
    elif spooling.claim_prefetch(spool):
        spooling.prefetch(spool, app.repo(lazy_catalog=True).get_chunk)
