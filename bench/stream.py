"""Streaming WAL: how soon a commit is durable in the store, and what
`synchronous = true` costs a commit.

    python -m bench.run --only stream [--repeat 2] [--stream-seconds 10] [--stream-commits 500]

Each run makes a fresh cluster with archive_timeout = 0 (so only streaming
can make a commit recoverable before its segment fills) and then:

1. RPO: `pitr daemon` with `stream = true`; under `pgbench -n -c 2 -T N`, a
   commit every COMMIT_PAUSE from here, and the time from each commit
   returning to the store holding a record that covers the LSN
   pg_current_wal_lsn() gave right after it (a piece named
   <segment>.stream.<bytes> covers the segment's start plus those bytes, a
   completed segment all of it);
2. commit latency of single-row INSERTs, ROUNDS times each mode in turn:
   none (no daemon), async (the daemon streaming), sync (its slot in
   synchronous_standby_names, as `synchronous = true` asks). For each sync
   commit: whether the receiver had flushed it (pg_stat_replication) and
   whether the store held it when it returned, and how long until it did.
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.common import (
    PG_SETTINGS,
    Background,
    BenchError,
    pg_dir,
    pg_tool,
    pitr_archive_command,
    pitr_argv,
    pitr_init,
    run,
    wait_for,
)
from catalog.wal import parse_lsn
from tests.servers import PG_USER, PostgresCluster, as_user

Log = Callable[[str], None]
SLOT = "pitr_db"  # the default slot of source "db"
COMMIT_PAUSE = 0.02  # seconds between the measured commits under load
POLL = 0.002  # seconds between two listings of the store's WAL records
ROUNDS = 5  # of commit latency, each mode in turn
SETTLE = 60.0  # seconds a commit may take to reach the store before the run fails


def stream_benchmark(seconds: float, commits: int, repeat: int, log: Log) -> dict[str, Any]:
    runs = []
    for i in range(repeat):
        log(f"stream run {i + 1}/{repeat}")
        runs.append({"run": i + 1, **_one_run(seconds, commits, log)})
    return {
        "load": f"pgbench -n -c 2 -T {seconds:g}",
        "commit_pause_ms": COMMIT_PAUSE * 1000,
        "runs": runs,
        "median": {
            key: round(statistics.median(r[key] for r in runs), 2)
            for key in runs[0]
            if key.endswith("_ms") or key.endswith("ratio")
        },
    }


def _one_run(seconds: float, commits: int, log: Log) -> dict[str, Any]:
    cluster = PostgresCluster.create(archive_timeout=0, settings=PG_SETTINGS)
    cluster.start()
    daemon: Background | None = None
    try:
        base = pg_dir("stream-")
        config = pitr_init(cluster, base / "pitr.toml", base / "repo")
        cluster.set_archive_command(pitr_archive_command(config))
        store = Coverage(base / "repo" / "records" / "db" / "wal", _segment_size(cluster))
        _pg(cluster, [pg_tool("pgbench"), "-i", "-q", "-s", "1"], "pgbench -i")
        cluster.psql("CREATE TABLE bench_commits (id serial PRIMARY KEY, at timestamptz)")
        lat: dict[str, list[float]] = {"none": [], "async": [], "sync": []}
        sync = SyncCommits()
        block = max(1, commits // ROUNDS)
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            _write_config(config)
            daemon = _start_daemon(config, base, cluster)
            _warm_up(conn, store)
            log(f"async: {seconds:g}s of pgbench with a commit every {COMMIT_PAUSE * 1000:g} ms")
            out = _rpo("async", _under_load(cluster, conn, store, seconds))
            log(f"commit latency: {ROUNDS} rounds of {block} commits per mode")
            for _ in range(ROUNDS):  # none, async, sync in turn: the machine's noise is shared
                daemon.stop()
                lat["none"] += _commit_times(conn, block)
                daemon = _start_daemon(config, base, cluster)
                _warm_up(conn, store)
                lat["async"] += _commit_times(conn, block)
                _standby_names(cluster, SLOT, "sync")
                lat["sync"] += sync.commit(cluster, conn, store, block)
                _standby_names(cluster, "", "async")  # or stopping the daemon would wait
        for mode, seconds_each in lat.items():
            out |= _latency(mode, seconds_each)
        out |= _rpo("sync", sync.delays)
        out |= {
            "sync_commits": len(sync.delays),
            "sync_flushed_at_return": sync.flushed,
            "sync_stored_at_return": sync.stored,
            "sync_ratio": round(out["sync_commit_p50_ms"] / out["none_commit_p50_ms"], 2),
            "sync_p99_ratio": round(out["sync_commit_p99_ms"] / out["none_commit_p99_ms"], 2),
            "daemon_errors": [ln for ln in daemon.output().splitlines() if "streaming:" in ln][-5:],
        }
        return out
    finally:
        if cluster.running:  # or stopping would wait for the receiver
            cluster.set_setting("synchronous_standby_names", "")
        if daemon is not None:
            daemon.stop()
        cluster.cleanup()


class Coverage:
    """The highest LSN the store's WAL records cover, from one listing."""

    def __init__(self, records: Path, seg_size: int) -> None:
        self.records = records
        self.seg_size = seg_size

    def lsn(self) -> int:
        try:
            names = [p.name for p in self.records.iterdir()]
        except FileNotFoundError:
            return 0
        return max((self._end(n) for n in names), default=0)

    def _end(self, name: str) -> int:
        segment, _, valid = name.partition(".stream.")
        if len(segment) != 24 or "." in segment:
            return 0  # .history, .backup, .partial
        per_log = 0x100000000 // self.seg_size
        start = (int(segment[8:16], 16) * per_log + int(segment[16:], 16)) * self.seg_size
        if not valid:
            return start + self.seg_size
        # A piece's name counts its bytes up to the last one that is not
        # zero: the last record's trailing zero bytes and its padding to
        # WAL's 8-byte alignment are in the piece but not counted.
        return start + ((int(valid, 16) + 7) & ~7)


