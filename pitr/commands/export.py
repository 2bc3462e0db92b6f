"""pitr export: data of one source as it was at an instant or mark, written
as SQL, CSV or JSON lines, without touching the source.

The source's kind restores what it needs somewhere private and writes the
rows (or keys) out; with --output the file appears under its name only once
complete.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import click

from pitr.config import ConfigError
from pitr.context import AppContext
from pitr.kinds.base import FORMATS, ExportRequest, RestoreRequest


@click.command(name="export")
@click.option("--source", "source_name", required=True, metavar="NAME", help="The source.")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="TIME|MARK",
    help="Target instant (local time unless a zone is given) or a mark's name.",
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    metavar="TABLE",
    help="A table to export (repeatable; default: every table). SQLite: DB/TABLE too.",
)
@click.option("--where", metavar="SQL", help="Only the rows this SQL condition selects.")
@click.option(
    "--keys", metavar="PATTERN", help="Redis: the keys to export (default: the source's)."
)
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS), help="Output format.")
@click.option(
    "--output", "output", metavar="FILE", help="Write to FILE (default: standard output)."
)
@click.option("--force", is_flag=True, help="Replace an existing --output file.")
@click.option(
    "--database",
    metavar="NAME",
    help="PostgreSQL: the database to read (default: the one the source's dsn names).",
)
@click.option(
    "--scratch-dir",
    metavar="DIR",
    help="Where the restored copy is made (default: the temp directory).",
)
@click.pass_obj
def command(
    app: AppContext,
    source_name: str,
    to: str,
    tables: tuple[str, ...],
    where: str | None,
    keys: str | None,
    fmt: str,
    output: str | None,
    force: bool,
    database: str | None,
    scratch_dir: str | None,
) -> None:
    """Write a source's data as it was at TIME or MARK."""
    from pitr import kinds
    from pitr.targets import check_sources, parse_target, with_marks

    if fmt == "csv" and len(tables) > 1:
        raise ConfigError("--format csv writes one table: give one --table")
    what = ExportRequest(
        tables, where or None, scratch_dir, format=fmt, keys=keys, database=database
    )
    destination = _destination(output, force)
    target = with_marks(app, parse_target(to, None, None, False, None))
    src = app.source(source_name)
    kind = kinds.get(src.kind)
    check_sources(target, [(src.name, src.kind, kind.target_forms)])
    request = RestoreRequest(target.marks.get(src.name, target.instant), False, {}, target.goal)
    if destination is None:
        kind.export(app, src, request, what, sys.stdout)
    else:
        _write_whole(destination, lambda out: kind.export(app, src, request, what, out))
        click.echo(f"{src.name}: wrote {destination}", err=True)
    # Last, so that a refusal is the one line on standard error.
    click.echo(target.describe(to), err=True)


def _destination(output: str | None, force: bool) -> Path | None:
    """The --output file, checked before anything is restored."""
    if output is None:
        if force:
            raise ConfigError("--force replaces an --output file: give --output FILE")
        return None
    from recovery.errors import TargetNotEmpty

    path = Path(output).expanduser().absolute()
    if path.is_dir():
        raise ConfigError(f"--output {output}: is a directory; name a file")
    if not path.parent.is_dir():
        raise ConfigError(f"--output {output}: no directory {path.parent}")
    if path.exists() and not force:
        raise TargetNotEmpty(
            f"--output {output}: exists; choose another file or replace it with --force"
        )
    return path


def _write_whole(path: Path, write: Callable[[IO[str]], None]) -> None:
    """write into a temp file beside path, renamed to path once complete
    (a failure leaves no file under the name)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".pitr-export", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
