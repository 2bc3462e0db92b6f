"""pitr info and pitr report rpo on a real archiving PostgreSQL."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from catalog.db.engine import Catalog
from tests.badinput import expect_row
from tests.pgsupport import Archived
from tests.redissupport import instant_of
from tests.reportsupport import (
    MARKERS,
    WINDOW_FIELDS,
    add_markers,
    archived_redis,
    catalog_sql,
    forget_wal,
    pitr_json,
    redis_json,
    segments,
    tail_markers,
    utc,
)
from tests.servers import RedisFactory

# The fields docs/reference.md lists.
INFO_SOURCE_FIELDS = WINDOW_FIELDS | {"name", "kind", "configured", "identity", "backups"}
INFO_SOURCE_FIELDS |= {"last_archived_at", "archive", "notes", "marks", "lower_precision"}
INFO_BACKUP_FIELDS = {"id", "kind", "started_at", "finished_at", "timeline", "start_lsn"}
INFO_BACKUP_FIELDS |= {"size_bytes", "stored_bytes", "dedup_ratio", "stop_lsn"}
PG_ARCHIVE_FIELDS = {"wal_files", "wal_bytes", "wal_stored_bytes", "timelines", "newest_segment"}
PG_ARCHIVE_FIELDS |= {"streamed"}  # null unless the source streams (test_wal_stream.py)
REDIS_ARCHIVE_FIELDS = {"streams", "stream_batches", "stream_entries", "stream_bytes"}
REDIS_ARCHIVE_FIELDS |= {"stream_stored_bytes", "stream_gaps"}
RPO_FIELDS = WINDOW_FIELDS | {"source", "kind", "last_archived_at", "lag_seconds", "ok"}
RPO_FIELDS |= {"last_backup_at", "backup_age_seconds", "max_lag_seconds"}
RPO_FIELDS |= {"max_backup_age_seconds", "problems", "lower_precision"}


def add_idle_source(archived: Archived) -> None:
    """A second configured source that never archived anything."""
    with archived.config.open("a") as f:
        f.write('\n[sources.idle]\nkind = "postgres"\ndsn = "host=/nonexistent"\npgdata = "/x"\n')


def test_info_lists_backups_window_and_totals(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    archived.marker(1)
    archived.switch_and_wait()

    doc = pitr_json(archived, "info")
    assert set(doc) == {"repository", "sources"}
    assert set(doc["repository"]) == {"url", "catalog", "objects", "bytes", "stored_bytes"}
    (src,) = doc["sources"]
    assert set(src) == INFO_SOURCE_FIELDS and set(src["archive"]) == PG_ARCHIVE_FIELDS
    assert src["name"] == "db" and src["kind"] == "postgres"
    assert src["archive"]["streamed"] is None
    assert src["identity"]["system_identifier"] == archived.cluster.psql(
        "SELECT system_identifier FROM pg_control_system()"
    )
    (backup,) = src["backups"]
    assert set(backup) == INFO_BACKUP_FIELDS
    assert backup["size_bytes"] > 1_000_000 and 0 < backup["stored_bytes"] < backup["size_bytes"]
    assert backup["dedup_ratio"] == pytest.approx(
        backup["size_bytes"] / backup["stored_bytes"], rel=0.01
    )
    # The window opens when the backup ended and reaches the newest segment.
    assert src["recoverable_from"] == backup["finished_at"]
    assert utc(src["recoverable_to"]) > utc(backup["finished_at"])
    assert src["gaps"] == []
    assert src["archive"]["wal_files"] == len(segments(archived)) + 1  # and the .backup file
    assert src["archive"]["newest_segment"] == segments(archived)[-1][0]

    text = archived.pitr("info").stdout
    assert backup["id"] in text and "recoverable:" in text


def test_report_rpo_fresh_stale_and_never_archived(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    # Fresh: right after a segment was archived. A loaded machine can take a
    # while between the archive and the report, so a few rounds are allowed.
    for _ in range(5):
        archived.marker(1 + _)
        archived.switch_and_wait()
        fresh = archived.pitr("report", "rpo", "--max-lag", "1s", check=False)
        if fresh.returncode == 0:
            break
    assert fresh.returncode == 0, fresh.stderr
    assert "ok" in fresh.stdout

    time.sleep(1.5)  # nothing archived since: now it is behind a 1s lag
    stale = archived.pitr("report", "rpo", "--max-lag", "1s", check=3)
    assert "BEHIND" in stale.stdout and "over --max-lag" in stale.stderr

    rows = pitr_json(archived, "report", "rpo", "--max-lag", "1s", code=3)
    (row,) = rows
    assert set(row) == RPO_FIELDS
    assert row["ok"] is False and row["lag_seconds"] > 1
    assert utc(row["last_archived_at"]) <= utc(row["recoverable_to"]) or row["gaps"] == []
    # Within a generous lag and backup age, the same source is fine.
    rows = pitr_json(archived, "report", "rpo", "--max-lag", "1h", "--max-backup-age", "26h")
    assert rows[0]["ok"] is True and rows[0]["backup_age_seconds"] > 0

    # A configured source that never archived anything is stale.
    add_idle_source(archived)
    rows = {r["source"]: r for r in pitr_json(archived, "report", "rpo", "--max-lag", "1h", code=3)}
    assert rows["idle"]["ok"] is False and rows["idle"]["last_archived_at"] is None
    assert rows["idle"]["recoverable_from"] is None and rows["db"]["ok"] is True
    assert archived.pitr("report", "rpo", "--source", "db", "--max-lag", "1h").returncode == 0
    assert archived.pitr("report", "rpo", "--max-backup-age", "1s", check=3)


def test_report_rpo_prometheus(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    archived.marker(1)
    archived.switch_and_wait()
    text = archived.pitr("report", "rpo", "--output", "prometheus").stdout
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    db = (("source", "db"),)
    assert samples["pitr_source_info", (("kind", "postgres"), ("source", "db"))] == 1
    assert samples["pitr_rpo_ok", db] == 1
    assert samples["pitr_backups", db] == 1
    last = samples["pitr_last_archived_timestamp_seconds", db]
    assert abs(last - time.time()) < 600
    assert (
        samples["pitr_recoverable_to_timestamp_seconds", db]
        >= samples["pitr_recoverable_from_timestamp_seconds", db]
    )
    assert ("pitr_max_lag_seconds", db) not in samples  # no limit configured
    assert "# TYPE pitr_archive_lag_seconds gauge" in text


def test_a_lost_segment_shows_as_a_gap_until_a_newer_backup(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    for n in (1, 2, 3):
        archived.marker(n)
        archived.switch_and_wait()
    before = pitr_json(archived, "info")["sources"][0]
    names = [name for name, _ in segments(archived)]
    lost = names[-2]
    forget_wal(archived, lost)

    after = pitr_json(archived, "info")["sources"][0]
    assert after["recoverable_from"] == before["recoverable_from"]
    assert utc(after["recoverable_to"]) < utc(before["recoverable_to"])

    # A newer backup reopens the window: the lost segment is now a gap in it.
    archived.pitr("backup", "--source", "db")
    archived.marker(4)
    archived.switch_and_wait()
    (row,) = pitr_json(archived, "report", "rpo")
    (gap,) = row["gaps"]
    assert lost in gap["detail"]
    assert utc(gap["from"]) == utc(after["recoverable_to"])
    assert utc(gap["to"]) < utc(row["recoverable_to"])


# -- Redis ----------------------------------------------------------------------------


def test_redis_source_window_lag_and_a_recorded_gap(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    src, ids = archived_redis(redis_factory(), tmp_path, "ok")
    c = src.client()

    (info,) = redis_json(src, "info")["sources"]
    assert info["kind"] == "redis" and set(info) == INFO_SOURCE_FIELDS
    assert set(info["archive"]) == REDIS_ARCHIVE_FIELDS and info["identity"] == {}
    (snap,) = info["backups"]
    assert snap["kind"] == "redis_snapshot" and snap["size_bytes"] > 0
    assert info["recoverable_from"] == snap["started_at"]
    assert utc(info["recoverable_to"]) >= instant_of(ids[-1])
    assert info["archive"]["streams"] == 1 and info["archive"]["stream_entries"] >= 3
    (row,) = redis_json(src, "report", "rpo", "--max-lag", "1h")
    assert row["ok"] is True and row["gaps"] == [] and set(row) == RPO_FIELDS
    assert utc(row["last_archived_at"]) >= instant_of(ids[-1])

    # Entries added and trimmed away while no tailer ran: a recorded gap.
    add_markers(c, 4, 8)
    c.xtrim(MARKERS, maxlen=2, approximate=False)
    tail_markers(src, 9, 9)
    (row,) = redis_json(src, "report", "rpo")
    (gap,) = row["gaps"]
    assert gap["detail"].startswith(f"stream {MARKERS}: trimmed")
    assert utc(gap["from"]) == instant_of(ids[-1])
    doc = redis_json(src, "check", code=3)
    (problem,) = doc["sources"][0]["problems"]
    assert problem["type"] == "stream_gap" and problem["stream"] == MARKERS
    # A restore across it cannot give the stream as it was: refused, untouched.
    scratch = redis_factory()
    at = row["recoverable_to"]
    result = src.pitr("restore", "--to", at, "--redis-url", scratch.url, check=False)
    expect_row("restore-redis-gap", result)
    assert scratch.client().dbsize() == 0


# -- the SQL in docs/catalog.md -------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "catalog.md"


def documented_sql(dialect: str) -> list[str]:
    """SQL blocks for a dialect: those marked for it and those for both."""
    blocks = re.findall(r"```sql\n(.*?)```", DOCS.read_text(), re.S)
    return [b for b in blocks if not b.startswith("-- ") or b.startswith(f"-- {dialect}\n")]


def test_the_documented_sql_runs_on_sqlite_and_postgresql(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    archived.marker(1)
    archived.switch_and_wait()
    (row,) = pitr_json(archived, "report", "rpo")

    sqlite = documented_sql("SQLite")
    assert len(sqlite) >= 8
    results = [catalog_sql(archived, sql) for sql in sqlite]
    (lag,) = results[0]
    assert lag[0] == "db" and lag[1] == "postgres"
    assert lag[2][:19] == row["last_archived_at"][:19].replace("T", " ")
    assert lag[3] >= 0
    assert results[1] == []  # a backup was taken just now

    # The PostgreSQL variants, on a catalog schema in the test cluster.
    cluster = archived.cluster
    cluster.psql("CREATE DATABASE pitrcat")
    catalog = Catalog(
        f"postgresql+psycopg://postgres@/pitrcat?host={cluster.socket_dir}&port={cluster.port}"
    )
    try:
        catalog.upgrade()
    finally:
        catalog.close()
    cluster.psql(
        "INSERT INTO sources (name, kind, created_at) VALUES ('db', 'postgres', now())", "pitrcat"
    )
    postgres = documented_sql("PostgreSQL")
    assert len(postgres) == len(sqlite)
    outputs = [cluster.psql(sql, "pitrcat") for sql in postgres]
    assert outputs[0].startswith("db|postgres||")  # nothing archived in this one
    assert outputs[1] == "db|"
