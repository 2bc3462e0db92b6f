"""`pitr report rpo` on a streaming source: the replication slot as the
server sees it, a warning before max_slot_wal_keep_size invalidates it, and
one line, not a failure, when the server cannot be asked."""

from __future__ import annotations

import json
from typing import Any

from tests.pgsupport import Archived


def rpo(archived: Archived) -> tuple[str, dict[str, Any]]:
    """(text report, the source's JSON object); both exit 0."""
    text = archived.pitr("report", "rpo").stdout
    (doc,) = json.loads(archived.pitr("report", "rpo", "--output", "json").stdout)
    return text, doc


def fill_segments(archived: Archived, n: int) -> None:
    """Write a little and close the segment, n times."""
    for _ in range(n):
        archived.cluster.psql(
            "INSERT INTO markers(n) SELECT coalesce(max(n), 0) + 1 FROM markers; "
            "SELECT pg_switch_wal()"
        )


def test_report_rpo_shows_the_slot_and_warns_before_it_is_invalidated(
    archived: Archived,
) -> None:
    c = archived.cluster
    archived.config.write_text(archived.config.read_text() + 'stream = true\nslot = "rpo_slot"\n')
    text, doc = rpo(archived)
    assert doc["slot"]["name"] == "rpo_slot" and doc["slot"]["exists"] is False
    assert "db: warning: slot rpo_slot: does not exist" in text

    c.set_setting("max_slot_wal_keep_size", "64MB")  # four 16 MiB segments
    c.psql("SELECT pg_create_physical_replication_slot('rpo_slot', true)")
    text, doc = rpo(archived)
    slot = doc["slot"]
    assert slot["reachable"] and slot["exists"] and slot["active"] is False
    assert slot["wal_status"] == "reserved" and slot["warning"] is None
    assert 0 <= slot["retained_bytes"] < 16 << 20
    assert slot["max_slot_wal_keep_size_bytes"] == 64 << 20
    assert slot["safe_wal_size_bytes"] > 48 << 20
    assert "db: slot rpo_slot: inactive (nothing receives from it), " in text
    assert "max_slot_wal_keep_size 64 MiB" in text and "warning" not in text

    fill_segments(archived, 4)
    archived.marker(-1)  # into the fifth segment: less than a quarter of the limit left
    text, doc = rpo(archived)
    slot = doc["slot"]
    assert slot["retained_bytes"] > 48 << 20
    assert 0 < slot["safe_wal_size_bytes"] < 16 << 20
    assert "MiB left before max_slot_wal_keep_size invalidates it" in slot["warning"]
    assert f"db: warning: slot rpo_slot: {slot['warning']}" in text

    fill_segments(archived, 2)  # past the limit: the server may remove its WAL
    text, doc = rpo(archived)
    assert doc["slot"]["wal_status"] in ("unreserved", "lost")
    assert f"wal_status is {doc['slot']['wal_status']}" in text

    # With the server down the report still says what the catalog knows.
    c.stop()
    text, doc = rpo(archived)
    assert doc["slot"]["reachable"] is False and doc["slot"]["error"]
    assert doc["slot"]["retained_bytes"] is None
    assert doc["last_archived_at"] is not None  # the segments archive_command pushed
    (line,) = [ln for ln in text.splitlines() if "rpo_slot" in ln]
    assert line.startswith("db: slot rpo_slot: cannot ask the server: ")
    assert "last archived" in text  # the table is there
