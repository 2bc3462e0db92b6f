"""pitr check and pitr verify against a real archiving PostgreSQL, with a
segment deleted, a byte flipped and an object truncated."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from catalog.repository import object_key
from tests.pgsupport import Archived, start_archiving
from tests.redissupport import RedisSource, instant_of, make_source
from tests.reportsupport import (
    add_markers,
    catalog_sql,
    forget_wal,
    object_path,
    pitr_json,
    redis_json,
    segments,
    tail_markers,
)
from tests.servers import PostgresCluster, RedisFactory

CHECK_FIELDS = {"ok", "objects_checked", "stored_bytes_checked", "sources", "bad_objects"}
CHECK_SOURCE_FIELDS = {
    "name",
    "kind",
    "recoverable_from",
    "recoverable_to",
    "gaps",
    "lost",
    "problems",
}


@pytest.fixture
def archived(pg_cluster: PostgresCluster, pg_cluster_factory, shared_tmp: Path) -> Archived:
    return start_archiving(pg_cluster, shared_tmp, pg_cluster_factory)


def utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


def test_check_names_a_deleted_segment_and_the_window_shrinks(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    for n in (1, 2, 3):
        archived.marker(n)
        archived.switch_and_wait()
    whole = pitr_json(archived, "check")
    assert whole["ok"] is True and whole["bad_objects"] == []
    assert set(whole) == CHECK_FIELDS
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
    add_markers(c, 0, 0)
    src.pitr("backup", "--source", "cache")
    tail_markers(src, 1, 2)
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
