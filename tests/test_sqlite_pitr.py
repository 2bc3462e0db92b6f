"""SQLite sources against real database files written by separate writer
processes: restores to instants between commits, across WAL restarts,
archiver crashes, replaced and deleted files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.servers import PITR_BIN, clean_env, wait_until
from tests.sqlitesupport import (
    SqliteSource,
    commits,
    expected,
    make_source,
    midpoints,
    quiet_instants,
    rows,
)


@pytest.fixture
def source(tmp_path: Path) -> SqliteSource:
    return make_source(tmp_path)


def test_restores_between_commits_return_exactly_what_was_committed(
    source: SqliteSource, tmp_path: Path
) -> None:
    proc = source.tail()
    try:
        # Large rows: the WAL passes the checkpoint threshold and restarts
        # several times while the writer runs.
        source.write(60, "--sleep", "0.35", "0.4", "--payload", "120000")
        history = commits(source.log())
        source.wait_archived(history[-1].after)
        # "now", while capture runs: row for row the live database
        source.restore(time.time(), tmp_path / "now.db")
    finally:
        code, out, err = proc.stop()
    assert code == 0, err
    assert "0 gaps recorded" in out
    for at in midpoints(history, [0, 7, 21, 33, 58]):
        text = source.restore(at, tmp_path / "out.db", "--force").stdout
        assert "integrity_check ok" in text
        assert rows(tmp_path / "out.db") == expected(history, at)
    query = "SELECT name, seq, payload FROM rows ORDER BY name, seq"
    live, restored = sqlite3.connect(source.db), sqlite3.connect(tmp_path / "now.db")
    assert live.execute(query).fetchall() == restored.execute(query).fetchall()
    live.close()
    restored.close()


def test_archiver_killed_while_the_writer_checkpoints_records_a_gap(
    source: SqliteSource, tmp_path: Path
) -> None:
    proc = source.tail()
    source.write(5, "--sleep", "0.35", "0.4")
    source.wait_archived(commits(source.log())[-1].after)
    proc.kill9()
    # The application goes on and truncates the WAL while nobody archives it.
    source.write(5, "--sleep", "0.35", "0.4", "--truncate-every", "2")
    proc = source.tail()
    try:
        source.write(5, "--sleep", "0.35", "0.4")
        history = commits(source.log())
        source.wait_archived(history[-1].after)
    finally:
        code, out, err = proc.stop()
    assert code == 0, err
    assert "1 gaps recorded" in out
    check = source.pitr("check", "--output", "json", check=False)
    assert '"sqlite_gap"' in check.stdout
    for at in midpoints(history, [2, 12]):  # before the gap, and after it
        source.restore(at, tmp_path / "out.db", "--force")
        assert rows(tmp_path / "out.db") == expected(history, at)
    # into the gap: refused with the window, nothing written
    [into] = midpoints(history, [7])
    result = source.restore(into, tmp_path / "gap.db", check=3)
    assert "gap" in result.stderr and "recoverable" in result.stderr
    assert not (tmp_path / "gap.db").exists()


@pytest.mark.parametrize("how", ["replaced", "deleted"])
def test_database_replaced_or_recreated_under_the_archiver(
    source: SqliteSource, tmp_path: Path, how: str
) -> None:
    proc = source.tail()
    try:
        source.write(4, "--sleep", "0.35", "0.4", name="old")
        source.wait_archived(commits(source.log("old"))[-1].after)
        if how == "replaced":
            other = tmp_path / "other.db"
            source.write(3, name="other", db=other)
            os.rename(other, source.db)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{source.db}{suffix}").unlink(missing_ok=True)
            source.write(0, name="new")
        time.sleep(0.5)
        source.write(4, "--sleep", "0.35", "0.4", name="new")
        history = commits(source.log("old"), source.log("other"), source.log("new"))
        late = history[-1].after + 0.3
        source.wait_archived(late)
    finally:
        code, out, err = proc.stop()
    assert code == 0, err
    assert "new generation" in err
    old = commits(source.log("old"))
    [early] = midpoints(old, [2])
    source.restore(early, tmp_path / "early.db")
    assert rows(tmp_path / "early.db") == {("old", 0), ("old", 1), ("old", 2)}
    source.restore(late, tmp_path / "late.db")
    assert rows(tmp_path / "late.db") == rows(source.db)
    assert not any(name == "old" for name, _ in rows(source.db))


def test_random_instants_of_a_multi_writer_history(source: SqliteSource, tmp_path: Path) -> None:
    proc = source.tail()
    try:
        writers = [
            source.writer(25, "--sleep", "0.1", "1.0", "--seed", str(i), name=f"w{i}")
            for i in range(3)
        ]
        for w in writers:
            w.wait()
        history = commits(*(source.log(f"w{i}") for i in range(3)))
        source.wait_archived(history[-1].after)
    finally:
        proc.stop()
    seed = int(time.time())
    for i, at in enumerate(quiet_instants(history, 6, seed)):
        into = tmp_path / f"at{i}.db"
        source.restore(at, into)
        assert rows(into) == expected(history, at), f"seed {seed}, instant {at}"


def test_in_place_restore_waits_for_the_application_to_close(
    source: SqliteSource, tmp_path: Path
) -> None:
    proc = source.tail()
    try:
        source.write(6, "--sleep", "0.35", "0.4")
        history = commits(source.log())
        source.wait_archived(history[-1].after)
    finally:
        proc.stop()
    [at] = midpoints(history, [2])
    refused = source.restore(at, None, check=3)
    assert "--force" in refused.stderr
    app = sqlite3.connect(source.db)  # the application, still running
    app.execute("SELECT count(*) FROM rows").fetchall()
    busy = source.restore(at, None, "--force", check=3)
    assert "is open" in busy.stderr
    app.close()
    done = source.restore(at, None, "--force")
    assert "set aside" in done.stdout or "old file is now" in done.stdout
    assert rows(source.db) == expected(history, at)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("app.db.pitr-replaced-")]
    assert aside and len(rows(sorted(aside)[0])) == 6


def test_several_databases_restored_together_into_a_directory(tmp_path: Path) -> None:
    (tmp_path / "dbs").mkdir()
    source = make_source(tmp_path, paths=f'["{tmp_path}/dbs/*.db"]')
    for name in ("a", "b"):
        source.write(0, name=name, db=tmp_path / "dbs" / f"{name}.db")
    proc = source.tail()
    try:
        one = source.writer(6, "--sleep", "0.35", "0.4", name="a", db=tmp_path / "dbs" / "a.db")
        two = source.writer(6, "--sleep", "0.35", "0.4", name="b", db=tmp_path / "dbs" / "b.db")
        one.wait()
        two.wait()
        history = commits(source.log("a"), source.log("b"))
        for db in ("a.db", "b.db"):
            source.wait_archived(history[-1].after, db=db)
    finally:
        proc.stop()
    [at] = quiet_instants(history, 1, 7)
    source.restore(at, tmp_path / "out")
    want = expected(history, at)
    assert rows(tmp_path / "out" / "a.db") == {r for r in want if r[0] == "a"}
    assert rows(tmp_path / "out" / "b.db") == {r for r in want if r[0] == "b"}


def test_the_daemon_captures_and_copies_taken_beside_it_join_its_generation(
    source: SqliteSource, tmp_path: Path
) -> None:
    with source.config.open("a") as f:
        f.write('backup_every = "2s"\n')
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(
        [str(PITR_BIN), "--config", str(source.config), "daemon"],
        stdout=log,
        stderr=log,
        env=clean_env(),
    )
    started = time.time()
    try:
        wait_until(lambda: source.based_after(started), 60, "the daemon's base copy", 0.1)
        source.write(15, "--sleep", "0.35", "0.4")
        taken = source.pitr("backup", "--source", source.name).stdout.split()[2]
        source.write(15, "--sleep", "0.35", "0.4")
        history = commits(source.log())
        source.wait_archived(history[-1].after)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        log.close()
    assert daemon.returncode == 0, (tmp_path / "daemon.log").read_text()
    info = json.loads(source.pitr("info", "--output", "json").stdout)["sources"][0]
    # the generation's own copy (which the schedule counts as a backup) and ours
    assert len(info["backups"]) == 2
    assert info["gaps"] == []
    for at in midpoints(history, [1, 13, 28]):
        out = source.restore(at, tmp_path / "out.db", "--force").stdout
        assert rows(tmp_path / "out.db") == expected(history, at)
    # a copy taken beside the daemon joins its generation: later targets start there
    assert f"base copy {taken}" in out


def test_a_clean_restart_continues_and_downtime_commits_leave_only_their_instants(
    source: SqliteSource, tmp_path: Path
) -> None:
    proc = source.tail()
    source.write(4, "--sleep", "0.35", "0.4", name="a")
    source.wait_archived(commits(source.log("a"))[-1].after)
    code, out, err = proc.stop()
    assert code == 0, err
    # Nothing happened meanwhile: the same generation goes on, no gap.
    proc = source.tail()
    source.write(4, "--sleep", "0.35", "0.4", name="b")
    source.wait_archived(commits(source.log("b"))[-1].after)
    code, out, err = proc.stop()
    assert "resuming generation" in err and "0 gaps recorded" in out
    # The application keeps the database open and commits while nobody archives.
    app = sqlite3.connect(source.db)
    app.execute("SELECT count(*) FROM rows").fetchall()
    source.write(3, "--sleep", "0.35", "0.4", name="c")
    time.sleep(0.3)
    proc = source.tail()
    try:
        source.write(3, "--sleep", "0.35", "0.4", name="d")
        history = commits(*(source.log(n) for n in "abcd"))
        source.wait_archived(history[-1].after)
    finally:
        code, out, err = proc.stop()
        app.close()
    assert "resuming generation" in err and "1 gaps recorded" in out
    for at in midpoints(history, [1, 5, 12]):  # before, between the restarts, after
        source.restore(at, tmp_path / "out.db", "--force")
        assert rows(tmp_path / "out.db") == expected(history, at)
    [down] = midpoints(history, [9])  # while the archiver was away
    refused = source.restore(down, tmp_path / "down.db", check=3)
    assert "instants unknown" in refused.stderr
