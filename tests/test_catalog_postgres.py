"""The catalog database on PostgreSQL 15 and on SQLite: schema upgrades,
several processes writing at once (the shared-repository case), and the
queries of a replication capture's reports."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select

from catalog.db.engine import HEAD_REVISION, Catalog
from catalog.db.models import Source, StoredObject, WalFile
from catalog.queries import ensure_source, get_source, record_objects
from catalog.replfacts import (
    Resume,
    batch_links,
    load_epochs,
    offset_holes,
    orphan_batches,
    repl_totals,
)
from catalog.replication import ReplBatchRecord, ReplEpochRecord
from catalog.repository import Chunk

WORKERS = 4
ROWS = 100
SHARED = "shared"


@pytest.fixture(params=["postgresql", "sqlite"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    return f"postgresql+psycopg://postgres@/postgres?host={cluster.socket_dir}&port={cluster.port}"


def test_upgrade_creates_the_schema_and_is_idempotent(catalog_url: str) -> None:
    catalog = Catalog(catalog_url)
    assert catalog.revision() is None
    catalog.upgrade()
    assert catalog.revision() == HEAD_REVISION
    catalog.check_schema()
    tables = set(inspect(catalog.engine).get_table_names())
    assert {"sources", "objects", "wal_files", "backups", "alembic_version"} <= tables
    with catalog.session() as s:
        ensure_source(s, "db", "postgres")
    catalog.close()
    # Again, from a fresh handle: nothing changes and the data stays.
    again = Catalog(catalog_url)
    again.upgrade()
    again.upgrade()
    assert again.revision() == HEAD_REVISION
    with again.session() as s:
        source = get_source(s, "db")
        assert source is not None and source.kind == "postgres"
        assert s.scalar(select(func.count()).select_from(Source)) == 1
    again.close()


def _worker(url: str, index: int, barrier: Any) -> None:
    """One archiving process: race the others for a shared source, then
    record ROWS WAL files of its own source, one transaction each, each
    referencing a chunk every worker shares and one of its own."""
    catalog = Catalog(url)
    try:
        barrier.wait(timeout=60)
        with catalog.session() as s:
            ensure_source(s, SHARED, "postgres")
        base = datetime(2025, 1, 16, 12, 0, tzinfo=UTC)
        for n in range(ROWS):
            with catalog.session() as s:
                src = ensure_source(s, f"db{index}", "postgres")
                shared = Chunk(f"{n:064x}", 100, 50)
                own = Chunk(f"{index + 1:08x}{n:056x}", 200, 80)
                record_objects(s, [shared, own])
                s.add(
                    WalFile(
                        source_id=src.id,
                        name=f"00000001{n // 256:08X}{n % 256:08X}",
                        kind="segment",
                        timeline=1,
                        segno=n,
                        oid=own.oid,
                        size=16 * 1024 * 1024,
                        end_time=base + timedelta(seconds=n),
                    )
                )
    finally:
        catalog.close()


def test_concurrent_writers_are_safe(catalog_url: str) -> None:
    Catalog(catalog_url).upgrade()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    procs = [ctx.Process(target=_worker, args=(catalog_url, i, barrier)) for i in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert codes == [0] * WORKERS

    catalog = Catalog(catalog_url)
    with catalog.session() as s:
        names = set(s.scalars(select(Source.name)))
        assert names == {SHARED} | {f"db{i}" for i in range(WORKERS)}
        per_source = dict(
            s.execute(
                select(Source.name, func.count(WalFile.id))
                .join(WalFile, WalFile.source_id == Source.id)
                .group_by(Source.name)
            ).all()
        )
        assert per_source == {f"db{i}": ROWS for i in range(WORKERS)}
        # Every worker recorded the same ROWS shared chunks: each is there once.
        assert s.scalar(select(func.count()).select_from(StoredObject)) == ROWS + WORKERS * ROWS
        segnos = s.scalars(
            select(WalFile.segno).join(Source).where(Source.name == "db2").order_by(WalFile.segno)
        ).all()
        assert segnos == list(range(ROWS))
    catalog.close()


def test_ensure_source_refuses_another_kind(catalog_url: str) -> None:
    catalog = Catalog(catalog_url)
    catalog.upgrade()
    with catalog.session() as s:
        ensure_source(s, "cache", "redis")
    with pytest.raises(Exception, match="recorded as redis"), catalog.session() as s:
        ensure_source(s, "cache", "postgres")
    with catalog.session() as s:
        assert ensure_source(s, "cache", "redis").kind == "redis"
    catalog.close()


def test_replication_facts_sum_and_break_alike_on_both_backends(catalog_url: str) -> None:
    catalog = Catalog(catalog_url)
    catalog.upgrade()
    epoch = ReplEpochRecord("cache", "r-0", "r", 0, ["b" * 64], 6, 1000, 1001)
    # Offsets 0..10, 10..20, then a hole up to 30; the third came after an outage.
    spans = [(0, 10, 1002, None), (10, 20, 1003, None), (30, 40, 1009, 1005)]
    batches = [
        ReplBatchRecord("cache", "r-0", "r", a, b, ms, ms, f"{a:064x}", b - a, resumed_from_ms=lost)
        for a, b, ms, lost in spans
    ]
    orphan = ReplBatchRecord("cache", "gone-0", "g", 0, 5, 900, 900, "c" * 64, 5)
    with catalog.session() as s:
        src = ensure_source(s, "cache", "redis")
        row = epoch.row(src.id)
        s.add(row)
        s.flush()
        s.add_all(epoch.object_rows(row.id))
        s.add_all(r.row(src.id) for r in [*batches, orphan])
        record_objects(s, [Chunk("b" * 64, 6, 4), Chunk(f"{10:064x}", 10, 7)])
        source_id = src.id
    with catalog.session() as s:
        [e] = load_epochs(s, source_id)
        assert (e.name, e.oids, e.batches, e.bytes) == ("r-0", ("b" * 64,), 3, 30)
        assert (e.end_offset, e.newest_ms) == (40, 1009)
        assert e.resumes == [Resume(1005, 1009, 30)]
        assert offset_holes(e, batch_links(s, source_id)) == [(20, 30)]
        damaged = batch_links(s, source_id, {f"{10:064x}"})
        assert [(x.start, x.prev_end, x.prev_last_ms) for x in damaged if x.epoch == "r-0"] == [
            (0, None, None),
            (10, 10, 1002),
            (30, 20, 1003),
        ]
        assert [(e, start) for _, e, start in orphan_batches(s, source_id)] == [("gone-0", 0)]
        totals = repl_totals(s, source_id, [e])
        assert (totals["repl_batches"], totals["repl_stored_bytes"]) == (3, 11)
    catalog.close()
