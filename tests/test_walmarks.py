"""The archive_command shortcut (archiver/postgres/walmarks.py), run by the real
/bin/sh and flock(1) in a data directory laid out as PostgreSQL's: a
segment is acknowledged without pitr only for the very file the daemon
marked, and every other case goes on to `pitr wal-push`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archiver.postgres.walmarks import Marks, archive_command, mark_tag

NAME = "000000010000000000000007"
TAG = mark_tag("file:///var/lib/pitr/repo", "db")


@pytest.fixture
def pgdata(tmp_path: Path) -> Path:
    status = tmp_path / "data" / "pg_wal" / "archive_status"
    status.mkdir(parents=True)
    (status.parent / NAME).write_bytes(os.urandom(8192))
    (status / f"{NAME}.ready").touch()
    return tmp_path / "data"


@pytest.fixture
def fallback(tmp_path: Path) -> Path:
    """Stands in for the pitr executable: records that the shortcut was not taken."""
    script = tmp_path / "pitr-called"
    script.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\n')
    script.chmod(0o755)
    return script


def calls(fallback: Path) -> list[str]:
    log = fallback.parent / "calls"
    return log.read_text().splitlines() if log.exists() else []


def archive(
    pgdata: Path, fallback: Path, tag: str = TAG, before: str = ""
) -> subprocess.Popen[bytes]:
    """Start archive_command for NAME the way PostgreSQL does: sh -c in PGDATA
    (before: another tool's command in front of it, joined with &&)."""
    line = archive_command(str(fallback), "/etc/pitr conf.toml", "db", tag)
    line = line.replace("%p", f"pg_wal/{NAME}").replace("%f", NAME)
    return subprocess.Popen(["/bin/sh", "-c", before + line], cwd=pgdata)


def mark_for(pgdata: Path) -> Path:
    return pgdata / "pg_wal" / "archive_status" / f"{NAME}.pitr-{TAG}"


def test_the_marked_file_is_acknowledged_without_pitr(pgdata: Path, fallback: Path) -> None:
    os.link(pgdata / "pg_wal" / NAME, mark_for(pgdata))
    assert archive(pgdata, fallback).wait(10) == 0
    assert calls(fallback) == []


def test_anything_but_the_marked_file_goes_to_pitr(pgdata: Path, fallback: Path) -> None:
    segment = pgdata / "pg_wal" / NAME
    assert archive(pgdata, fallback).wait(10) == 0  # no mark at all
    # A mark with the same bytes is another file: a recycled or replaced segment.
    mark_for(pgdata).write_bytes(segment.read_bytes())
    assert archive(pgdata, fallback).wait(10) == 0
    # The mark of another repository or source.
    os.link(segment, pgdata / "pg_wal" / "archive_status" / f"{NAME}.pitr-{mark_tag('x', 'db')}")
    assert archive(pgdata, fallback).wait(10) == 0
    push = f"--config /etc/pitr conf.toml wal-push --source db pg_wal/{NAME}"
    assert calls(fallback) == [push] * 3


def test_the_line_composes_with_another_tools_command(pgdata: Path, fallback: Path) -> None:
    os.link(pgdata / "pg_wal" / NAME, mark_for(pgdata))
    assert archive(pgdata, fallback, before="false && ").wait(10) != 0
    assert archive(pgdata, fallback, before="true && ").wait(10) == 0
    mark_for(pgdata).unlink()
    assert archive(pgdata, fallback, before="false && ").wait(10) != 0
    assert calls(fallback) == []


def test_archive_command_waits_while_the_daemon_holds_the_segment(
    pgdata: Path, fallback: Path
) -> None:
    marks = Marks(pgdata / "pg_wal" / "archive_status", TAG)
    lock = marks.hold(NAME)
    proc = archive(pgdata, fallback)
    time.sleep(0.5)
    assert proc.poll() is None  # waiting on the lock, not asking pitr
    segment = pgdata / "pg_wal" / NAME
    st = segment.stat()
    marks.archived(segment, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), lock)
    assert proc.wait(10) == 0
    assert calls(fallback) == []
    assert mark_for(pgdata).samefile(segment)


def test_a_lock_released_without_a_mark_goes_to_pitr(pgdata: Path, fallback: Path) -> None:
    """A daemon killed in the middle of a push: the kernel drops its lock."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(pgdata / "pg_wal" / "archive_status"), TAG],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    proc = archive(pgdata, fallback)
    time.sleep(0.3)
    assert proc.poll() is None
    holder.kill()
    holder.wait()
    assert proc.wait(10) == 0
    assert len(calls(fallback)) == 1


HOLD = f"""
import sys, time
from pathlib import Path
from archiver.postgres.walmarks import Marks
Marks(Path(sys.argv[1]), sys.argv[2]).hold({NAME!r})
print("held", flush=True)
time.sleep(60)
"""


def test_a_file_replaced_before_it_is_marked_gets_no_mark(pgdata: Path) -> None:
    marks = Marks(pgdata / "pg_wal" / "archive_status", TAG)
    segment = pgdata / "pg_wal" / NAME
    st = segment.stat()
    read = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    segment.unlink()
    segment.write_bytes(b"another file under the same name")
    marks.archived(segment, read, marks.hold(NAME))
    assert not mark_for(pgdata).exists()
    assert not list(mark_for(pgdata).parent.glob("*.new"))


def test_marks_are_forgotten_once_postgresql_is_done_and_cleared_at_start(pgdata: Path) -> None:
    status = pgdata / "pg_wal" / "archive_status"
    other = "000000010000000000000006"
    (status / f"{other}.done").touch()
    mine = Marks(status, TAG)
    theirs_tag = mark_tag("s3://elsewhere/repo", "db")
    for name in (NAME, other):
        for suffix in (f".pitr-{TAG}", f".pitr-{TAG}.lock", f".pitr-{theirs_tag}"):
            (status / f"{name}{suffix}").touch()
    listing = os.listdir(status)
    mine.forget(listing, ready={NAME})  # `other` is done: its marks of this tag go
    assert sorted(os.listdir(status)) == sorted(
        [f"{other}.done", f"{other}.pitr-{theirs_tag}", f"{NAME}.ready"]
        + [f"{NAME}{s}" for s in (f".pitr-{TAG}", f".pitr-{TAG}.lock", f".pitr-{theirs_tag}")]
    )
    mine.clear_all()
    assert sorted(os.listdir(status)) == [f"{other}.done", f"{NAME}.ready"]


def test_the_tag_names_repository_and_source() -> None:
    tags = {mark_tag(u, s) for u in ("file:///a", "file:///b") for s in ("db", "db2")}
    assert len(tags) == 4
    assert all(len(t) == 12 and int(t, 16) >= 0 for t in tags)
