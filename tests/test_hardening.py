"""Bad input and faults an adversarial operator tried: wrong answers that
reported success, crashes, hangs and exposure, each against the real
servers. A refusal is checked against its row of docs/bad-input.md."""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import stat
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.badinput import expect_row, rows, rows_tried
from tests.pgsupport import Archived, open_dir
from tests.servers import PITR_BIN, run_pitr


def test_every_row_of_the_bad_input_page_is_tried() -> None:
    table = set(rows())
    assert len(table) >= 20, table  # the page parsed
    assert table == rows_tried(), f"rows no test tries: {sorted(table - rows_tried())}"


# -- the config and the command line ---------------------------------------------------


@pytest.mark.parametrize(
    ("row", "body"),
    [
        ("config-not-utf8", b'[repository]\nurl = "REPO" # caf\xe9\n'),
        (
            "source-name-escape",
            b'[repository]\nurl = "REPO"\n[sources."../../escape"]\nkind = "redis"\nurl = "redis://127.0.0.1:1"\n',
        ),
        (
            "source-name-empty",
            b'[repository]\nurl = "REPO"\n[sources.""]\nkind = "redis"\nurl = "redis://127.0.0.1:1"\n',
        ),
    ],
)
def test_config_mistakes_change_nothing(tmp_path: Path, row: str, body: bytes) -> None:
    config = tmp_path / "pitr.toml"
    config.write_bytes(body.replace(b"REPO", str(tmp_path / "repo").encode()))
    result = run_pitr(["init"], config=config, check=False)
    expect_row(row, result)
    assert not (tmp_path / "repo").exists()


def test_the_position_of_a_byte_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    config = tmp_path / "pitr.toml"
    config.write_bytes(b'[repository]\nurl = "/x"\n# \xff\n')
    result = run_pitr(["init"], config=config, check=False)
    assert f"config {config}: line 3, column 3: byte 0xff" in result.stderr


@pytest.mark.parametrize(
    ("row", "args"),
    [("usage-unknown-option", ["restore", "--bogus"]), ("usage-missing-argument", ["wal-push"])],
)
def test_usage_errors_are_one_line(tmp_path: Path, row: str, args: list[str]) -> None:
    result = run_pitr(args, env={"PITR_REPO": str(tmp_path / "repo")}, check=False)
    expect_row(row, result)
    assert "Usage:" not in result.stderr and "--help" in result.stderr


# -- restores that could not finish, refused before anything is written ---------------


def catalog_rows(archived: Archived, sql: str) -> list[tuple[str, ...]]:
    db = archived.catalog_db()
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def object_path(archived: Archived, oid: str) -> Path:
    return archived.repo / "objects" / oid[:2] / oid


@contextmanager
def moved_away(path: Path) -> Iterator[None]:
    aside = path.with_name(path.name + ".aside")
    path.rename(aside)
    try:
        yield
    finally:
        aside.rename(path)


def test_restores_missing_objects_or_with_a_wrong_target_change_nothing(
    archived: Archived,
) -> None:
    archived.pitr("backup", "--source", "db")
    at = archived.marker(1).isoformat()
    archived.switch_and_wait()
    target = archived.base / "restored"
    args = ["restore", "--source", "db", "--to", at, "--pgdata", str(target)]

    (segment,) = catalog_rows(
        archived, "SELECT oid FROM wal_files WHERE kind = 'segment' ORDER BY name DESC LIMIT 1"
    )
    with moved_away(object_path(archived, segment[0])):
        expect_row("restore-wal-object-missing", archived.pitr(*args, check=False))
        expect_row("restore-dry-run-object-missing", archived.pitr(*args, "--dry-run", check=False))
    (chunk,) = catalog_rows(
        archived,
        "SELECT b.oid FROM backup_objects b JOIN objects o ON o.oid = b.oid "
        "ORDER BY o.size DESC LIMIT 1",
    )
    with moved_away(object_path(archived, chunk[0])):
        expect_row("restore-chunk-missing", archived.pitr(*args, check=False))
    assert not target.exists()
    assert not list(archived.base.glob(".restored.*"))  # no staging, no spool left

    # --force sets aside a data directory no server uses, nothing else.
    other = open_dir(archived.base / "not-pgdata")
    (other / "notes.txt").write_text("keep me")
    args[-1] = str(other)
    expect_row("restore-force-not-pgdata", archived.pitr(*args, "--force", check=False))
    running_parent = archived.cluster.pgdata.parent
    args[-1] = str(running_parent)
    expect_row("restore-force-parent-of-running", archived.pitr(*args, "--force", check=False))
    assert (other / "notes.txt").read_text() == "keep me"
    assert archived.cluster.running and archived.cluster.pgdata.is_dir()
    archived.pitr(*args[:-1], str(target), "--dry-run")  # and all is there again


