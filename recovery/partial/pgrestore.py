"""`pitr restore --table` for PostgreSQL: the source restored to the
target in a scratch cluster, then the chosen rows carried into the live
database in one transaction (COPY out of the copy, COPY into a temporary
table, one INSERT). The live server keeps running and is never restarted.

Everything that can be checked is checked before a row moves: the live
database first (cheap, before a restore that may take minutes), then the
copy; a failure in the transaction rolls all of it back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from catalog.errors import first_line
from recovery.errors import PlanError, RecoveryError, RestoreInputError
from recovery.partial import outcome
from recovery.partial.pgscratch import scratch_cluster
from recovery.partial.pgtables import (
    Table,
    check_where,
    column_list,
    find_table,
    ident,
    require_key,
    selection,
)

if TYPE_CHECKING:
    from pitr.kinds.base import PartialRequest
    from pitr.kinds.postgres import PgRestoreJob


def connect_live(dsn: str) -> Any:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from catalog.db.engine import pg_timeouts

    try:
        params = conninfo_to_dict(dsn)
        return psycopg.connect(dsn, autocommit=True, **pg_timeouts(params))
    except psycopg.ProgrammingError as e:
        raise RestoreInputError(f"--into-database: not a connection string: {first_line(e)}") from e
    except psycopg.Error as e:
        raise RecoveryError(f"--into-database: cannot connect: {first_line(e)}") from e


def restore_rows(
    app: Any, job: PgRestoreJob, rows: PartialRequest, dsn: str, echo: Callable[[str], None]
) -> None:
    import psycopg

    with connect_live(dsn) as live:
        dbname, user = live.execute("SELECT current_database(), current_user").fetchone()
        side = side_suffix(job.plan.target)
        live_tables = {spec: find_table(live, spec) for spec in rows.tables}
        for spec, table in live_tables.items():
            _check_live(spec, table, rows.mode, live, side, dbname)
        with (
            scratch_cluster(app, job, rows.scratch_dir, echo, [user]) as scratch,
            scratch.connect(dbname) as old,
        ):
            old.execute("SET default_transaction_read_only = on")
            pairs = [
                (_check_old(old, spec, rows, live_tables[spec], dbname), live_tables[spec])
                for spec in rows.tables
            ]
            try:
                with live.transaction():
                    live.execute("SET LOCAL lock_timeout = '30s'")
                    done = [
                        _bring(old, live, n, t, lt, rows, side) for n, (t, lt) in enumerate(pairs)
                    ]
            except psycopg.Error as e:
                raise PlanError(f"into {dbname}: {first_line(e)}; nothing was changed") from e
    for line in done:
        echo(f"{job.src.name}: {line}")


def side_suffix(target: datetime) -> str:
    return "_restored_" + target.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def _side_name(table: Table, suffix: str) -> str:
    return table.name.encode()[: 63 - len(suffix)].decode(errors="ignore") + suffix


def _check_live(spec: str, table: Table | None, mode: str, live: Any, side: str, db: str) -> None:
    if mode == "side-table":
        if table is not None:
            name = f"{ident(table.schema)}.{ident(_side_name(table, side))}"
            if find_table(live, name) is not None:
                raise PlanError(f"{table.label}: the side table {name} exists already")
        return
    if table is None:
        raise PlanError(
            f"--table {spec}: no such table in the live database {db} "
            "(a dropped table comes back with --mode side-table)"
        )
    require_key(table, mode)


def _check_old(old: Any, spec: str, rows: PartialRequest, live: Table | None, db: str) -> Table:
    table = find_table(old, spec)
    if table is None:
        raise PlanError(f"--table {spec}: no such table in {db} at the target")
    check_where(old, table, rows.where)
    if live is None:
        return table
    missing = [c for c in table.writable if c not in {lc.name for lc in live.columns}]
    if rows.mode != "side-table":
        if missing:
            raise PlanError(
                f"{table.label}: the live table has no column {missing[0]}; use --mode side-table"
            )
        if table.key != live.key:
            raise PlanError(
                f"{table.label}: its primary key changed since the target; use --mode side-table"
            )
    return table


def _bring(
    old: Any, live: Any, n: int, table: Table, now: Table | None, rows: PartialRequest, side: str
) -> str:
    """The rows of table (the copy's) carried into the live database by mode."""
    mode, where = rows.mode, rows.where
    if mode == "side-table":
        name = _side_name(table, side)
        dest = f"{ident(table.schema)}.{ident(name)}"
        defs = [f"{ident(c.name)} {c.type}" for c in table.columns if not c.generated]
        if table.key:
            defs.append(f"PRIMARY KEY ({column_list(table.key)})")
        live.execute(f"CREATE TABLE {dest} ({', '.join(defs)})")
        count = _copy(old, live, table, where, dest)
        return outcome(table.label, count, mode, side=f"{table.schema}.{name}")
    assert now is not None
    cols = column_list(table.writable)
    temp = f"pitr_rows_{n}"
    live.execute(
        f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS "
        f"SELECT {cols} FROM {now.qualified} WITH NO DATA"
    )
    count = _copy(old, live, table, where, temp)
    key = column_list(table.key)
    if mode == "insert-missing":
        cur = live.execute(
            f"INSERT INTO {now.qualified} ({cols}) OVERRIDING SYSTEM VALUE "
            f"SELECT {cols} FROM {temp} s WHERE NOT EXISTS (SELECT 1 FROM {now.qualified} l "
            f"WHERE ({column_list(table.key, 'l.')}) = ({column_list(table.key, 's.')}))"
        )
        return outcome(table.label, count, mode, added=cur.rowcount)
    others = [c for c in table.writable if c not in table.key]
    if others:
        sets = ", ".join(f"{ident(c)} = EXCLUDED.{ident(c)}" for c in others)
        olds = ", ".join(f"l.{ident(c)}::text" for c in others)
        news = ", ".join(f"EXCLUDED.{ident(c)}::text" for c in others)
        action = f"UPDATE SET {sets} WHERE ROW({olds}) IS DISTINCT FROM ROW({news})"
    else:
        action = "NOTHING"
    row = live.execute(
        f"WITH r AS (INSERT INTO {now.qualified} AS l ({cols}) OVERRIDING SYSTEM VALUE "
        f"SELECT {cols} FROM {temp} ON CONFLICT ({key}) DO {action} "
        "RETURNING (xmax = 0) AS fresh) "
        "SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh) FROM r"
    ).fetchone()
    added, replaced = row
    return outcome(table.label, count, mode, added, replaced)


def _copy(old: Any, live: Any, table: Table, where: str | None, dest: str) -> int:
    """COPY the chosen rows out of the copy and into dest, block by block."""
    cols = column_list(table.writable)
    source = f"COPY ({selection(table, where)}) TO STDOUT"
    with (
        old.cursor().copy(source) as out,
        live.cursor().copy(f"COPY {dest} ({cols}) FROM STDIN") as into,
    ):
        for block in out:
            into.write(block)
    row = live.execute(f"SELECT count(*) FROM {dest}").fetchone()
    return int(row[0])
