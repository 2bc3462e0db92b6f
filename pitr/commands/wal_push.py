"""pitr wal-push: the archive_command shim.

With a daemon running, the segment is usually archived already and the
daemon only confirms it; without one, this process pushes it itself.
"""

from __future__ import annotations

import os
import sys

import click

from pitr.context import AppContext


@click.command(name="wal-push")
@click.option("--source", "source_name", metavar="NAME", help="Postgres source of the config.")
@click.argument("path", metavar="PATH")
@click.pass_obj
def command(app: AppContext, source_name: str | None, path: str) -> None:
    """archive_command: archive one WAL file (%p). Exits 0 only once it is durable."""
    from pitr.daemon_client import ask, socket_path

    src = app.source(source_name, "postgres")
    url = app.config.repository.url
    request = {"op": "push", "repository": url, "source": src.name, "path": os.path.abspath(path)}
    answer = ask(socket_path(url), request)
    if answer is not None:
        if answer.get("ok"):
            return
        click.echo(f"pitr: {answer.get('error', 'the daemon refused')}", err=True)
        sys.exit(int(answer.get("exit_code", 5)))

    from archiver.postgres.walpush import push_wal

    push_wal(app.repo(), src.name, path)
