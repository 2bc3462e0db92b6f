"""pitr wal-push: the archive_command shim.

With a daemon running, the segment is usually archived already and the
daemon only confirms it; without one, this process pushes it itself. The
daemon is asked through pitr.walpush_door, which the console script's fast
path used already: a push it asked in vain is not asked again here.
"""

from __future__ import annotations

import click

from pitr.context import AppContext


@click.command(name="wal-push")
@click.option("--source", "source_name", metavar="NAME", help="Postgres source of the config.")
@click.argument("path", metavar="PATH")
@click.pass_obj
def command(app: AppContext, source_name: str | None, path: str) -> None:
    """archive_command: archive one WAL file (%p). Exits 0 only once it is durable."""
    from pitr.walpush_door import PushRequest, ask_daemon, exit_with, push_here

    app.source(source_name, "postgres")
    request = PushRequest(app.config_path, source_name, path)
    answer = ask_daemon(request)
    if answer is not None:
        exit_with(answer)
    code = push_here(app, request)
    if code:
        raise SystemExit(code)
