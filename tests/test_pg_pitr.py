"""Point-in-time recovery of a real PostgreSQL 15, checked with marker rows."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.pgsupport import Archived, markers_in, midpoint, open_dir, start_archiving
from tests.servers import PostgresCluster

PAUSE = 0.3


@pytest.fixture
def archived(
    pg_cluster: PostgresCluster, pg_cluster_factory, shared_tmp: Path, repository
) -> Archived:
    """On a local repository with SQLite, and on S3 with a PostgreSQL catalog."""
    return start_archiving(pg_cluster, shared_tmp, pg_cluster_factory, repository)


def restore_and_start(archived: Archived, target: str, name: str, **env: str) -> PostgresCluster:
    pgdata = archived.base / name
    result = archived.pitr(
        "restore", "--source", "db", "--to", target, "--pgdata", str(pgdata), env=env or None
    )
    assert "base backup" in result.stdout
    spool = pgdata.with_name(f".{pgdata.name}.pitr-spool")
    assert (spool / "index.json").exists()  # WAL is prefetched beside, not inside, PGDATA
    restored = archived.restored(pgdata)
    assert not spool.exists()  # recovery_end_command removed it
    return restored


def test_markers_before_and_after_a_backup_in_every_time_form(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    t = {n: archived.marker(n) for n in (1, 2, 3) if not time.sleep(PAUSE)}
    archived.pitr("backup", "--source", "db")
    for n in (4, 5, 6):
        time.sleep(PAUSE)
        t[n] = archived.marker(n)
    archived.switch_and_wait()

    # Before the second backup ended: planned from the first one, given with an offset.
    before = midpoint(t[2], t[3]).astimezone(ZoneInfo("Asia/Kolkata")).isoformat()
    restored = restore_and_start(archived, before, "r-offset")
    try:
        assert markers_in(restored) == [1, 2]
    finally:
        restored.stop()

    # After it: with a trailing zone name.
    berlin = midpoint(t[4], t[5]).astimezone(ZoneInfo("Europe/Berlin"))
    restored = restore_and_start(
        archived, berlin.strftime("%Y-%m-%d %H:%M:%S.%f") + " Europe/Berlin", "r-zone"
    )
    try:
        assert markers_in(restored) == [1, 2, 3, 4]
    finally:
        restored.stop()

    # In local time, the zone coming from TZ.
    local = midpoint(t[5], t[6]).astimezone(ZoneInfo("America/New_York"))
    restored = restore_and_start(
        archived, local.strftime("%Y-%m-%d %H:%M:%S.%f"), "r-local", TZ="America/New_York"
    )
    try:
        assert markers_in(restored) == [1, 2, 3, 4, 5]
        # The restored cluster is promoted and takes writes.
        restored.psql("INSERT INTO markers(n) VALUES (99)")
    finally:
        restored.stop()


def test_target_after_the_last_transaction_replays_everything(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    last = archived.marker(1)
    time.sleep(1)
    archived.cluster.psql("CHECKPOINT")  # WAL, but no transaction, after the target
    archived.switch_and_wait()
    target = (last + timedelta(milliseconds=300)).isoformat()
    pgdata = archived.base / "r-end"
    result = archived.pitr("restore", "--source", "db", "--to", target, "--pgdata", str(pgdata))
    assert "replay all archived WAL" in result.stdout
    restored = archived.restored(pgdata)
    try:
        assert markers_in(restored) == [1]
    finally:
        restored.stop()


def test_restore_onto_a_new_timeline_and_again_on_it(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    t1 = archived.marker(1)
    time.sleep(PAUSE)
    archived.marker(2)  # the "damage" the first restore goes back before
    archived.switch_and_wait()

    first = restore_and_start(
        archived, midpoint(t1, t1 + timedelta(seconds=PAUSE)).isoformat(), "r-tl2"
    )
    try:
        assert markers_in(first) == [1]
        assert first.psql("SELECT timeline_id FROM pg_control_checkpoint()").strip() == "2"
        # The promoted cluster archives on timeline 2 into the same source.
        second = Archived(first, archived.config, archived.repo, archived.base, archived.factory)
        time.sleep(PAUSE)
        t10 = second.marker(10)
        time.sleep(PAUSE)
        t11 = second.marker(11)
        second.switch_and_wait()
    finally:
        first.stop()

    again = restore_and_start(archived, midpoint(t10, t11).isoformat(), "r-tl2-again")
    try:
        assert markers_in(again) == [1, 10]
    finally:
        again.stop()


def test_targets_outside_the_window_exit_3_with_the_window(archived: Archived) -> None:
    early = archived.marker(1)
    archived.pitr("backup", "--source", "db")
    archived.switch_and_wait()
    for target in (early.isoformat(), "2099-01-01 00:00 UTC"):
        result = archived.pitr(
            "restore",
            "--source",
            "db",
            "--to",
            target,
            "--pgdata",
            str(archived.base / "never"),
            check=False,
        )
        assert result.returncode == 3, result.stderr
        assert "recoverable window" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (archived.base / "never").exists()


def test_dry_run_changes_nothing_and_non_empty_target_needs_force(archived: Archived) -> None:
    archived.pitr("backup", "--source", "db")
    target = archived.instant_between_markers(PAUSE)
    pgdata = archived.base / "busy"
    open_dir(pgdata)
    (pgdata / "precious").write_text("keep me")

    dry = archived.pitr("restore", "--to", target, "--pgdata", str(pgdata), "--dry-run")
    assert "dry run" in dry.stdout
    assert sorted(p.name for p in pgdata.iterdir()) == ["precious"]

    # Not a data directory: refused even with --force, nothing moved.
    forced = archived.pitr(
        "restore", "--to", target, "--pgdata", str(pgdata), "--force", check=False
    )
    assert forced.returncode == 3 and "no PG_VERSION" in forced.stderr
    assert sorted(p.name for p in pgdata.iterdir()) == ["precious"]

    (pgdata / "PG_VERSION").write_text("16\n")  # an old data directory now
    refused = archived.pitr("restore", "--to", target, "--pgdata", str(pgdata), check=False)
    assert refused.returncode == 3 and "--force" in refused.stderr
    assert (pgdata / "precious").read_text() == "keep me"

    archived.pitr("restore", "--to", target, "--pgdata", str(pgdata), "--force")
    aside = [p for p in archived.base.iterdir() if p.name.startswith("busy.pitr-aside-")]
    assert len(aside) == 1 and (aside[0] / "precious").read_text() == "keep me"
    modes = {p.stat().st_mode & 0o777 for p in pgdata.rglob("*") if p.is_file()}
    assert modes == {0o600}  # PostgreSQL's own modes, whatever the umask of the restore
    modes = {p.stat().st_mode & 0o777 for p in [pgdata, *pgdata.rglob("*")] if p.is_dir()}
    assert modes == {0o700}
    restored = archived.restored(pgdata)
    try:
        assert markers_in(restored) == [1]
    finally:
        restored.stop()
