"""`pitr export` for PostgreSQL: the source restored to the target in a
scratch cluster, the chosen tables read out of it through a server-side
cursor (so a large table streams instead of filling memory) and written by
the shared row writers."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from recovery.errors import PlanError, RestoreInputError
from recovery.partial.pgscratch import scratch_cluster
from recovery.partial.pgtables import check_where, find_table, selection, user_tables
from recovery.partial.writers import write_rows

if TYPE_CHECKING:
    from pitr.kinds.base import ExportRequest
    from pitr.kinds.postgres import PgRestoreJob

BATCH = 2000  # rows fetched from the copy at a time


def export(
    app: Any,
    job: PgRestoreJob,
    what: ExportRequest,
    dsn: str,
    out: IO[str],
    echo: Callable[[str], None],
) -> None:
    """Write what's tables, as they were in the database dsn names, to out."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    dbname = what.database or str(params.get("dbname") or params.get("user") or "postgres")
    user = params.get("user")
    with (
        scratch_cluster(app, job, what.scratch_dir, echo, [str(user)] if user else []) as scratch,
        scratch.connect(dbname) as old,
    ):
        old.execute("SET default_transaction_read_only = on")
        chosen = []
        for spec in what.tables or tuple(user_tables(old)):
            table = find_table(old, spec)
            if table is None:
                raise PlanError(f"--table {spec}: no such table in {dbname} at the target")
            check_where(old, table, what.where)
            chosen.append(table)
        if what.format == "csv" and len(chosen) != 1:
            raise RestoreInputError("--format csv writes one table: name it with --table")
        for table in chosen:
            with old.transaction(), old.cursor(name="pitr_export") as cur:
                cur.itersize = BATCH
                cur.execute(selection(table, what.where))
                count = write_rows(out, what.format, table.label, table.writable, cur)
            echo(f"{job.src.name}: exported {count} rows of {table.label}")
