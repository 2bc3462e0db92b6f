"""SQLite capture: the formats it reads, what it asks of the application
(locks, WAL size), bad input, and what every report knows of the kind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import struct
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from catalog.db.models import SqliteBatch
from catalog.sqliteformat import (
    Batch,
    Frame,
    checksum,
    decode_batch,
    encode_batch,
    frame_offset,
    parse_frame,
    parse_wal_header,
    parse_wal_index,
)
from tests.sqlitesupport import SqliteSource, commits, expected, make_source, midpoints, rows


@pytest.fixture
def source(tmp_path: Path) -> SqliteSource:
    return make_source(tmp_path)


def test_wal_index_and_frames_agree_with_what_sqlite_wrote(source: SqliteSource) -> None:
    reader = sqlite3.connect(source.db)  # keeps the WAL from being checkpointed away
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM rows").fetchall()
    source.write(7, "--payload", "3000")
    index = parse_wal_index(Path(f"{source.db}-shm").read_bytes()[:96])
    wal = Path(f"{source.db}-wal").read_bytes()
    parsed = parse_wal_header(wal)
    assert index is not None and parsed is not None
    page_size, cycle = parsed
    assert cycle.salts == index.salts and index.max_frame > 7
    # The checksum chain of every committed frame ends where the index says.
    big = struct.unpack(">I", wal[:4])[0] & 1 == 1
    seed = checksum(wal[:24], big_endian=big)
    assert struct.pack(">II", *seed) == wal[24:32]
    commits_seen = 0
    for i in range(1, index.max_frame + 1):
        raw = wal[frame_offset(i, page_size) : frame_offset(i + 1, page_size)]
        frame, salts, stored = parse_frame(raw, page_size)
        seed = checksum(raw[:8] + raw[24:], big_endian=big, seed=seed)
        assert salts == cycle.salts and stored == struct.pack(">II", *seed)
        commits_seen += frame.commit_pages > 0
    assert stored == index.frame_cksum
    assert commits_seen >= 7
    reader.close()


def test_batch_objects_round_trip_and_reject_damage() -> None:
    batch = Batch(512, [Frame(3, 0, b"a" * 512), Frame(1, 9, b"b" * 512)], [(1, 1234567)])
    data = encode_batch(batch)
    assert decode_batch(data) == batch
    with pytest.raises(ValueError):
        decode_batch(data[:-1])
    with pytest.raises(ValueError):
        decode_batch(b"XXXXXXXX" + data[8:])


def test_writers_never_wait_past_their_busy_timeout_and_the_wal_stays_bounded(
    source: SqliteSource,
) -> None:
    sizes: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                sizes.append(os.path.getsize(f"{source.db}-wal"))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    proc = source.tail()
    try:
        # as fast as it can, with a short busy timeout: a lock held too long fails it
        source.write(4000, "--busy-ms", "1000", "--payload", "400")
        history = commits(source.log())
        source.wait_archived(history[-1].after)
    finally:
        stop.set()
        watcher.join()
        code, out, err = proc.stop()
    assert code == 0, err
    assert len(history) == 4000
    assert max(c.waited for c in history) < 1.0
    # checkpoints keep the WAL near 1000 frames (4 KiB pages), far from 4000 commits' worth
    assert max(sizes) < 12 << 20
    assert "0 gaps recorded" in out


def test_bad_input_is_one_line_and_a_documented_exit_code(tmp_path: Path) -> None:
    def configured(where: str) -> SqliteSource:
        d = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        s = make_source(d, paths=where)
        return s

    missing = configured(f'["{tmp_path}/nope.db"]')
    junk_path = tmp_path / "junk.db"
    junk_path.write_bytes(b"not a database at all" * 10)
    junk = configured(f'["{junk_path}"]')
    journal_path = tmp_path / "journal.db"
    conn = sqlite3.connect(journal_path)
    conn.execute("CREATE TABLE rows (name TEXT, seq INTEGER, payload BLOB)")
    conn.commit()
    conn.close()
    journal = configured(f'["{journal_path}"]')
    nothing = configured(f'["{tmp_path}/none-*.db"]')
    cases = [
        (missing, "does not exist"),
        (junk, "is not a SQLite database"),
        (nothing, "matches no file"),
    ]
    for s, message in cases:
        for command in (["tail"], ["backup"]):
            result = s.pitr(*command, "--source", s.name, check=2)
            assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = journal.pitr("tail", "--source", journal.name, check=2)
    assert "PRAGMA journal_mode=WAL" in result.stderr
    for s, _ in cases:
        assert not list((s.dir / "repo").rglob("records/app/*"))
    # A copy on its own restores to its instant (printed), and no later one.
    taken = journal.pitr("backup", "--source", journal.name).stdout
    instant = datetime.fromisoformat(re.search(r"as of (\S+),", taken)[1]).timestamp()
    journal.restore(instant, tmp_path / "back.db")
    assert rows(tmp_path / "back.db") == set()
    later = journal.restore(instant + 1, tmp_path / "later.db", check=3)
    assert "after the newest archived commit" in later.stderr


def test_reports_check_verify_rebuild_and_expire_know_sqlite(
    source: SqliteSource, tmp_path: Path
) -> None:
    proc = source.tail()
    try:
        source.write(6, "--sleep", "0.35", "0.4")
        history = commits(source.log())
        source.wait_archived(history[-1].after)
    finally:
        proc.stop()
    source.pitr("backup", "--source", source.name)
    info = json.loads(source.pitr("info", "--output", "json").stdout)
    [entry] = info["sources"]
    assert entry["kind"] == "sqlite" and entry["archive"]["commits"] == 6
    assert entry["identity"] == {"databases": ["app.db"]}
    assert entry["recoverable_from"] and entry["recoverable_to"]
    [rpo] = json.loads(source.pitr("report", "rpo", "--output", "json").stdout)
    assert rpo["kind"] == "sqlite" and rpo["lag_seconds"] < 60
    assert json.loads(source.pitr("check", "--output", "json").stdout)["ok"] is True
    source.pitr("verify", "--read-data")
    # Rebuilt from the store alone, the catalog restores the same instants.
    source.pitr("catalog", "rebuild", "--force")
    again = json.loads(source.pitr("info", "--output", "json").stdout)["sources"][0]
    assert again["recoverable_from"] == entry["recoverable_from"]
    assert datetime.fromisoformat(again["recoverable_to"]).timestamp() >= history[-1].after
    [at] = midpoints(history, [3])
    source.restore(at, tmp_path / "rebuilt.db")
    assert rows(tmp_path / "rebuilt.db") == expected(history, at)
    # A lost batch object: verify names it and the instants it costs.
    with source.repo() as repo, repo.catalog.session() as s:
        oid = s.scalars(select(SqliteBatch.oid).order_by(SqliteBatch.gfirst)).all()[3]
    [path] = (source.dir / "repo" / "objects").rglob(oid)
    saved = path.read_bytes()
    path.unlink()
    damaged = json.loads(source.pitr("verify", "--output", "json", check=4).stdout)
    [bad] = damaged["bad_objects"]
    assert bad["oid"] == oid and bad["refs"][0]["kind"] == "sqlite_batch"
    assert damaged["sources"][0]["lost"]
    path.write_bytes(saved)
    # Keeping one base copy (the backup, taken with no WAL in use: on its own)
    # lets the capture's generation go, batches and all.
    plan = json.loads(source.pitr("expire", "--keep", "1", "--output", "json").stdout)
    [expired] = plan["sources"]
    assert expired["kind"] == "sqlite" and len(expired["removed_backups"]) == 1
    assert expired["removed_sqlite_batches"] == 6
    assert source.restore(at, tmp_path / "gone.db", check=3).returncode == 3
    kept = json.loads(source.pitr("info", "--output", "json").stdout)["sources"][0]
    end = datetime.fromisoformat(kept["recoverable_to"]).timestamp()
    source.restore(end, tmp_path / "kept.db")
    assert rows(tmp_path / "kept.db") == expected(history, end)


def test_the_held_snapshot_survives_reads_and_a_second_copy_in_the_same_process(
    source: SqliteSource,
) -> None:
    """POSIX locks belong to the process: a descriptor of the -shm or the
    database closed anywhere in it would drop the read lock that pins the WAL."""
    from archiver.sqlite.live import LiveDatabase

    source.write(5)
    live = LiveDatabase(source.db)
    live.hold()
    try:
        for _ in range(20):
            assert live.index() is not None
            live.read_pages(1, 1)
        other = LiveDatabase(source.db, need_wal=False)  # as a scheduled backup would
        other.hold()
        other.release()
        other.close()
        source.write(5, name="more")
        app = sqlite3.connect(source.db, timeout=0.2)
        busy, _, _ = app.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        app.close()
        assert busy == 1, "the WAL was truncated under a held snapshot"
        assert os.path.getsize(f"{source.db}-wal") > 0
    finally:
        live.close()
