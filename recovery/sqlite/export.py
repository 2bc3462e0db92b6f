"""`pitr export` of a SQLite source: rows of restored copies written by
recovery.partial.writers."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import IO

from recovery.errors import RestoreInputError
from recovery.partial.writers import write_rows
from recovery.sqlite.tables import (
    TableRef,
    condition,
    count_where,
    open_read_only,
    quote,
    resolve_tables,
    user_tables,
)


def export_tables(
    copies: dict[str, Path], names: tuple[str, ...], where: str | None, fmt: str, out: IO[str]
) -> list[tuple[TableRef, int]]:
    """Write the named tables (every user table when none is) of the
    restored copies to out; each table with its row count. Every name and
    the condition are checked on every table before the first row is written."""
    conns = {db: open_read_only(path) for db, path in copies.items()}
    try:
        refs = resolve_tables(names, {db: user_tables(c) for db, c in conns.items()})
        if fmt == "csv" and len(refs) != 1:
            raise RestoreInputError("--format csv writes one table: name it with --table")
        for ref in refs:
            count_where(conns[ref.db], ref.name, where, "main")
        return [(ref, _write_table(conns[ref.db], ref, where, fmt, out)) for ref in refs]
    finally:
        for conn in conns.values():
            conn.close()


def _write_table(
    conn: sqlite3.Connection, ref: TableRef, where: str | None, fmt: str, out: IO[str]
) -> int:
    cursor = conn.execute(f"SELECT * FROM main.{quote(ref.name)} WHERE {condition(where)}")
    columns = [d[0] for d in cursor.description]
    return write_rows(out, fmt, ref.name, columns, cursor, dialect="sqlite")
