"""pitr tail: a source's continuous capture in the foreground (Redis
streams, SQLite commits), until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import threading

import click

from pitr.config import ConfigError
from pitr.context import AppContext
from pitr.output import F, source_option

# name, type, default, help of the options that size a Redis stream's
# batches (the daemon's tailers take the defaults)
BATCH_OPTIONS = (
    ("--batch-count", click.IntRange(1), 1000, "Close a stream's batch after this many entries."),
    ("--batch-seconds", click.FloatRange(0.01), 1.0, "Close a batch this long after it opens."),
)


def batch_options(f: F) -> F:
    for name, kind, default, help_text in reversed(BATCH_OPTIONS):
        f = click.option(name, type=kind, default=default, show_default=True, help=help_text)(f)
    return f


@click.command(name="tail")
@source_option("Redis or SQLite source of the config.")
@batch_options
@click.pass_obj
def command(
    app: AppContext, source_name: str | None, batch_count: int, batch_seconds: float
) -> None:
    """Archive what the source commits until SIGINT or SIGTERM, then ship
    what is buffered and exit 0."""
    from pitr import kinds

    if source_name is None:  # the only source that has a foreground capture
        tailing = [s for s in app.config.sources.values() if kinds.get(s.kind).tails]
        if len(tailing) != 1:
            what = (
                f"{len(tailing)} Redis or SQLite sources"
                if tailing
                else "no Redis or SQLite source"
            )
            raise ConfigError(f"the configuration has {what}: name one with --source")
        source_name = tailing[0].name
    src = app.source(source_name)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    def log(message: str) -> None:
        click.echo(message, err=True)

    options = {"batch_count": batch_count, "batch_seconds": batch_seconds}
    summary = kinds.get(src.kind).tail(app, src, stop, log, options)
    click.echo(f"tail {src.name}: stopped; {summary}")
