"""The tables of restored SQLite copies: which one `--table NAME` (or
`DB/NAME`) means, and whether a `--where` condition parses on it.

Shared by export and partial restore. A name matches case-insensitively, as
SQLite does; a plain name must be in exactly one database of the source.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from recovery.errors import RecoveryError, RestoreInputError


class RowsUnmet(RecoveryError):
    """The tables exist but cannot take what was asked (no primary key, a
    side table already there, a conflict): nothing was changed."""

    exit_code = 3


@dataclass(frozen=True)
class TableRef:
    db: str  # the database's name in the source (its file name)
    name: str  # as the schema spells it

    def __str__(self) -> str:
        return f"{self.db}/{self.name}"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def open_read_only(path: Path) -> sqlite3.Connection:
    """A restored copy, read-only and without locks (nobody else has it)."""
    return sqlite3.connect(f"{path.absolute().as_uri()}?immutable=1", uri=True)


def user_tables(conn: sqlite3.Connection, schema: str = "main") -> list[str]:
    rows = conn.execute(
        f"SELECT name FROM {schema}.sqlite_schema WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    return [str(r[0]) for r in rows]


def resolve_tables(names: tuple[str, ...], tables_of: dict[str, list[str]]) -> list[TableRef]:
    """The tables named (every user table when none is), in the order given;
    RestoreInputError (exit 2) for a name that is not at the target."""
    if not names:
        return [TableRef(db, t) for db in sorted(tables_of) for t in tables_of[db]]
    refs: list[TableRef] = []
    for name in names:
        ref = _resolve_one(name, tables_of)
        if ref not in refs:
            refs.append(ref)
    return refs


def _resolve_one(name: str, tables_of: dict[str, list[str]]) -> TableRef:
    db, _, table = name.rpartition("/") if "/" in name else ("", "", name)
    if db and db not in tables_of:
        raise RestoreInputError(
            f"--table {name}: no database {db!r} in the source (databases: "
            f"{', '.join(sorted(tables_of))})"
        )
    where = [db] if db else sorted(tables_of)
    found = [TableRef(d, t) for d in where for t in tables_of[d] if t.lower() == table.lower()]
    if not found:
        known = ", ".join(t for d in where for t in tables_of[d]) or "none"
        raise RestoreInputError(f"--table {name}: no such table at the target (tables: {known})")
    if len(found) > 1:
        dbs = ", ".join(f.db for f in found)
        raise RestoreInputError(
            f"--table {name}: a table of several databases ({dbs}): name it as DB/{table}"
        )
    return found[0]


def condition(where: str | None) -> str:
    """The WHERE clause body: the operator's condition, or every row."""
    return f"({where})" if where else "1"


def count_where(conn: sqlite3.Connection, table: str, where: str | None, schema: str) -> int:
    """The rows of table that where selects; RestoreInputError (exit 2)
    when the condition does not parse or names what is not there."""
    sql = f"SELECT count(*) FROM {schema}.{quote(table)} WHERE {condition(where)}"
    try:
        return int(conn.execute(sql).fetchone()[0])
    except (sqlite3.Error, sqlite3.Warning) as e:
        raise RestoreInputError(f"--where {where!r} on table {table}: {e}") from None