def test_a_lost_record_is_served_from_the_catalog_and_reported(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    archived.marker(1)
    archived.switch_and_wait()
    ((name, oid),) = catalog_rows(
        archived, "SELECT name, oid FROM wal_files WHERE kind = 'segment' ORDER BY name LIMIT 1"
    )
    (archived.repo / "records" / "db" / "wal" / name).unlink()
    dest = open_dir(archived.base / "fetched") / name
    archived.pitr("wal-fetch", name, str(dest))  # not "not archived" (exit 1)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == oid
    expect_row("check-record-missing", archived.pitr("check", check=False))
    doc = archived.pitr("check", "--output", "json", check=3).stdout
    assert '"missing_record"' in doc and name in doc


def test_a_lost_catalog_is_made_again_from_the_store(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    at = archived.marker(1).isoformat()
    archived.switch_and_wait()
    args = ["restore", "--source", "db", "--to", at, "--dry-run"]
    args += ["--pgdata", str(archived.base / "r")]
    planned = archived.pitr(*args).stdout
    (archived.repo / "catalog.db").unlink()
    assert "rebuilt from the store" in archived.pitr("init").stdout
    assert archived.pitr(*args).stdout == planned
    # Any command fills a lost catalog from the records before it answers.
    (archived.repo / "catalog.db").unlink()
    assert archived.pitr(*args).stdout == planned


# -- what a push finds in the store -------------------------------------------------------


def test_junk_under_an_objects_name_is_replaced_and_the_repository_is_private(
    archived: Archived,
) -> None:
    archived.marker(1)
    archived.switch_and_wait()
    ((name,),) = catalog_rows(
        archived, "SELECT name FROM wal_files WHERE kind = 'segment' ORDER BY name LIMIT 1"
    )
    copy = open_dir(archived.base / "copy") / name
    archived.pitr("wal-fetch", name, str(copy))
    oid = hashlib.sha256(copy.read_bytes()).hexdigest()

    # A second repository, made with a careless umask, where junk waits
    # under the object's name (a copy cut short, say).
    repo = archived.base / "second"
    config = archived.base / "second.toml"
    config.write_text(
        f'[repository]\nurl = "{repo}"\n[sources.db]\nkind = "postgres"\n'
        f'dsn = "{archived.cluster.dsn}"\npgdata = "{archived.cluster.pgdata}"\n'
    )
    subprocess.run(
        ["sh", "-c", f"umask 000 && {PITR_BIN} --config {config} init"],
        check=True,
        capture_output=True,
    )
    junk = repo / "objects" / oid[:2] / oid
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"not a pitr object")
    run_pitr(["wal-push", str(copy)], config=config)
    run_pitr(["verify", "--read-data"], config=config)  # the junk was replaced
    db = sqlite3.connect(repo / "catalog.db")
    (stored,) = db.execute("SELECT stored_size FROM objects WHERE oid = ?", (oid,)).fetchone()
    db.close()
    assert stored == junk.stat().st_size > 100

    for path in [repo, *repo.rglob("*")]:
        if path in (junk, junk.parent, junk.parent.parent):
            continue  # made by the test
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))


def test_a_key_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    key = tmp_path / "passphrase"
    key.write_text("correct horse battery staple\n")
    key.chmod(0o644)
    config = tmp_path / "pitr.toml"
    config.write_text(f'[repository]\nurl = "{tmp_path / "repo"}"\nkey_file = "{key}"\n')
    result = run_pitr(["init", "--encrypt"], config=config)
    assert f"key_file {key} can be read by other users" in result.stderr
    key.chmod(0o600)
    assert "warning" not in run_pitr(["info"], config=config).stderr


# -- a catalog host that never answers --------------------------------------------------


def test_a_silent_catalog_host_fails_a_command_in_bounded_time_but_not_the_push(
    archived: Archived,
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])  # and never a byte back
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    archived.marker(1)
    archived.switch_and_wait()
    ((name,),) = catalog_rows(archived, "SELECT name FROM wal_files ORDER BY name LIMIT 1")
    copy = open_dir(archived.base / "copy") / name
    archived.pitr("wal-fetch", name, str(copy))
    port = listener.getsockname()[1]
    env = {"PITR_CATALOG": f"postgresql+psycopg://pitr@127.0.0.1:{port}/pitr"}
    try:
        # The store alone acknowledges a push: the catalog is not even dialled.
        pushed = run_pitr(["wal-push", str(copy)], config=archived.config, env=env, check=False)
        assert pushed.returncode == 0, pushed.stderr
        assert not accepted
        result = run_pitr(["info"], config=archived.config, env=env, check=False, timeout=120)
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
    expect_row("catalog-silent-host", result)
    assert accepted  # it did reach the silent host
