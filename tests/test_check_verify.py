"""pitr check and pitr verify against a real archiving PostgreSQL, with a
segment deleted, a byte flipped and an object truncated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from catalog.repository import object_key
from catalog.wal import HistoryEntry, segment_name
from recovery.coverage import lost_ranges
from recovery.postgres.continuity import wal_continuity
from recovery.postgres.coverage import pg_coverage
from recovery.postgres.facts import PgFacts, WalRef
from recovery.postgres.planner import BackupPoint, TimelineInfo
from recovery.redis.coverage import BatchRef as CoverBatch
from recovery.redis.coverage import SnapshotRef, redis_coverage
from tests.pgsupport import Archived
from tests.redissupport import RedisSource, instant_of, make_source
from tests.reportsupport import (
    WINDOW_FIELDS,
    catalog_sql,
    forget_wal,
    object_path,
    pitr_json,
    redis_json,
    segments,
    snapshot_and_tail,
    tail_markers,
    utc,
)
from tests.servers import RedisFactory

CHECK_FIELDS = {"ok", "objects_checked", "stored_bytes_checked", "sources", "bad_objects"}
CHECK_SOURCE_FIELDS = WINDOW_FIELDS | {"name", "kind", "lost", "problems"}


def test_check_names_a_deleted_segment_and_the_window_shrinks(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    for n in (1, 2, 3):
        archived.marker(n)
        archived.switch_and_wait()
    whole = pitr_json(archived, "check")
    assert whole["ok"] is True and whole["bad_objects"] == []
    assert set(whole) == CHECK_FIELDS | {"warnings"}
    (before,) = whole["sources"]
    assert set(before) == CHECK_SOURCE_FIELDS
    assert before["problems"] == [] and before["recoverable_to"] is not None

    # The object of a segment in the middle of the chain disappears from the store.
    names = segments(archived)
    lost_name, lost_oid = names[-2]
    object_path(archived, lost_oid).unlink()

    text = archived.pitr("check", check=4)
    assert lost_name in text.stdout and "missing" in text.stderr
    doc = pitr_json(archived, "check", code=4)
    (bad,) = doc["bad_objects"]
    assert set(bad) == {"oid", "problem", "detail", "refs"}
    assert bad["oid"] == lost_oid and bad["problem"] == "missing"
    assert bad["refs"] == [{"source": "db", "kind": "wal", "name": lost_name}]
    (src,) = doc["sources"]
    assert src["recoverable_from"] == before["recoverable_from"]
    assert utc(src["recoverable_to"]) < utc(before["recoverable_to"])
    (lost,) = src["lost"]
    assert lost_name in lost["detail"] and lost["to"] == before["recoverable_to"]
    assert archived.pitr("verify", check=4)

    # Once its row is gone too, the hole is a continuity problem naming it.
    forget_wal(archived, lost_name)
    doc = pitr_json(archived, "check", code=3)
    assert doc["bad_objects"] == []
    (src,) = doc["sources"]
    (problem,) = src["problems"]
    assert problem["type"] == "wal_gap" and problem["segments"] == [lost_name]
    assert {"type", "detail"} <= set(problem)
    assert lost_name in archived.pitr("check", check=3).stdout
    info = pitr_json(archived, "info")["sources"][0]
    assert utc(info["recoverable_to"]) < utc(before["recoverable_to"])


def test_verify_read_data_finds_a_flipped_byte(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    archived.marker(1)
    archived.switch_and_wait()
    assert pitr_json(archived, "verify")["ok"] is True
    sound = pitr_json(archived, "verify", "--read-data")
    assert sound["ok"] is True and sound["objects_checked"] > 10
    assert set(sound) == CHECK_FIELDS | {"read_data"} and sound["read_data"] is True
    (before,) = sound["sources"]

    # Flip one byte in the largest object of the backup: same size, other content.
    (backup_id,) = catalog_sql(archived, "SELECT id FROM backups")[0]
    oids = [r[0] for r in catalog_sql(archived, "SELECT oid FROM backup_objects")]
    victim = max(oids, key=lambda oid: object_path(archived, oid).stat().st_size)
    path = object_path(archived, victim)
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x40]))

    # Sizes alone cannot see it; reading it back can.
    assert pitr_json(archived, "verify")["ok"] is True
    doc = pitr_json(archived, "verify", "--read-data", code=4)
    (bad,) = doc["bad_objects"]
    assert bad["oid"] == victim and bad["problem"] == "damaged"
    assert {"source": "db", "kind": "backup", "name": backup_id} in bad["refs"]
    (src,) = doc["sources"]
    assert src["recoverable_from"] is None
    (lost,) = src["lost"]
    assert lost["from"] == before["recoverable_from"] and lost["to"] == before["recoverable_to"]
    assert backup_id in lost["detail"]
    text = archived.pitr("verify", "--read-data", check=4).stdout
    assert victim in text and f"needed by db: backup {backup_id}" in text


def test_verify_finds_a_truncated_object(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    archived.marker(1)
    archived.switch_and_wait()
    name, oid = segments(archived)[-1]
    path = object_path(archived, oid)
    path.write_bytes(path.read_bytes()[:-10])
    doc = pitr_json(archived, "verify", code=4)
    (bad,) = doc["bad_objects"]
    assert bad["oid"] == oid and bad["problem"] == "size"
    assert bad["refs"] == [{"source": "db", "kind": "wal", "name": name}]


# -- Redis ----------------------------------------------------------------------------


def redis_rows(src: RedisSource, sql: str) -> list[Any]:
    with src.repo() as repo, repo.catalog.session() as s:
        return list(s.execute(text(sql)).all())


def test_redis_damaged_batch_and_missing_snapshot_chunk(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    src = make_source(redis_factory(), tmp_path)
    c = src.client()
    for i in range(50):
        c.set(f"cb:key:{i}", "v" * 100)
    snapshot_and_tail(src, 0, 2)
    ids = tail_markers(src, 3, 4)
    assert redis_json(src, "check")["ok"] is True
    sound = redis_json(src, "verify", "--read-data")
    assert sound["ok"] is True
    (before,) = sound["sources"]

    # A byte flipped in the batch holding markers 3 and 4.
    ((oid, stream, first, last),) = redis_rows(
        src,
        "SELECT oid, stream, first_id, last_id FROM stream_batches "
        f"WHERE first_id = '{ids[0].decode()}'",
    )
    path = tmp_path / "repo" / object_key(oid)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    doc = redis_json(src, "verify", "--read-data", code=4)
    (bad,) = doc["bad_objects"]
    assert bad["oid"] == oid and bad["problem"] == "damaged"
    assert bad["refs"] == [
        {"source": "cache", "kind": "stream_batch", "name": f"{stream} {first}..{last}"}
    ]
    (source,) = doc["sources"]
    (lost,) = source["lost"]
    assert utc(lost["from"]) == instant_of(ids[0]) and lost["to"] == before["recoverable_to"]
    assert first in lost["detail"]
    assert source["recoverable_from"] == before["recoverable_from"]

    # A chunk of the snapshot disappears: nothing can be restored from it.
    ((snapshot_id, manifest),) = redis_rows(src, "SELECT id, manifest_oid FROM backups")
    chunk = next(
        oid for (oid,) in redis_rows(src, "SELECT oid FROM backup_objects") if oid != manifest
    )
    (tmp_path / "repo" / object_key(chunk)).unlink()
    doc = redis_json(src, "check", code=4)
    (bad,) = doc["bad_objects"]
    assert bad["oid"] == chunk
    assert bad["refs"] == [{"source": "cache", "kind": "snapshot", "name": snapshot_id}]
    assert doc["sources"][0]["recoverable_from"] is None


# -- pure: continuity and windows -----------------------------------------------------

SEG = 16 << 20
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def point(bid: str, minutes: float, start: int, stop: int, tli: int = 1) -> BackupPoint:
    return BackupPoint(bid, tli, start * SEG + 40, stop * SEG + 4000, at(minutes))


def facts(
    backups: list[BackupPoint], segs: dict[tuple[int, int], float], timelines=None
) -> PgFacts:
    wal = [
        WalRef(i, segment_name(t, s), "segment", t, s, f"o{i}", at(m), at(m))
        for i, ((t, s), m) in enumerate(sorted(segs.items()))
    ]
    return PgFacts(1, SEG, backups, wal, dict(timelines or {}))


def test_continuity_names_runs_and_the_backups_they_break() -> None:
    a, b = point("a", 0, 2, 3), point("b", 30, 9, 10)
    # Segments 2..12 each end a minute later; 5, 6 and 10 are missing.
    segs = {(1, s): s * 3.0 for s in range(2, 13) if s not in (5, 6, 10)}
    problems = wal_continuity("db", facts([a, b], segs))
    got = [(p.type, p.extra["segments"], p.extra["backups"]) for p in problems]
    assert got == [
        (
            "wal_gap",
            ["000000010000000000000005 .. 000000010000000000000006 (2 segments)"],
            ["a"],
        ),
        ("unusable_backup", ["00000001000000000000000A"], ["b"]),
        ("wal_gap", ["00000001000000000000000A"], ["a"]),
    ]
    assert wal_continuity("db", facts([a], {(1, s): s * 3.0 for s in range(2, 13)})) == []


def test_continuity_follows_timelines_and_wants_their_history() -> None:
    a = point("a", 0, 2, 3)
    tl2 = TimelineInfo(2, (HistoryEntry(1, 5 * SEG + 100),), at(40))
    # Timeline 2 reads segment 5 on from timeline 2; timeline 1 goes on to 7.
    segs = {(1, s): s * 3.0 for s in range(2, 8)} | {(2, 5): 41.0, (2, 7): 43.0}
    problems = wal_continuity("db", facts([a], segs, {2: tl2}))
    assert [(p.type, p.extra["segments"]) for p in problems] == [
        ("wal_gap", ["000000020000000000000006"]),
    ]
    assert problems[0].extra["timelines"] == [2]
    missing_history = wal_continuity("db", facts([a], segs))
    assert [p.type for p in missing_history][0] == "missing_history"


def test_window_has_a_gap_between_a_broken_chain_and_the_next_backup() -> None:
    a, b = point("a", 0, 2, 3), point("b", 30, 9, 10)
    segs = {(1, s): s * 3.0 for s in range(2, 13) if s != 5}
    f = facts([a, b], segs)
    cov = pg_coverage(f.backups, f.segments(), {}, SEG)
    assert (cov.recoverable_from, cov.recoverable_to) == (at(0), at(36))
    (gap,) = cov.gaps
    assert (gap.start, gap.end) == (at(12), at(30))
    assert "000000010000000000000005 is missing" in gap.detail and "backup a" in gap.detail

    # Losing b's stop segment: everything from b on is lost, and says why.
    stop_oid = next(w.oid for w in f.wal if w.segno == 10)
    broken = pg_coverage(f.backups, f.segments(exclude_oids={stop_oid}), {}, SEG)
    assert broken.recoverable_to == at(12)
    (lost,) = lost_ranges(cov, broken)
    assert (lost.start, lost.end) == (at(30), at(36))
    assert "backup b cannot reach a consistent state" in lost.detail


def damaged_batch(first: str, last: str, first_ms: int) -> CoverBatch:
    last_ms = int(last.split("-")[0])
    return CoverBatch("orders", first, last, first_ms, last_ms, 1, "bad", at(30))


def test_redis_window_and_a_damaged_batch() -> None:
    ms = int(at(10).timestamp() * 1000)
    s1 = SnapshotRef("s1", at(0), {"orders": "1-0"})
    s2 = SnapshotRef("s2", at(10), {"orders": f"{ms - 1}-0"})
    cov = redis_coverage([s1, s2], at(20))
    assert (cov.recoverable_from, cov.recoverable_to, cov.gaps) == (at(0), at(20), [])
    # A batch before s2 breaks restores from s1 only; one after s2 breaks both.
    early = damaged_batch("2-0", f"{ms - 60_000}-0", int(at(5).timestamp() * 1000))
    broken = redis_coverage([s1, s2], at(20), bad_batches=[early])
    (lost,) = lost_ranges(cov, broken)
    assert (lost.start, lost.end) == (at(5), at(10)) and "orders 2-0" in lost.detail
    late_ms = int(at(15).timestamp() * 1000)
    late = damaged_batch(f"{late_ms}-0", f"{late_ms + 5}-0", late_ms)
    (lost,) = lost_ranges(cov, redis_coverage([s1, s2], at(20), bad_batches=[late]))
    assert (lost.start, lost.end) == (at(15), at(20))
    (lost,) = lost_ranges(cov, redis_coverage([s1, s2], at(20), bad_snapshots={"s1"}))
    assert (lost.start, lost.end) == (at(0), at(10)) and "snapshot s1" in lost.detail
