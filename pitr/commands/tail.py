"""pitr tail: follow a Redis source's streams in the foreground."""

from __future__ import annotations

import signal
import threading

import click

from pitr.config import ConfigError
from pitr.context import AppContext
from pitr.output import F, source_option

# name, type, default, help of the options that size a stream's batches (the
# daemon's tailers take the defaults)
BATCH_OPTIONS = (
    ("--batch-count", click.IntRange(1), 1000, "Close a stream's batch after this many entries."),
    ("--batch-seconds", click.FloatRange(0.01), 1.0, "Close a batch this long after it opens."),
)


def batch_options(f: F) -> F:
    for name, kind, default, help_text in reversed(BATCH_OPTIONS):
        f = click.option(name, type=kind, default=default, show_default=True, help=help_text)(f)
    return f


@click.command(name="tail")
@source_option("Redis source of the config.")
@batch_options
@click.pass_obj
def command(
    app: AppContext, source_name: str | None, batch_count: int, batch_seconds: float
) -> None:
    """Archive the entries of the source's streams until SIGINT or SIGTERM,
    then ship what is buffered and exit 0."""
    from pitr.kinds.redis import RedisConfig

    src = app.source(source_name, "redis")
    assert isinstance(src, RedisConfig)  # app.source checked the kind
    if not src.streams:
        raise ConfigError(f"source {src.name!r} has no streams patterns to tail")
    from archiver.redis.tailer import StreamTailer
    from catalog.redisformat import safe_url

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    def log(message: str) -> None:
        click.echo(message, err=True)

    tailer = StreamTailer(
        app.repo(),
        src.name,
        src.url,
        src.streams,
        batch_count=batch_count,
        batch_seconds=batch_seconds,
        log=log,
    )
    log(
        f"tail {src.name}: following streams {', '.join(src.streams)} on {safe_url(src.url)}; "
        "stop with SIGINT or SIGTERM"
    )
    stats = tailer.run(stop)
    click.echo(
        f"tail {src.name}: stopped; shipped {stats.entries} entries in {stats.batches} batches "
        f"from {stats.streams} streams, {stats.gaps} gaps recorded"
    )
