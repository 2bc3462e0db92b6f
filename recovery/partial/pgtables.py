"""What a partial restore needs to know of a PostgreSQL table, asked of
the server's catalog the same way on the scratch copy and the live
database: its canonical name, columns and primary key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from catalog.errors import first_line
from recovery.errors import PlanError, RestoreInputError


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): what CREATE TABLE takes
    generated: bool  # GENERATED ALWAYS AS (...) STORED: never written


@dataclass(frozen=True)
class Table:
    oid: int
    schema: str
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # primary key columns, in key order; () when none

    @property
    def qualified(self) -> str:
        return f"{ident(self.schema)}.{ident(self.name)}"

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def writable(self) -> list[str]:
        return [c.name for c in self.columns if not c.generated]


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def column_list(names: list[str] | tuple[str, ...], prefix: str = "") -> str:
    return ", ".join(prefix + ident(n) for n in names)


def find_table(conn: Any, spec: str) -> Table | None:
    """The table SPEC (schema.table, or table on the search path, quoted
    the way SQL quotes identifiers) names, or None."""
    import psycopg

    try:
        row = conn.execute(
            "SELECT c.oid, n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p')",
            (spec,),
        ).fetchone()
    except psycopg.errors.InvalidName as e:  # e.g. an unbalanced quote
        raise RestoreInputError(f"--table {spec}: not a table name ({first_line(e)})") from e
    if row is None:
        return None
    oid, schema, name = row
    columns = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod), attgenerated <> '' "
        "FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        (oid,),
    ).fetchall()
    key = conn.execute(
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = %s AND i.indisprimary "
        "ORDER BY array_position(i.indkey::int2[], a.attnum)",
        (oid,),
    ).fetchall()
    return Table(oid, schema, name, tuple(Column(*c) for c in columns), tuple(k for (k,) in key))


def user_tables(conn: Any) -> list[str]:
    """Every ordinary table outside the system schemas, as schema.table."""
    rows = conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%' "
        "ORDER BY 1"
    ).fetchall()
    return [r for (r,) in rows]


def selection(table: Table, where: str | None) -> str:
    """The SELECT of the chosen rows, written columns only."""
    sql = f"SELECT {column_list(table.writable)} FROM {table.qualified}"
    return sql + (f" WHERE ({where})" if where else "")


def check_where(conn: Any, table: Table, where: str | None) -> None:
    """A --where that does not parse or names what the table lacks is bad
    input, found before any row moves."""
    import psycopg

    if not where:
        return
    if ";" in where and _outside_quotes(where):
        raise RestoreInputError("--where: one condition, without ';'")
    try:
        conn.execute(f"EXPLAIN {selection(table, where)}")
    except psycopg.Error as e:
        raise RestoreInputError(f"--where on {table.label}: {first_line(e)}") from e


def _outside_quotes(text: str) -> bool:
    """A ';' outside string literals (which may hold one harmlessly)."""
    quoted = False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif ch == ";" and not quoted:
            return True
    return False


def require_key(table: Table, mode: str) -> None:
    if not table.key:
        raise PlanError(
            f"{table.label} has no primary key: --mode {mode} needs one; "
            "use --mode side-table to restore it beside the live table"
        )
