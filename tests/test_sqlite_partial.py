"""Partial restore of a SQLite source (SqliteKind.restore_rows, what
`pitr restore --table` runs) against a database archived by the real
capture: rows lost or damaged by an accident come back into the live
database, which keeps the good writes made since."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pitr import exitcodes, kinds
from pitr.context import AppContext
from pitr.kinds.base import PartialRequest, RestoreRequest
from recovery.errors import RestoreInputError
from recovery.sqlite.tables import resolve_tables
from tests.rowsupport import Accident, accident_history, copy_database, everything, table


@pytest.fixture(scope="module")
def accident(tmp_path_factory: pytest.TempPathFactory) -> Accident:
    return accident_history(tmp_path_factory.mktemp("partial"))


@pytest.fixture
def live(accident: Accident, tmp_path: Path) -> Path:
    """A copy of the live database after the accident, for one test to change."""
    return copy_database(accident.source.db, tmp_path / "live.db")


def bring_back(
    accident: Accident, *tables: str, mode: str, where: str | None = None, into: Path | None = None
) -> None:
    app = AppContext(str(accident.source.config))
    src = app.source(accident.source.name)
    request = RestoreRequest(datetime.fromtimestamp(accident.target, UTC), False, {})
    rows = PartialRequest(tables, where, into_database=str(into) if into else None, mode=mode)
    kinds.get(src.kind).restore_rows(app, src, request, rows)


def refused(accident: Accident, *tables: str, mode: str, **options: object) -> tuple[int, str]:
    """The exit code and message of a refused partial restore."""
    with pytest.raises(Exception) as caught:
        bring_back(accident, *tables, mode=mode, **options)  # type: ignore[arg-type]
    code = exitcodes.exit_code_for(caught.value)
    assert code is not None, f"not a documented error: {caught.value!r}"
    message = str(caught.value)
    assert "\n" not in message and message, message
    return code, message


def test_insert_missing_brings_back_exactly_the_deleted_rows(
    accident: Accident, live: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = table(live, "accounts")
    bring_back(accident, "accounts", "memberships", mode="insert-missing", into=live)
    out = capsys.readouterr().out
    assert "accounts: 21 rows at the target; 3 missing rows brought back" in out
    assert "memberships: 6 rows at the target; 2 missing" in out
    old = {r[0]: r for r in accident.at_target["accounts"]}
    after = table(live, "accounts")
    assert sorted(after) == sorted(before + [old[i] for i in accident.deleted])
    now = {r[0]: r for r in after}
    assert [now[i][2] for i in accident.updated] == [0, 0]  # not missing: left as they are
    assert now[21][1] == "late" and now[10][1] == "renamed"  # later good writes kept
    assert table(live, "memberships") == accident.at_target["memberships"]


def test_insert_missing_defaults_to_the_sources_own_file_while_it_is_written(
    accident: Accident, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = accident.source.db
    saved = copy_database(db, tmp_path / "saved.db")
    writer = accident.source.writer(40, "--sleep", "0.005", "0.01", name="busy")
    try:
        bring_back(accident, "accounts", mode="insert-missing")
        writer.wait()
        assert "3 missing rows brought back" in capsys.readouterr().out
        assert {r[0] for r in table(db, "accounts")} == set(range(0, 22))
        assert len([r for r in table(db, "rows") if r[0] == "busy"]) == 40
    finally:
        copy_database(saved, db)


def test_replace_with_where_restores_the_old_versions_of_updated_rows(
    accident: Accident, live: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {r[0]: r for r in table(live, "accounts")}
    bring_back(accident, "accounts", mode="replace", where="id IN (7, 8)", into=live)
    out = capsys.readouterr().out
    assert (
        "2 rows at the target; 2 replaced by their old version, 0 missing rows brought back" in out
    )
    old = {r[0]: r for r in accident.at_target["accounts"]}
    after = {r[0]: r for r in table(live, "accounts")}
    assert before.keys() == after.keys()  # the deleted rows are outside the condition
    assert {i: after[i] for i in accident.updated} == {i: old[i] for i in accident.updated}
    assert {k: v for k, v in after.items() if k not in (7, 8)} == {
        k: v for k, v in before.items() if k not in (7, 8)
    }


def test_replace_of_a_whole_table_keeps_rows_made_since(
    accident: Accident, live: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bring_back(accident, "accounts", mode="replace", into=live)
    out = capsys.readouterr().out
    # 3 deleted, 7 and 8 zeroed, 10 renamed since: the rest already equal.
    assert (
        "21 rows at the target; 3 replaced by their old version, 3 missing rows brought back" in out
    )
    assert "15 unchanged" in out
    after = table(live, "accounts")
    assert after == accident.at_target["accounts"] + [(21, "late", 2100, 0.25, None)]


def test_side_table_sets_the_old_rows_beside_the_live_table(
    accident: Accident, live: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = everything(live)
    bring_back(accident, "accounts", "rows", mode="side-table", into=live)
    stamp = datetime.fromtimestamp(accident.target, UTC).strftime("%Y%m%d%H%M%S")
    out = capsys.readouterr().out
    assert f"written to accounts_restored_{stamp} beside" in out
    assert table(live, f"accounts_restored_{stamp}") == accident.at_target["accounts"]
    # rows has no primary key: side-table is the mode that takes it.
    assert sorted(table(live, f"rows_restored_{stamp}")) == sorted(accident.at_target["rows"])
    assert everything(live) == before
    code, message = refused(accident, "accounts", mode="side-table", into=live)
    assert code == exitcodes.UNMET and f"accounts_restored_{stamp} exists already" in message


@pytest.mark.parametrize(
    ("tables", "mode", "options", "code", "says"),
    [
        (("nosuch",), "insert-missing", {}, exitcodes.USAGE, "--table nosuch: no such table"),
        (("accounts",), "replace", {"where": "nope >"}, exitcodes.USAGE, "--where 'nope >'"),
        (("accounts",), "replace", {"where": "nope = 1"}, exitcodes.USAGE, "no such column"),
        (("accounts", "rows"), "replace", {}, exitcodes.UNMET, "table rows has no primary key"),
        (("rows",), "insert-missing", {}, exitcodes.UNMET, "use --mode side-table"),
        (("accounts", "memberships"), "sideways", {}, exitcodes.USAGE, "--mode 'sideways'"),
        ((), "insert-missing", {}, exitcodes.USAGE, "name them with --table"),
    ],
)
def test_bad_input_is_one_line_and_leaves_the_live_database_unchanged(
    accident: Accident,
    live: Path,
    tables: tuple[str, ...],
    mode: str,
    options: dict[str, str],
    code: int,
    says: str,
) -> None:
    before = everything(live)
    got, message = refused(accident, *tables, mode=mode, into=live, **options)
    assert (got, says in message) == (code, True), message
    assert everything(live) == before


def test_a_missing_or_foreign_live_file_is_refused(accident: Accident, tmp_path: Path) -> None:
    code, message = refused(accident, "accounts", mode="insert-missing", into=tmp_path / "gone.db")
    assert code == exitcodes.USAGE and "gone.db: no such file" in message
    (tmp_path / "notes.txt").write_text("not a database\n")
    code, message = refused(accident, "accounts", mode="replace", into=tmp_path / "notes.txt")
    assert code == exitcodes.USAGE and "is not a SQLite database" in message


def test_a_table_dropped_from_the_live_database_needs_side_table(
    accident: Accident, live: Path
) -> None:
    conn = sqlite3.connect(live)
    conn.execute("DROP TABLE memberships")
    conn.commit()
    conn.close()
    before = {t: table(live, t) for t in ("accounts", "rows")}
    code, message = refused(accident, "accounts", "memberships", mode="insert-missing", into=live)
    assert code == exitcodes.USAGE and "memberships is not in the live database" in message
    assert {t: table(live, t) for t in ("accounts", "rows")} == before


@pytest.mark.parametrize(
    ("names", "found"),
    [
        ((), ["a.db/orders", "a.db/users", "b.db/Users", "b.db/logs"]),
        (("orders",), ["a.db/orders"]),
        (("ORDERS", "orders"), ["a.db/orders"]),
        (("b.db/users", "logs"), ["b.db/Users", "b.db/logs"]),
        (("users",), "a table of several databases (a.db, b.db): name it as DB/users"),
        (("c.db/users",), "no database 'c.db'"),
        (
            ("b.db/orders",),
            "--table b.db/orders: no such table at the target (tables: Users, logs)",
        ),
    ],
)
def test_table_names_of_a_source_of_several_databases(
    names: tuple[str, ...], found: list[str] | str
) -> None:
    tables_of = {"a.db": ["orders", "users"], "b.db": ["Users", "logs"]}
    if isinstance(found, list):
        assert [str(r) for r in resolve_tables(names, tables_of)] == found
        return
    with pytest.raises(RestoreInputError, match=re.escape(found)):
        resolve_tables(names, tables_of)


def test_the_command_line_runs_the_same_partial_restore(accident: Accident, live: Path) -> None:
    target = datetime.fromtimestamp(accident.target, UTC).isoformat()
    args = ["restore", "--source", accident.source.name, "--to", target, "--table", "accounts"]
    out = accident.source.pitr(*args, "--into-database", str(live)).stdout
    assert "accounts: 21 rows at the target; 3 missing rows brought back" in out
    old = {r[0]: r for r in accident.at_target["accounts"]}
    assert {r[0]: r for r in table(live, "accounts")}.items() >= {
        i: old[i] for i in accident.deleted
    }.items()
    dry = accident.source.pitr(*args, "--mode", "replace", "--dry-run").stdout
    assert "then accounts by replace; dry run: nothing changed" in dry
