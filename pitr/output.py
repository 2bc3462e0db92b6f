"""Output of the reporting commands: rich tables on a terminal, aligned plain
text otherwise (cron mail, pipes), and JSON with stable field names."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import click

from pitr.timeparse import format_utc

F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_CHOICE = click.Choice(["table", "json"])


def output_option(*more: str) -> Callable[[F], F]:
    """--output: table (the default), json, and the formats in `more`."""
    choice = click.Choice(["table", "json", *more]) if more else OUTPUT_CHOICE
    return click.option("--output", "output", type=choice, default="table", show_default=True)


def source_option(help: str = "Only this source.") -> Callable[[F], F]:
    return click.option("--source", "source_name", metavar="NAME", help=help)


def report_command(name: str) -> Callable[[Callable[..., None]], click.Command]:
    """A reporting command: --source NAME and --output table|json, and the
    AppContext as its first argument."""

    def make(f: Callable[..., None]) -> click.Command:
        return click.command(name=name)(source_option()(output_option()(click.pass_obj(f))))

    return make


def duration(name: str, help: str, **more: Any) -> Callable[[F], F]:
    """An option taking a DURATION, given to the command as a timedelta."""
    return click.option(name, metavar="DURATION", callback=duration_option, help=help, **more)


def duration_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> timedelta | None:
    """click callback: a DURATION option ('26h', '7d') as a timedelta."""
    if value is None:
        return None
    from pitr.timeparse import parse_duration

    try:
        return parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def piece_json(piece: Any) -> dict[str, Any]:
    """A span (a gap, a lost stretch) as {from, to, detail}."""
    return {"from": format_utc(piece.start), "to": format_utc(piece.end), "detail": piece.detail}


def window_json(coverage: Any, gaps: Iterable[Any]) -> dict[str, Any]:
    """The recoverable window and the gaps in it, as every report prints them."""
    return {
        "recoverable_from": format_utc(coverage.recoverable_from),
        "recoverable_to": format_utc(coverage.recoverable_to),
        "gaps": [piece_json(g) for g in gaps],
    }


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def when(value: datetime | None) -> str:
    """A UTC instant for people, to the second."""
    text = format_utc(value)
    if text is None:
        return "-"
    head, _, rest = text.partition(".")
    return head + "Z" if rest else text


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 172800:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def is_terminal() -> bool:
    return sys.stdout.isatty()


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table: rich on a terminal, plain aligned columns otherwise."""
    if is_terminal():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, title_justify="left", show_lines=False)
        for c in columns:
            t.add_column(c, overflow="fold")
        for r in rows:
            t.add_row(*r)
        Console().print(t)
        return
    if title:
        click.echo(title)
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    for line in [list(columns), *rows]:
        click.echo("  " + "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def heading(text: str) -> None:
    if is_terminal():
        from rich.console import Console

        Console().print(f"[bold]{text}[/bold]", highlight=False)
    else:
        click.echo(text)
