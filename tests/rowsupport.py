"""What the export and partial-restore tests share: a SQLite application
database archived by the real capture (`pitr tail`), with an "accident" at
a known instant followed by later good writes.

Every change is made by a separate process (the application), never by
the test itself.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import clean_env
from tests.sqlitesupport import SqliteSource, make_source

QUIET = 0.5  # seconds without a commit on each side of the target
MARK = "before-accident"  # a mark taken just after the target, before the accident

# The application: runs its statements in one transaction, in WAL mode.
APP = (
    "import sqlite3, sys\n"
    "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)\n"
    "c.execute('PRAGMA journal_mode=WAL')\n"
    "c.execute('BEGIN IMMEDIATE')\n"
    "for s in sys.argv[2:]:\n"
    "    c.execute(s)\n"
    "c.execute('COMMIT')\n"
)

ACCOUNTS = (
    "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, "
    "balance INTEGER, ratio REAL, photo BLOB)"
)
MEMBERSHIPS = (
    "CREATE TABLE memberships (club TEXT, member INTEGER, since TEXT, "
    "PRIMARY KEY (club, member)) WITHOUT ROWID"
)


def app_sql(db: Path, *statements: str) -> None:
    """The application commits statements, in a process of its own."""
    subprocess.run(
        [sys.executable, "-c", APP, str(db), *statements],
        check=True,
        env=clean_env(),
        capture_output=True,
        timeout=60,
    )


def table(db: Path, name: str, where: str = "1") -> list[tuple[Any, ...]]:
    """A table's rows in primary key order (rowid for a table without one)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        order = "club, member" if name == "memberships" else "rowid"
        return conn.execute(f"SELECT * FROM {name} WHERE {where} ORDER BY {order}").fetchall()
    finally:
        conn.close()


def everything(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    return {t: table(db, t) for t in ("accounts", "memberships", "rows")}


@dataclass
class Accident:
    source: SqliteSource
    target: float  # an instant before the accident, no commit near it
    at_target: dict[str, list[tuple[Any, ...]]]  # the tables at the target
    deleted: list[int]  # account ids deleted by the accident
    updated: list[int]  # account ids zeroed by the accident


def accident_history(base: Path) -> Accident:
    """The source's database: accounts (INTEGER PRIMARY KEY), memberships
    (composite key, WITHOUT ROWID) and rows (no primary key, written by
    tests/sqlite_writer.py); then, after the target, an accident (rows
    deleted, balances zeroed) and later good writes (account 21, 10 renamed)."""
    source = make_source(base)
    source.write(5)
    accounts = [
        f"INSERT INTO accounts VALUES ({i}, 'owner {i}', {i * 100}, {i / 8}, X'{i:02x}ff00')"
        for i in range(1, 21)
    ]
    members = [
        f"INSERT INTO memberships VALUES ('{c}', {m}, '2025-0{m}-01')"
        for c in ("chess", "go")
        for m in (1, 2, 3)
    ]
    proc = source.tail()
    try:
        app_sql(source.db, ACCOUNTS, MEMBERSHIPS, *accounts, *members)
        app_sql(source.db, "INSERT INTO accounts VALUES (0, 'it''s \"odd\"', NULL, -0.5, X'')")
        time.sleep(QUIET)
        target = time.time()
        at_target = everything(source.db)
        time.sleep(QUIET)
        source.pitr("mark", MARK)  # no commit between the target and the mark
        app_sql(
            source.db,
            "DELETE FROM accounts WHERE id IN (3, 4, 5)",
            "UPDATE accounts SET balance = 0 WHERE id IN (7, 8)",
            "DELETE FROM memberships WHERE member = 2",
            "DELETE FROM rows WHERE seq < 2",
        )
        app_sql(
            source.db,
            "INSERT INTO accounts VALUES (21, 'late', 2100, 0.25, NULL)",
            "UPDATE accounts SET owner = 'renamed' WHERE id = 10",
        )
        source.wait_archived(time.time())
    finally:
        code, _, err = proc.stop()
    assert code == 0, err
    return Accident(source, target, at_target, [3, 4, 5], [7, 8])


def copy_database(db: Path, to: Path) -> Path:
    """A consistent copy of a live database (the WAL's commits included)."""
    src, dst = sqlite3.connect(db), sqlite3.connect(to)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return to
