"""pitr mark on a SQLite source: the mark waits for the capture, and a
restore to it brings back exactly what was committed before it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.badinput import expect_row
from tests.sqlitesupport import make_source, rows


def test_mark_and_restore_to_it(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    proc = source.tail()
    try:
        source.write(3, name="a")
        before = rows(source.db)
        out = source.pitr("mark", "before-import", "--wait", "20s").stdout
        assert "mark before-import: app (sqlite) archived up to" in out
        source.write(3, name="b")
    finally:
        code, _, err = proc.stop()
    assert code == 0, err
    (mark,) = json.loads(source.pitr("info", "--output", "json").stdout)["sources"][0]["marks"]
    assert mark["name"] == "before-import" and mark["lsn"] is None

    into = tmp_path / "out.db"
    text = source.pitr("restore", "--to", "before-import", "--into", str(into)).stdout
    assert "integrity_check ok" in text
    assert rows(into) == before and len(before) == 3


def test_a_capture_that_is_not_running_fails_the_mark_and_records_nothing(
    tmp_path: Path,
) -> None:
    source = make_source(tmp_path)
    result = source.pitr("mark", "too-soon", "--wait", "1s", check=False)
    expect_row("mark-capture-behind", result)
    assert json.loads(source.pitr("info", "--output", "json").stdout)["sources"][0]["marks"] == []
    assert not list((tmp_path / "repo").glob("records/*/marks/*"))


def test_a_replication_captured_redis_source_is_refused_before_any_mark(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    with source.config.open("a") as f:
        f.write('\n[sources.cache]\nkind = "redis"\nurl = "redis://127.0.0.1:1"\n')
        f.write('capture = "replication"\n')
    expect_row("mark-redis-replication", source.pitr("mark", "x", check=False))
    assert not list((tmp_path / "repo").glob("records/*/marks/*"))


def test_expire_keeps_what_a_mark_needs_unless_told_otherwise(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    proc = source.tail()
    try:
        source.write(2, name="a")
        before = rows(source.db)
        source.pitr("mark", "old", "--wait", "20s")
        source.write(2, name="b")
        source.pitr("backup", "--source", "app")
        source.write(1, name="c")
        source.pitr("backup", "--source", "app")
    finally:
        code, _, err = proc.stop()
    assert code == 0, err

    def expire(*args: str) -> dict[str, Any]:
        out = source.pitr("expire", "--keep", "1", "--grace", "0s", "--output", "json", *args)
        (plan,) = json.loads(out.stdout)["sources"]
        return dict(plan)

    ignoring = expire("--ignore-marks", "--dry-run")
    plan = expire()
    by_mark = [k["id"] for k in plan["kept"] if k["reason"] == "needed by mark old"]
    assert len(by_mark) == 1 and len(plan["kept"]) == 2
    assert by_mark[0] in [b["id"] for b in ignoring["removed_backups"]]
    into = tmp_path / "old.db"
    source.pitr("restore", "--to", "old", "--into", str(into))
    assert rows(into) == before
