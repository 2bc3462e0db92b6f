"""pitr serve: the status page, metrics, source JSON and health check over
HTTP, in the foreground, until SIGINT or SIGTERM."""

from __future__ import annotations

import click

from pitr.context import AppContext


@click.command(name="serve")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Address to listen on (else [serve] listen, else 127.0.0.1:9580); "
    "a non-loopback address needs a token.",
)
@click.pass_obj
def command(app: AppContext, listen: str | None) -> None:
    """Serve /, /metrics, /api/sources and /healthz, read-only."""
    from pitr.serve.app import build
    from pitr.serve.server import DEFAULT_LISTEN, bind, parse_listen, serve_forever

    settings = app.config.serve
    where = parse_listen(listen or settings.listen or DEFAULT_LISTEN, settings.token)
    asgi = build(app, settings.token)
    app.repo()  # a missing repository or catalog is refused before listening
    sock = bind(where)
    click.echo(f"pitr: serving {where.url} (read-only); stop with SIGINT", err=True)
    serve_forever(asgi, sock)
