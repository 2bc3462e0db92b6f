"""pitr wal-fetch: the restore_command shim.

Exit 1 means "not archived" (PostgreSQL then tries elsewhere or ends
recovery); any storage or integrity error exits above 125 so that
PostgreSQL stops recovery instead of promoting with data missing.
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
@click.argument("name", metavar="NAME")
@click.argument("dest", metavar="DEST")
@click.pass_obj
def command(app: AppContext, source_name: str | None, name: str, dest: str) -> None:
    """restore_command: fetch archived WAL file NAME (%f) to DEST (%p)."""
    from catalog.errors import TransientStorageError
    from recovery.walfetch import fetch_wal

    try:
        src = app.source(source_name, "postgres")
        repo = app.repo()
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
