"""What the catalog knows of a replication capture, against a real
redis-server and `pitr tail`: info's window, epochs and instants of lower
precision, the same after a catalog rebuild, expire letting an old epoch go
after a full resync, and verify and check naming damaged or missing batches."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archiver.redis.replication import now_ms
from catalog.catchup import catch_up
from catalog.db.engine import alembic_config
from catalog.db.models import ReplBatch, ReplEpoch
from catalog.replication import (
    ReplBatchRecord,
    ReplEpochRecord,
    batches_prefix,
    repl_batch_key,
)
from catalog.repository import Repository
from recovery.redis.replay import epochs
from tests.harness import wait_until
from tests.redisserver import RedisFactory
from tests.redissupport import RedisSource, TailProcess, make_source

QUIET = 0.4


@pytest.fixture
def source(redis_factory: RedisFactory, tmp_path: Path) -> Iterator[RedisSource]:
    src = make_source(redis_factory(), tmp_path, capture="replication")
    yield src


def start_tail(src: RedisSource, epochs_wanted: int = 1) -> TailProcess:
    tail = TailProcess(src.config, "--source", src.name)
    with src.repo() as repo:
        wait_until(lambda: len(epochs(repo, src.name)) >= epochs_wanted, 30, "a replication base")
    return tail


def stop_tail(tail: TailProcess) -> None:
    code, _, err = tail.stop(signal.SIGTERM)
    assert code == 0, err


def instant() -> str:
    """Now as a target, between two quiet moments."""
    time.sleep(QUIET / 2)
    at = datetime.fromtimestamp(now_ms() / 1000, UTC).isoformat()
    time.sleep(QUIET / 2)
    return at


def info_of(src: RedisSource) -> dict[str, Any]:
    [entry] = json.loads(src.pitr("info", "--output", "json").stdout)["sources"]
    return dict(entry)


def restore(src: RedisSource, redis_factory: RedisFactory, at: str, check: int = 0) -> Any:
    dst = redis_factory()
    args = ("restore", "--source", src.name, "--to", at, "--redis-url", dst.url)
    src.pitr(*args, check=check or True)
    return dst.client()


def test_info_shows_the_window_and_epochs_and_a_rebuild_gives_the_same(
    source: RedisSource, redis_factory: RedisFactory, tmp_path: Path
) -> None:
    c = source.client()
    c.set("cb:k", "base")
    tail = start_tail(source)
    c.set("cb:k", "one")
    first = instant()
    c.client_kill_filter(_type="replica")  # a dropped link: PSYNC continues
    c.set("cb:k", "two")
    time.sleep(1)
    stop_tail(tail)

    entry = info_of(source)
    archive = entry["archive"]
    assert archive["capture"] == "replication" and archive["repl_epochs"] == 1
    assert archive["repl_batches"] >= 2 and archive["repl_resumes"] >= 1
    [epoch] = archive["epochs"]
    assert entry["recoverable_from"] == epoch["base_at"]
    assert entry["recoverable_to"] == epoch["newest_arrival"] == entry["last_archived_at"]
    assert epoch["end_offset"] > epoch["offset"] and epoch["batches"] == archive["repl_batches"]
    assert not any("nothing can be restored" in n for n in entry["notes"])
    [outage] = entry["lower_precision"]
    assert entry["recoverable_from"] < outage["from"] < outage["to"] <= entry["recoverable_to"]
    assert "link down" in outage["detail"]
    text = source.pitr("info").stdout
    assert "replication: 1 epochs" in text and "lower precision" in text, text
    # No snapshot was ever taken: the epoch's base is the backup whose age counts.
    args = ("report", "rpo", "--max-backup-age", "1h", "--output", "json")
    [rpo] = json.loads(source.pitr(*args).stdout)
    assert rpo["last_archived_at"] == entry["last_archived_at"] and rpo["lag_seconds"] < 60
    assert rpo["ok"] and rpo["last_backup_at"] == epoch["base_at"], rpo["problems"]
    assert rpo["lower_precision"] == entry["lower_precision"]

    # The catalog lost: rebuilt from the store alone, it says the same.
    for path in (tmp_path / "repo").glob("catalog.db*"):
        path.unlink()
    source.pitr("catalog", "rebuild", "--force")
    assert info_of(source) == entry
    assert restore(source, redis_factory, first).get("cb:k") == b"one"


def test_expire_lets_an_old_epoch_go_after_a_full_resync(
    source: RedisSource, redis_factory: RedisFactory, tmp_path: Path
) -> None:
    c = source.client()
    c.config_set("repl-backlog-size", 16384)
    tail = start_tail(source)
    c.set("cb:side", "one")
    before = instant()
    stop_tail(tail)
    for i in range(2000):  # far more than the backlog holds while away
        c.set(f"cb:fill:{i % 50}", "x" * 100)
    tail = start_tail(source, epochs_wanted=2)
    c.set("cb:side", "two")
    after = instant()
    stop_tail(tail)
    with source.repo() as repo:
        old, new = epochs(repo, source.name)

    entry = info_of(source)
    assert [e["epoch"] for e in entry["archive"]["epochs"]] == [old.name, new.name]
    assert any("full resync" in p["detail"] for p in entry["lower_precision"])
    assert restore(source, redis_factory, before).get("cb:side") == b"one"

    plan = json.loads(
        source.pitr("expire", "--keep", "1", "--grace", "0s", "--output", "json").stdout
    )
    [expired] = plan["sources"]
    assert expired["removed_repl_epochs"] == [old.name]
    assert {"id": f"epoch {new.name}", "reason": "the newest"} in expired["kept"]
    assert plan["objects"]["removed"] >= 1  # the old base and batches' objects
    with source.repo() as repo:
        assert [e.name for e in epochs(repo, source.name)] == [new.name]
        assert not list(repo.list_records(batches_prefix(source.name, old.name)))
    entry = info_of(source)
    assert entry["archive"]["repl_epochs"] == 1
    assert entry["recoverable_from"] == entry["archive"]["epochs"][0]["base_at"]
    assert restore(source, redis_factory, after).get("cb:side") == b"two"
    restore(source, redis_factory, before, check=3)  # before every kept base
    source.pitr("check")
    source.pitr("verify", "--read-data")


def test_verify_names_a_damaged_batch_and_check_a_missing_one(
    source: RedisSource, tmp_path: Path
) -> None:
    c = source.client()
    tail = start_tail(source)
    for i in range(4):  # quiet moments: a batch each
        c.set(f"cb:n{i}", i)
        time.sleep(QUIET)
    stop_tail(tail)
    source.pitr("verify", "--read-data")
    with source.repo() as repo, repo.catalog.session() as s:
        rows = s.scalars(select(ReplBatch).order_by(ReplBatch.start_offset)).all()
        middle = [(b.epoch, b.start_offset, b.end_offset, b.oid) for b in rows][len(rows) // 2]
    epoch, start, end, oid = middle
    [path] = (tmp_path / "repo" / "objects").rglob(oid)
    saved = path.read_bytes()
    path.write_bytes(saved[:-8] + bytes(8))  # same size: only a read finds it

    damaged = json.loads(source.pitr("verify", "--read-data", "--output", "json", check=4).stdout)
    [bad] = damaged["bad_objects"]
    assert bad["oid"] == oid and bad["problem"] == "damaged"
    assert bad["refs"] == [
        {"source": "cache", "kind": "repl_batch", "name": f"{epoch} {start}..{end}"}
    ]
    [lost] = damaged["sources"][0]["lost"]
    assert f"replication batch {epoch} {start}..{end} is damaged" == lost["detail"]
    text = source.pitr("verify", "--read-data", check=4).stdout
    assert f"needed by cache: replication batch {epoch} {start}..{end}" in text, text
    path.write_bytes(saved)

    # The batch's record lost, and the catalog rebuilt from the store: a hole.
    (tmp_path / "repo" / repl_batch_key("cache", epoch, start)).unlink()
    source.pitr("catalog", "rebuild", "--force")
    report = json.loads(source.pitr("check", "--output", "json", check=3).stdout)
    [problem] = report["sources"][0]["problems"]
    assert problem == {
        "type": "repl_offset_gap",
        "detail": f"replication epoch {epoch}: no batch holds offsets {start}..{end}",
        "epoch": epoch,
        "from": start,
        "to": end,
    }
    assert (
        report["sources"][0]["recoverable_to"]
        < info_of(source)["archive"]["epochs"][0]["newest_arrival"]
    )


def test_records_captured_before_the_replication_tables_appear_after_the_upgrade(
    tmp_path: Path,
) -> None:
    url = (tmp_path / "repo").as_uri()
    catalog = f"sqlite:///{tmp_path / 'repo' / 'catalog.db'}"
    repo, _ = Repository.init(url, catalog)
    try:
        catch_up(repo)  # from now on, catch-ups read the journal
        base = repo.put_chunk(b"an RDB")
        stream = repo.put_chunk(b"*1\r\n$4\r\nPING\r\n")
        # Written as the capture did before: journal entries of this catalog's
        # own writer, which its catch-ups skip.
        epoch = ReplEpochRecord("cache", "r-0", "r", 0, [base.oid], 6, 1000, 1001)
        repo.put_fact(epoch)
        repo.put_fact(ReplBatchRecord("cache", "r-0", "r", 0, 14, 1002, 1002, stream.oid, 14))
        catch_up(repo)
        with repo.catalog.session() as s:
            assert s.scalars(select(ReplEpoch)).all() == []
        from alembic import command

        command.downgrade(alembic_config(repo.catalog.engine), "0003")
    finally:
        repo.close()
    upgraded = Repository.open(url, catalog)  # upgrades to 0004, then catches up
    try:
        with upgraded.catalog.session() as s:
            assert [e.epoch for e in s.scalars(select(ReplEpoch))] == ["r-0"]
            [batch] = s.scalars(select(ReplBatch)).all()
            assert (batch.start_offset, batch.end_offset, batch.oid) == (0, 14, stream.oid)
    finally:
        upgraded.close()
