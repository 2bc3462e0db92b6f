"""Partial restore of a SQLite source: rows of a restored copy brought back
into the live database, which may stay open by its application.

The copy is ATTACHed to a connection on the live file and every table is
handled in one write transaction (BEGIN IMMEDIATE, waiting on the busy
timeout for the application's writers): all tables are checked first, and a
failure anywhere rolls back, so the live database is changed completely or
not at all.

Modes, by the primary key the table declares (rowid is not a key: VACUUM
renumbers it):
  insert-missing  rows of the copy whose key the live table lacks
  replace         insert-missing, and live rows with the key of a copy row
                  take the copy's values (an UPSERT: no DELETE, so no
                  ON DELETE cascade fires); live rows the copy lacks stay
  side-table      the copy's rows into a new table TABLE_restored_<target>
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from recovery.errors import RestoreInputError
from recovery.partial import outcome
from recovery.sqlite.tables import RowsUnmet, condition, count_where, quote, user_tables

COPY = "pitr_restored"  # the schema name of the attached copy
BUSY_MS = 30_000
MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class TableWork:
    table: str
    columns: list[str]
    key: list[str]
    at_target: int  # rows of the copy the condition selects
    side: str | None = None  # side-table mode: the new table


def check_live(path: Path) -> None:
    """RestoreInputError (exit 2) unless path is an existing SQLite database."""
    if not path.is_file():
        raise RestoreInputError(f"--into-database {path}: no such file")
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise RestoreInputError(f"--into-database {path}: is not a SQLite database")


def restore_rows(
    copy: Path, live: Path, tables: list[str], where: str | None, mode: str, stamp: str
) -> list[str]:
    """Bring the rows of tables that where selects from copy into live;
    a line per table saying what was done. stamp names side tables."""
    check_live(live)
    conn = sqlite3.connect(
        f"{live.absolute().as_uri()}?mode=rw",
        uri=True,
        isolation_level=None,
        timeout=BUSY_MS / 1000,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        conn.execute(f"ATTACH DATABASE ? AS {COPY}", (f"{copy.absolute().as_uri()}?immutable=1",))
        conn.execute("BEGIN IMMEDIATE")
        try:
            work = [_check(conn, t, where, mode, stamp) for t in tables]
            lines = [_apply(conn, w, where, mode) for w in work]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already
                conn.execute("ROLLBACK")
            raise
        return lines
    except sqlite3.IntegrityError as e:
        raise RowsUnmet(f"restore rows into {live}: {e}; nothing was changed") from None
    except sqlite3.OperationalError as e:
        raise RowsUnmet(f"restore rows into {live}: {e}; nothing was changed") from None
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection, schema: str, table: str) -> tuple[list[str], list[str]]:
    """(columns, primary key columns in key order) of a table."""
    info = conn.execute(f"PRAGMA {schema}.table_info({quote(table)})").fetchall()
    columns = [str(r[1]) for r in info]
    key = [str(r[1]) for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    return columns, key


def _check(
    conn: sqlite3.Connection, table: str, where: str | None, mode: str, stamp: str
) -> TableWork:
    columns, key = _columns(conn, COPY, table)
    at_target = count_where(conn, table, where, COPY)
    live_tables = {t.lower(): t for t in user_tables(conn)}
    if mode == "side-table":
        side = f"{table}_restored_{stamp}"
        if side.lower() in live_tables:
            raise RowsUnmet(f"table {side} exists already: drop or rename it first")
        return TableWork(table, columns, key, at_target, side)
    if table.lower() not in live_tables:
        raise RestoreInputError(
            f"table {table} is not in the live database: bring it back with --mode side-table"
        )
    if not key:
        raise RowsUnmet(
            f"table {table} has no primary key: --mode {mode} needs one; use --mode side-table"
        )
    live_columns, live_key = _columns(conn, "main", live_tables[table.lower()])
    if [k.lower() for k in live_key] != [k.lower() for k in key]:
        raise RowsUnmet(
            f"table {table}: its primary key is ({', '.join(live_key)}) now but was "
            f"({', '.join(key)}) at the target: use --mode side-table"
        )
    missing = {c.lower() for c in columns} - {c.lower() for c in live_columns}
    if missing:
        raise RowsUnmet(
            f"table {table}: the live table has no column {', '.join(sorted(missing))}: "
            "use --mode side-table"
        )
    return TableWork(table, columns, key, at_target)


def _absent(work: TableWork) -> str:
    """The condition: the live table has no row with this copy row's key."""
    same = " AND ".join(
        f"pitr_live.{quote(k)} IS {COPY}.{quote(work.table)}.{quote(k)}" for k in work.key
    )
    return f"NOT EXISTS (SELECT 1 FROM main.{quote(work.table)} AS pitr_live WHERE {same})"


def _apply(conn: sqlite3.Connection, work: TableWork, where: str | None, mode: str) -> str:
    t = quote(work.table)
    cols = ", ".join(quote(c) for c in work.columns)
    rows = f"FROM {COPY}.{t} WHERE {condition(where)}"
    if mode == "side-table":
        assert work.side is not None
        conn.execute(f"CREATE TABLE main.{quote(work.side)} AS SELECT * {rows}")
        return outcome(work.table, work.at_target, mode, side=work.side)
    if mode == "insert-missing":
        done = conn.execute(
            f"INSERT INTO main.{t} ({cols}) SELECT {cols} {rows} AND {_absent(work)}"
        )
        return outcome(work.table, work.at_target, mode, added=done.rowcount)
    inserted = conn.execute(f"SELECT count(*) {rows} AND {_absent(work)}").fetchone()[0]
    values = [c for c in work.columns if c.lower() not in {k.lower() for k in work.key}]
    if values:
        sets = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in values)
        differ = " OR ".join(f"{quote(c)} IS NOT excluded.{quote(c)}" for c in values)
        action = f"DO UPDATE SET {sets} WHERE {differ}"
    else:
        action = "DO NOTHING"
    keys = ", ".join(quote(k) for k in work.key)
    done = conn.execute(
        f"INSERT INTO main.{t} ({cols}) SELECT {cols} {rows} ON CONFLICT ({keys}) {action}"
    )
    return outcome(work.table, work.at_target, mode, inserted, done.rowcount - inserted)
