"""Partial restore of PostgreSQL rows into the live database (pitr restore
--table), against a real PostgreSQL: each run restores into a scratch
cluster of pitr's own, which must be gone afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.badinput import expect_row
from tests.harness import clean_env
from tests.pgsupport import Archived, open_dir
from tests.servers import PITR_BIN, alive, wait_until

ROWS = "SELECT string_agg(id || ':' || qty, ',' ORDER BY id) FROM orders"


def accident(archived: Archived) -> None:
    """orders 1..6 and a key-less log, a mark, then the accident (2 and 3
    deleted, 4 and 5 zeroed) and good rows written after it (7, 8)."""
    pg = archived.cluster
    pg.psql(
        "CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL, "
        "note text GENERATED ALWAYS AS ('qty ' || qty) STORED);"
        "INSERT INTO orders SELECT i, i * 10 FROM generate_series(1, 6) i;"
        "CREATE TABLE audit (line text); INSERT INTO audit VALUES ('a'), ('b');"
    )
    archived.pitr("backup", "--source", "db")
    archived.pitr("mark", "before-accident")
    pg.psql(
        "DELETE FROM orders WHERE id IN (2, 3); UPDATE orders SET qty = 0 WHERE id IN (4, 5);"
        "INSERT INTO orders VALUES (7, 70), (8, 80); DELETE FROM audit;"
    )
    archived.switch_and_wait()


def partial(archived: Archived, scratch: Path, *args: str, check: bool = True) -> str:
    result = archived.pitr(
        "restore",
        "--source",
        "db",
        "--to",
        "before-accident",
        "--scratch-dir",
        str(scratch),
        *args,
        check=check,
    )
    assert list(scratch.iterdir()) == [], "the scratch cluster was left behind"
    return str(result.stdout) if check else result


def test_insert_missing_replace_and_side_table(archived: Archived) -> None:
    accident(archived)
    pg, scratch = archived.cluster, open_dir(archived.base / "scratch")
    started = pg.psql("SELECT pg_postmaster_start_time()")

    out = partial(archived, scratch, "--table", "public.orders")
    assert "orders: 6 rows at the target; 2 missing rows brought back, 4 already there" in out
    assert pg.psql(ROWS).strip() == "1:10,2:20,3:30,4:0,5:0,6:60,7:70,8:80"

    out = partial(archived, scratch, "--table", "orders", "--mode", "replace")
    assert "2 replaced by their old version, 0 missing rows brought back, 4 unchanged" in out
    assert pg.psql(ROWS).strip() == "1:10,2:20,3:30,4:40,5:50,6:60,7:70,8:80"
    assert pg.psql("SELECT note FROM orders WHERE id = 4").strip() == "qty 40"

    out = partial(
        archived,
        scratch,
        "--table",
        "audit",
        "--mode",
        "side-table",
        "--into-database",
        pg.dsn,
    )
    (side,) = pg.psql("SELECT relname FROM pg_class WHERE relname LIKE 'audit_restored_%'").split()
    assert f"2 rows at the target written to public.{side}" in out
    assert pg.psql(f"SELECT string_agg(line, ',' ORDER BY line) FROM {side}").strip() == "a,b"
    assert pg.psql("SELECT count(*) FROM audit").strip() == "0"

    # --where picks rows on the copy: only order 2, and it is there already.
    out = partial(archived, scratch, "--table", "orders", "--where", "id = 2")
    assert "1 rows at the target; 0 missing rows brought back" in out

    assert pg.psql("SELECT pg_postmaster_start_time()") == started


def test_bad_input_changes_nothing(archived: Archived) -> None:
    accident(archived)
    pg, scratch = archived.cluster, open_dir(archived.base / "scratch")
    before = pg.psql(ROWS)
    cases = {
        "partial-unknown-table": ("--table", "public.nope"),
        "partial-no-key-replace": ("--table", "audit", "--mode", "replace"),
        "partial-unreachable": ("--table", "orders", "--into-database", "host=/nonexistent port=1"),
        "partial-bad-where": ("--table", "orders", "--where", "id <>"),
        "partial-whole-option": ("--table", "orders", "--force"),
    }
    for row, args in cases.items():
        expect_row(row, partial(archived, scratch, *args, check=False))
    assert pg.psql(ROWS) == before


@contextlib.contextmanager
def _restore_waiting_on_the_live_table(
    archived: Archived, scratch: Path
) -> Iterator[tuple[Any, int]]:
    """`restore --table orders` started in the background and held where it
    merges, its scratch cluster running: the test holds a SHARE lock on the
    live table, which the restore's INSERT waits for (so a loaded machine
    cannot let it finish before the test interrupts it). Yields the process
    and the scratch server's pid."""
    argv = [PITR_BIN, "--config", str(archived.config), "restore", "--source", "db"]
    argv += ["--to", "before-accident", "--table", "orders", "--scratch-dir", str(scratch)]
    with archived.cluster.connect(autocommit=False) as holder:
        holder.execute("LOCK TABLE orders IN SHARE MODE")
        # As the postgres user itself (not through runuser), so that a signal reaches pitr.
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            user="postgres" if os.geteuid() == 0 else None,
            # A suite started in the background by a shell has SIGINT ignored, and
            # an ignored signal stays ignored across exec: pitr would never see it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        waiting = (
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'orders'::regclass"
        )
        wait_until(
            lambda: holder.execute(waiting).fetchone()[0] or proc.poll() is not None,
            120,
            "the restore to wait on the live table",
        )
        assert proc.poll() is None, proc.communicate()[1]
        [pid_file] = scratch.glob("*/pgdata/postmaster.pid")
        yield proc, int(pid_file.read_text().split()[0])


