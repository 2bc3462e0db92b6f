"""pitr expire: the retention choice (pure, table-driven) and a real run
against an archiving PostgreSQL, restored afterwards to the oldest instant
it kept."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from catalog.marks import MarkPoint
from catalog.records import record_key
from catalog.wal import HistoryEntry, lsn_segno, parse_lsn, segment_name
from recovery.postgres.facts import WalRef
from recovery.postgres.planner import BackupPoint, TimelineInfo
from recovery.postgres.retention import pg_chooser, wal_to_expire
from recovery.redis.coverage import SnapshotRef
from recovery.redis.retention import StreamFact, facts_to_expire
from recovery.retention import Candidate, Policy, select_backups
from tests.pgsupport import Archived, markers_in
from tests.redissupport import between
from tests.reportsupport import (
    MARKERS,
    archived_redis,
    catalog_sql,
    pitr_json,
    redis_json,
    tail_markers,
)
from tests.servers import RedisFactory

SEG = 16 << 20
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def backup(bid: str, hours: float, segno: int, tli: int = 1) -> BackupPoint:
    return BackupPoint(bid, tli, segno * SEG + 40, segno * SEG + 4000, at(hours))


# Backups a..d finish at hours 0, 10, 20, 30; "now" is hour 40.
LINE = [backup("a", 0, 2), backup("b", 10, 5), backup("c", 20, 8), backup("d", 30, 11)]


def choose(policy: Policy, backups: list[BackupPoint] = LINE, timelines=None) -> set[str]:
    timelines = timelines or {}
    items = [Candidate(b.id, b.finished_at, b.finished_at) for b in backups]
    points = [b.finished_at for b in backups] + [t.created_at for t in timelines.values()]
    sel = select_backups(items, policy, at(40), pg_chooser(backups, timelines), points)
    return set(sel.kept)


@pytest.mark.parametrize(
    ("policy", "kept"),
    [
        (Policy(), {"a", "b", "c", "d"}),  # no policy: keep everything
        (Policy(keep=1), {"d"}),
        (Policy(keep=2), {"c", "d"}),
        (Policy(keep=9), {"a", "b", "c", "d"}),
        # Within 15h of hour 40: only d finished then, but restoring hour 25
        # needs c, the newest backup older than the window's start.
        (Policy(keep_within=timedelta(hours=15)), {"c", "d"}),
        (Policy(keep_within=timedelta(hours=10)), {"d"}),  # the window starts at d exactly
        (Policy(keep_within=timedelta(hours=5)), {"d"}),
        (Policy(keep_within=timedelta(hours=25)), {"b", "c", "d"}),
        (Policy(keep=1, keep_within=timedelta(hours=25)), {"b", "c", "d"}),  # union
        (Policy(keep=3, keep_within=timedelta(hours=1)), {"b", "c", "d"}),
    ],
)
def test_selection_on_one_timeline(policy: Policy, kept: set[str]) -> None:
    assert choose(policy) == kept


def test_selection_keeps_the_backup_a_mark_restores_from() -> None:
    mark = MarkPoint("db", "before-change", at(15), None, None)
    sel = select_backups(
        [Candidate(b.id, b.finished_at, b.finished_at) for b in LINE],
        Policy(keep=1, marks=(mark,)),
        at(40),
        pg_chooser(LINE, {}),
        [b.finished_at for b in LINE],
        [mark],
    )
    assert sel.kept == {"d": "the newest", "b": "needed by mark before-change"}


def test_selection_keeps_the_backup_a_newer_timeline_needs() -> None:
    # Timeline 2 branched off timeline 1 at segment 6 (between b and c) at
    # hour 25: from then on the planner restores from b, whose history it is.
    tl2 = TimelineInfo(2, (HistoryEntry(1, 6 * SEG + 100),), at(25))
    backups = [*LINE[:3], backup("e", 35, 14, tli=2)]
    assert choose(Policy(keep=1), backups, {2: tl2}) == {"e"}
    # The window from hour 26 on: timeline 2 is chosen, c is not on its history.
    assert choose(Policy(keep_within=timedelta(hours=14)), backups, {2: tl2}) == {"b", "e"}


def wal(name_segno: int, tli: int = 1, kind: str = "segment") -> WalRef:
    name = segment_name(tli, name_segno) if kind == "segment" else f"{tli:08X}.history"
    segno = name_segno if kind != "history" else None
    return WalRef(name_segno * 10 + tli, name, kind, tli, segno, "x", T0, T0)


def test_wal_before_the_oldest_kept_backup_goes() -> None:
    files = [wal(s) for s in range(1, 14)]
    gone = wal_to_expire([LINE[2], LINE[3]], files, {}, SEG)  # c starts at segment 8
    assert [w.segno for w in gone] == [1, 2, 3, 4, 5, 6, 7]
    assert wal_to_expire([], files, {}, SEG) == []


def test_wal_on_other_timelines_stays_unless_a_kept_backup_is_past_it() -> None:
    tl2 = TimelineInfo(2, (HistoryEntry(1, 6 * SEG + 100),), at(25))
    files = [wal(s) for s in range(1, 12)] + [wal(s, 2) for s in range(6, 9)]
    files.append(wal(2, 2, kind="history"))
    # Keeping only c (timeline 1, segment 8): timeline 1 before 8 goes; timeline
    # 2 branched before c, is not on c's history, and stays.
    gone = {(w.timeline, w.segno) for w in wal_to_expire([LINE[2]], files, {2: tl2}, SEG)}
    assert gone == {(1, s) for s in range(1, 8)}
    # Keeping b (segment 5, on both histories): nothing after segment 5 goes,
    # on either timeline; the .history file is never a candidate.
    gone = {(w.timeline, w.segno) for w in wal_to_expire([LINE[1]], files, {2: tl2}, SEG)}
    assert gone == {(1, s) for s in range(1, 5)}


def test_stream_batches_before_every_kept_snapshot_go() -> None:
    ms = int(at(10).timestamp() * 1000)
    snap = SnapshotRef("s1", at(10), {"orders": f"{ms - 5}-0"})
    facts = [
        StreamFact(1, "batch", "orders", f"{ms - 100}-0", f"{ms - 50}-0", at(9)),
        StreamFact(2, "batch", "orders", f"{ms - 40}-0", f"{ms - 5}-0", at(9)),
        StreamFact(3, "batch", "orders", f"{ms - 4}-0", f"{ms + 10}-0", at(10.1)),
        StreamFact(4, "gap", "orders", f"{ms - 200}-0", f"{ms - 150}-0", at(9)),
        # Not in the snapshot: the stream began after it, so older entries
        # are never replayed from it.
        StreamFact(5, "batch", "events", f"{ms - 9}-0", f"{ms - 8}-0", at(9)),
        StreamFact(6, "batch", "events", f"{ms + 1}-0", f"{ms + 2}-0", at(10.1)),
    ]
    assert [f.id for f in facts_to_expire([snap], facts)] == [1, 2, 4, 5]
    assert facts_to_expire([], facts) == []


# -- a real run ---------------------------------------------------------------------


def store_objects(archived: Archived) -> set[str]:
    return {p.name for p in (archived.repo / "objects").glob("*/*")}


def referenced(archived: Archived) -> set[str]:
    sql = (
        "SELECT oid FROM wal_files UNION SELECT oid FROM backup_objects "
        "UNION SELECT manifest_oid FROM backups"
    )
    return {r[0] for r in catalog_sql(archived, sql)}


def test_expire_keeps_what_the_policy_says_and_the_oldest_kept_instant_restores(
    archived: Archived,
) -> None:
    ids = []
    for n in (1, 2, 3):
        archived.pitr("backup", "--source", "db")
        archived.cluster.psql(f"CREATE TABLE filler_{n} AS SELECT generate_series(1, 20000) g")
        archived.marker(n)
        archived.switch_and_wait()
        ids.append(pitr_json(archived, "info")["sources"][0]["backups"][-1]["id"])
    before = pitr_json(archived, "info")["sources"][0]
    b2 = before["backups"][1]
    first_kept_segment = lsn_segno(parse_lsn(b2["start_lsn"]))
    objects_before = store_objects(archived)

    # A dry run says what would go and changes nothing.
    dry = pitr_json(archived, "expire", "--keep", "2", "--grace", "0s", "--dry-run")
    assert set(dry) == {"dry_run", "sources", "objects", "journal_entries_removed"}
    assert dry["dry_run"] is True
    assert set(dry["objects"]) == {"removed", "removed_bytes", "kept_within_grace", "grace_seconds"}
    (plan,) = dry["sources"]
    assert set(plan) == {
        "name",
        "kind",
        "window_start",
        "kept",
        "removed_backups",
        "removed_wal",
        "removed_stream_batches",
        "removed_stream_gaps",
        "removed_sqlite_batches",
        "removed_sqlite_gaps",
        "removed_repl_epochs",
        "removed_repl_batches",
    }
    assert [b["id"] for b in plan["removed_backups"]] == ids[:1]
    assert {k["id"] for k in plan["kept"]} == set(ids[1:])
    assert store_objects(archived) == objects_before
    assert len(pitr_json(archived, "info")["sources"][0]["backups"]) == 3

    done = pitr_json(archived, "expire", "--keep", "2", "--grace", "0s")
    assert (
        done["dry_run"] is False
        and done["sources"] == dry["sources"]
        and done["objects"] == dry["objects"]
    )
    assert done["objects"]["removed"] > 0

    # Exactly the two newest backups remain, and the WAL from b2's start on.
    after = pitr_json(archived, "info")["sources"][0]
    assert [b["id"] for b in after["backups"]] == ids[1:]
    names = [r[0] for r in catalog_sql(archived, "SELECT name FROM wal_files ORDER BY name")]
    removed = set(plan["removed_wal"])
    assert removed and not removed & set(names)
    assert all(lsn_segno_of(n) < first_kept_segment for n in removed)
    assert all(lsn_segno_of(n) >= first_kept_segment for n in names)
    # Their records went too, and no object is left that nothing needs.
    assert not (archived.repo / record_key("db", "backups", ids[0])).exists()
    assert not any((archived.repo / record_key("db", "wal", n)).exists() for n in removed)
    assert store_objects(archived) == referenced(archived)
    assert len(store_objects(archived)) < len(objects_before)
    assert after["recoverable_from"] == b2["finished_at"]
    assert after["recoverable_to"] == before["recoverable_to"]
    assert archived.pitr("check").returncode == 0

    # The oldest kept instant still restores: b2's data, nothing after it.
    pgdata = archived.base / "r-oldest"
    archived.pitr(
        "restore", "--source", "db", "--to", after["recoverable_from"], "--pgdata", str(pgdata)
    )
    restored = archived.restored(pgdata)
    try:
        assert markers_in(restored) == [1]
    finally:
        restored.stop()

    # Again: nothing more to do. And a rebuilt catalog does not bring b1 back.
    again = pitr_json(archived, "expire", "--keep", "2", "--grace", "0s")
    assert again["sources"][0]["removed_backups"] == [] and again["objects"]["removed"] == 0
    archived.pitr("catalog", "rebuild", "--force")
    assert [b["id"] for b in pitr_json(archived, "info")["sources"][0]["backups"]] == ids[1:]


def lsn_segno_of(name: str) -> int:
    from catalog.wal import parse_wal_name

    parsed = parse_wal_name(name)
    assert parsed is not None and parsed.segno is not None
    return parsed.segno


def test_unreferenced_objects_wait_for_the_grace_period(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    archived.switch_and_wait()  # the archiver is idle: every object has its row
    # An object whose writer has not committed its row yet (or never will).
    orphan = archived.repo / "objects" / "00" / ("00" + "ab" * 31)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"not yet referenced")

    kept = pitr_json(archived, "expire")  # no policy: only unreferenced objects
    assert kept["objects"] == {
        "removed": 0,
        "removed_bytes": 0,
        "kept_within_grace": 1,
        "grace_seconds": 3600.0,
    }
    assert orphan.exists()
    assert len(pitr_json(archived, "info")["sources"][0]["backups"]) == 1

    old = time.time() - 2 * 3600
    os.utime(orphan, (old, old))
    gone = pitr_json(archived, "expire")
    assert gone["objects"]["removed"] == 1 and not orphan.exists()
    assert archived.pitr("verify").returncode == 0


# -- Redis ----------------------------------------------------------------------------


def test_expire_redis_keeps_the_newest_snapshot_and_the_entries_after_it(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    src, ids = archived_redis(redis_factory(), tmp_path, "first")
    c = src.client()
    c.set("cb:health:a", "second")
    src.pitr("backup", "--source", "cache")
    ids += tail_markers(src, 4, 6)
    before = redis_json(src, "info")["sources"][0]
    first, second = (b["id"] for b in before["backups"])

    done = redis_json(src, "expire", "--keep", "1", "--grace", "0s")
    (plan,) = done["sources"]
    assert [b["id"] for b in plan["removed_backups"]] == [first]
    assert plan["removed_stream_batches"] >= 1 and done["objects"]["removed"] >= 1
    # What the second snapshot holds is gone from the stream archive; what
    # came after it stays.
    assert [i for _, i, _ in src.archived()] == ids[4:]
    after = redis_json(src, "info")["sources"][0]
    assert [b["id"] for b in after["backups"]] == [second]
    assert after["recoverable_from"] == before["backups"][1]["started_at"]
    assert after["recoverable_to"] == before["recoverable_to"]
    assert redis_json(src, "verify", "--read-data")["ok"] is True

    # The oldest kept instant and one between two later markers both restore.
    dst = redis_factory()
    d = dst.client()
    src.pitr(
        "restore", "--source", "cache", "--to", after["recoverable_from"], "--redis-url", dst.url
    )
    assert d.get("cb:health:a") == b"second"
    assert [i for i, _ in d.xrange(MARKERS)] == ids[:4]
    src.pitr(
        "restore",
        "--source",
        "cache",
        "--to",
        between(ids[5], ids[6]),
        "--redis-url",
        dst.url,
        "--force",
    )
    assert [i for i, _ in d.xrange(MARKERS)] == ids[:6]