class Watcher(threading.Thread):
    """Notes when the store first covers each commit's LSN, polling."""

    def __init__(self, store: Coverage) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.lock = threading.Lock()
        self.pending: list[tuple[int, int]] = []  # (index, lsn), in LSN order
        self.stored_at: dict[int, float] = {}
        self.stop = threading.Event()

    def expect(self, index: int, lsn: int) -> None:
        with self.lock:
            self.pending.append((index, lsn))

    def run(self) -> None:
        while not self.stop.wait(POLL):
            covered = self.store.lsn()
            now = time.monotonic()
            with self.lock:
                while self.pending and self.pending[0][1] <= covered:
                    self.stored_at[self.pending.pop(0)[0]] = now

    def settle(self, what: str) -> None:
        wait_for(lambda: not self.pending, SETTLE, f"{what}: every commit in the store")
        self.stop.set()
        self.join()


def _under_load(
    cluster: PostgresCluster, conn: psycopg.Connection[Any], store: Coverage, seconds: float
) -> list[float]:
    watcher = Watcher(store)
    watcher.start()
    load = subprocess.Popen(
        _pg_argv(cluster, [pg_tool("pgbench"), "-n", "-c", "2", "-T", f"{seconds:g}"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    returned: list[float] = []
    try:
        while load.poll() is None:
            conn.execute("INSERT INTO bench_commits (at) VALUES (clock_timestamp())")
            returned.append(time.monotonic())
            watcher.expect(len(returned) - 1, _current_lsn(conn))
            time.sleep(COMMIT_PAUSE)
        if load.returncode != 0:
            error = load.stderr.read() if load.stderr else ""
            raise BenchError(f"pgbench: exit {load.returncode}: {error[-500:]}")
        watcher.settle("async")
    finally:
        if load.poll() is None:
            load.kill()
        load.wait()
    return [watcher.stored_at[i] - t for i, t in enumerate(returned)]


class SyncCommits:
    """Commits with the receiver as a synchronous standby: whether each was
    flushed by the receiver and in the store when it returned, and how long
    until the store held it."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.flushed = 0
        self.stored = 0

    def commit(
        self, cluster: PostgresCluster, conn: psycopg.Connection[Any], store: Coverage, n: int
    ) -> list[float]:
        """n commits; their latencies."""
        watcher = Watcher(store)
        watcher.start()
        latency, returned = [], []
        conn.execute("CHECKPOINT")
        with psycopg.connect(cluster.dsn, autocommit=True) as other:
            for i in range(n):
                t0 = time.monotonic()
                conn.execute("INSERT INTO bench_commits (at) VALUES (clock_timestamp())")
                returned.append(time.monotonic())
                latency.append(returned[-1] - t0)
                lsn = _current_lsn(conn)
                self.stored += store.lsn() >= lsn
                self.flushed += _receiver_flush(other) >= lsn
                watcher.expect(i, lsn)
        watcher.settle("sync")
        self.delays += [watcher.stored_at[i] - t for i, t in enumerate(returned)]
        return latency


def _warm_up(conn: psycopg.Connection[Any], store: Coverage) -> None:
    """A commit the store holds: the daemon has shipped once since it started."""
    conn.execute("INSERT INTO bench_commits (at) VALUES (clock_timestamp())")
    lsn = _current_lsn(conn)
    wait_for(lambda: store.lsn() >= lsn, SETTLE, "the daemon's first piece", interval=0.01)


def _commit_times(conn: psycopg.Connection[Any], commits: int) -> list[float]:
    """Commit latencies, after a checkpoint and a few commits not counted."""
    conn.execute("CHECKPOINT")
    for _ in range(20):
        conn.execute("INSERT INTO bench_commits (at) VALUES (clock_timestamp())")
    times = []
    for _ in range(commits):
        t0 = time.monotonic()
        conn.execute("INSERT INTO bench_commits (at) VALUES (clock_timestamp())")
        times.append(time.monotonic() - t0)
    return times


def _latency(mode: str, seconds: list[float]) -> dict[str, Any]:
    return {
        f"{mode}_commit_p50_ms": _ms(_quantile(seconds, 0.5)),
        f"{mode}_commit_p99_ms": _ms(_quantile(seconds, 0.99)),
    }


def _rpo(mode: str, seconds: list[float]) -> dict[str, Any]:
    return {
        f"{mode}_commits": len(seconds),
        f"{mode}_rpo_p50_ms": _ms(_quantile(seconds, 0.5)),
        f"{mode}_rpo_p99_ms": _ms(_quantile(seconds, 0.99)),
        f"{mode}_rpo_max_ms": _ms(max(seconds)),
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _current_lsn(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return parse_lsn(row[0]) if row else 0


def _receiver_flush(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT flush_lsn::text FROM pg_stat_replication WHERE application_name = %s", (SLOT,)
    ).fetchone()
    return parse_lsn(row[0]) if row and row[0] else 0


def _segment_size(cluster: PostgresCluster) -> int:
    return int(cluster.psql("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"))


def _write_config(config: Path) -> None:
    """Streaming, synchronous: commits wait for the receiver while
    synchronous_standby_names names its slot, and only then."""
    config.write_text(config.read_text() + "stream = true\nsynchronous = true\n")


def _start_daemon(config: Path, base: Path, cluster: PostgresCluster) -> Background:
    daemon = Background(pitr_argv(config, "daemon"), base / "daemon.log", user=PG_USER)
    _wait_state(cluster, "async", daemon)
    return daemon


def _standby_names(cluster: PostgresCluster, names: str, state: str) -> None:
    cluster.set_setting("synchronous_standby_names", names)
    _wait_state(cluster, state)


def _wait_state(cluster: PostgresCluster, state: str, daemon: Background | None = None) -> None:
    """Until the daemon's receiver streams as a standby of sync_state `state`."""
    query = f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{SLOT}'"

    def there() -> bool:
        if daemon is not None and not daemon.alive():
            raise BenchError(f"pitr daemon exited: {daemon.output()[-1000:]}")
        return cluster.psql(query).strip() == state

    wait_for(there, 60, f"the daemon's receiver as a {state} standby", interval=0.1)


def _where(cluster: PostgresCluster) -> list[str]:
    return ["-h", str(cluster.socket_dir), "-p", str(cluster.port), "postgres"]


def _pg_argv(cluster: PostgresCluster, argv: list[str]) -> list[str]:
    return list(as_user(PG_USER, [*argv, *_where(cluster)]))


def _pg(cluster: PostgresCluster, argv: list[str], what: str) -> None:
    run([*argv, *_where(cluster)], what, user=PG_USER)


def stream_section(result: dict[str, Any]) -> list[str]:
    """The text report's part (bench.report.render)."""
    from bench.report import _table

    runs = result["runs"]
    out = [
        f"Streaming WAL (stream = true, archive_timeout = 0): commit to durable in the store, "
        f"a commit every {result['commit_pause_ms']:g} ms under {result['load']}; "
        f"{len(runs)} runs",
    ]
    out += _table(
        ["run", "commits", "p50 ms", "p99 ms", "max ms", "sync p50 ms", "sync p99 ms"],
        [
            [
                r["run"],
                r["async_commits"],
                r["async_rpo_p50_ms"],
                r["async_rpo_p99_ms"],
                r["async_rpo_max_ms"],
                r["sync_rpo_p50_ms"],
                r["sync_rpo_p99_ms"],
            ]
            for r in runs
        ],
        {1, 2, 3, 4, 5, 6},
    )
    out += ["", "Commit latency, single-row INSERT, no load (ms): no streaming, async, synchronous"]
    out += _table(
        ["run", "none p50", "none p99", "async p50", "async p99", "sync p50", "sync p99"]
        + ["sync/none p50", "sync/none p99", "flushed at return", "stored at return"],
        [
            [
                r["run"],
                r["none_commit_p50_ms"],
                r["none_commit_p99_ms"],
                r["async_commit_p50_ms"],
                r["async_commit_p99_ms"],
                r["sync_commit_p50_ms"],
                r["sync_commit_p99_ms"],
                f"{r['sync_ratio']:.2f}x",
                f"{r['sync_p99_ratio']:.2f}x",
                f"{r['sync_flushed_at_return']}/{r['sync_commits']}",
                f"{r['sync_stored_at_return']}/{r['sync_commits']}",
            ]
            for r in runs
        ],
        set(range(1, 11)),
    )
    out += [f"run {r['run']}, daemon: {e}" for r in runs for e in r.get("daemon_errors", [])]
    out.append("")
    return out