def test_interrupted_restore_removes_its_scratch_cluster(archived: Archived) -> None:
    accident(archived)
    scratch = open_dir(archived.base / "scratch")
    with _restore_waiting_on_the_live_table(archived, scratch) as (proc, pid):
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert list(scratch.iterdir()) == []
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), "the scratch PostgreSQL still runs"
    assert archived.cluster.psql(ROWS).strip() == "1:10,4:0,5:0,6:60,7:70,8:80"


def test_a_killed_restore_stops_its_scratch_server_and_the_next_removes_it(
    archived: Archived,
) -> None:
    accident(archived)
    scratch = open_dir(archived.base / "scratch")
    with _restore_waiting_on_the_live_table(archived, scratch) as (proc, pid):
        proc.kill()  # no handler, no finally
        proc.communicate(timeout=60)
    wait_until(lambda: not alive(pid), 30, "the scratch PostgreSQL to stop")
    assert len(list(scratch.iterdir())) == 1, "the killed restore's directory should be there"
    out = partial(archived, scratch, "--table", "public.orders")  # asserts scratch is empty after
    assert "2 missing rows brought back" in out


def test_export_equals_a_query_on_a_full_restore(archived: Archived) -> None:
    accident(archived)
    scratch = open_dir(archived.base / "scratch")
    out = archived.pitr(
        "export",
        "--source",
        "db",
        "--to",
        "before-accident",
        "--table",
        "orders",
        "--format",
        "jsonl",
        "--scratch-dir",
        str(scratch),
    ).stdout
    exported = [json.loads(line) for line in out.splitlines()]
    assert {e["table"] for e in exported} == {"public.orders"}
    assert list(scratch.iterdir()) == []

    pgdata = archived.base / "r-full"
    archived.pitr("restore", "--source", "db", "--to", "before-accident", "--pgdata", str(pgdata))
    full = archived.factory.from_pgdata(pgdata, archive_command="/bin/true")
    full.start_recovered()
    try:
        text = full.psql("SELECT json_agg(o ORDER BY id) FROM (SELECT id, qty FROM orders) o")
    finally:
        full.stop()
    assert [{"id": e["row"]["id"], "qty": e["row"]["qty"]} for e in exported] == json.loads(text)
    # The generated column is left out: the database computes it again on load.
    assert set(exported[0]["row"]) == {"id", "qty"}
