"""Property: for any instant in the recoverable window of a recorded
PostgreSQL + Redis history, `pitr restore --to` brings back exactly the
state recorded at that instant, on both servers at once."""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.pgsupport import markers_in, start_archiving
from tests.redissupport import TailProcess, archived_entries_of, instant_of
from tests.servers import wait_until

STREAM = "cb:stream:history"
EVENTS = 8
MARGIN = timedelta(milliseconds=60)  # keep targets clear of the instants events happened


def test_every_instant_restores_to_the_recorded_state(
    pg_cluster, pg_cluster_factory, redis_factory, shared_tmp: Path
) -> None:
    archived = start_archiving(pg_cluster, shared_tmp, pg_cluster_factory)
    source = redis_factory()
    with archived.config.open("a") as f:
        f.write(
            f'\n[sources.cache]\nkind = "redis"\nurl = "{source.url}"\nstreams = ["{STREAM}"]\n'
            'capture = "streams"\n'
        )
    archived.pitr("backup", "--source", "db")
    archived.pitr("backup", "--source", "cache")
    client = source.client()
    tail = TailProcess(archived.config, "--batch-seconds", "0.2", user="postgres")
    history: list[tuple[datetime, int, bytes]] = []  # (instant, marker, entry id)
    try:
        for n in range(1, EVENTS + 1):
            time.sleep(0.25)
            at = archived.marker(n)
            entry = client.xadd(STREAM, {"n": str(n)})
            history.append((max(at, instant_of(entry)), n, entry))
        time.sleep(0.5)
        archived.cluster.psql("CHECKPOINT")
        archived.switch_and_wait()
        wait_until(
            lambda: len(archived_entries_of(archived.config, "cache")) >= EVENTS, 60, "entries"
        )
    finally:
        code, _, err = tail.stop(signal.SIGTERM)
    assert code == 0, err

    start, end = history[0][0] - timedelta(milliseconds=200), history[-1][0] + MARGIN
    target_redis = redis_factory()
    runs = iter(range(1000))

    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.floats(min_value=0.0, max_value=1.0))
    def restores_match(fraction: float) -> None:
        target = start + (end - start) * fraction
        assume(all(abs(target - at) > MARGIN for at, _, _ in history))
        expected = [n for at, n, _ in history if at < target]
        pgdata = archived.base / f"restored-{next(runs)}"
        archived.pitr(
            "restore",
            "--to",
            target.isoformat(),
            "--pgdata",
            str(pgdata),
            "--redis-url",
            target_redis.url,
            "--force",
        )
        restored = archived.restored(pgdata)
        try:
            assert markers_in(restored) == expected
        finally:
            restored.stop()
        entries = target_redis.client().xrange(STREAM)
        assert [int(fields[b"n"]) for _, fields in entries] == expected
        assert [entry_id for entry_id, _ in entries] == [e for _, n, e in history if n in expected]

    restores_match()
