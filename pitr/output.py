"""Output of the reporting commands: rich tables on a terminal, aligned plain
text otherwise (cron mail, pipes), and JSON with stable field names."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import click

from pitr.timeparse import format_utc

OUTPUT_CHOICE = click.Choice(["table", "json"])


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
