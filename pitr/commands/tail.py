"""pitr tail: follow a Redis source's streams in the foreground."""

from __future__ import annotations

import signal
import threading

import click

from pitr.config import ConfigError
from pitr.context import AppContext


@click.command(name="tail")
@click.option("--source", "source_name", metavar="NAME", help="Redis source of the config.")
@click.option(
    "--batch-count",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Close a batch after this many entries of a stream.",
)
@click.option(
    "--batch-seconds",
    type=click.FloatRange(0.01),
    default=1.0,
    show_default=True,
    help="Close a batch this long after its first entry.",
)
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
