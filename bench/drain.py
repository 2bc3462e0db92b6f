"""WAL drain: a backlog of .ready segments, then each archive_command drains
it as PostgreSQL does (its archiver calls the command once per segment,
one after another).

The backlog is built once (archive_command empty, so PostgreSQL keeps every
segment and its .ready file; pgbench -i; switch; stop). Each tool then gets a
byte-for-byte copy of that stopped data directory and its own fresh
repository: the copy is started with archiving still off, the tool is set
up, and the clock starts at the reload that turns its archive_command on.
It stops when no .ready file is left, i.e. when PostgreSQL has had exit 0
for every segment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    PG_SETTINGS,
    Background,
    BenchError,
    chown_postgres,
    du,
    pg_dir,
    pg_tool,
    pgbackrest_archive_command,
    pgbackrest_segments,
    pgbackrest_stanza,
    pitr_archive_command,
    pitr_argv,
    pitr_has,
    pitr_init,
    pitr_segments,
    ready_count,
    run,
    wait_for,
    wait_gone,
)
from tests.servers import PG_USER, PostgresCluster


@dataclass
class Backlog:
    cluster: PostgresCluster  # stopped, its pg_wal full of .ready segments
    segments: int
    build_seconds: float
    db_bytes: int


def build_backlog(scale: int, log: Callable[[str], None]) -> Backlog:
    cluster = PostgresCluster.create(archive_command="", settings=PG_SETTINGS)
    cluster.start()
    log(f"building the WAL backlog: pgbench -i -s {scale} (archive_command empty)")
    t0 = time.monotonic()
    run(
        [
            pg_tool("pgbench"),
            "-i",
            "-q",
            "-s",
            str(scale),
            "-h",
            os.fspath(cluster.socket_dir),
            "-p",
            str(cluster.port),
            "postgres",
        ],
        "pgbench -i",
        user=PG_USER,
        timeout=3600,
    )
    cluster.psql("SELECT pg_switch_wal()")
    cluster.psql("CHECKPOINT")
    build = time.monotonic() - t0
    db_bytes = int(cluster.psql("SELECT pg_database_size('postgres')"))
    cluster.stop()
    segments = ready_count(cluster.pgdata)
    if segments == 0:
        raise BenchError("the backlog is empty: PostgreSQL kept no .ready segment")
    log(f"backlog: {segments} segments ready ({build:.1f}s to build)")
    return Backlog(cluster, segments, build, db_bytes)


@dataclass
class Tool:
    key: str  # stable name in the JSON: pitr, pitr_daemon, pgbackrest, pgbackrest_async, cp
    name: str
    mode: str
    prepare: Callable[[PostgresCluster, Path], tuple[str, Callable[[], int], Path]]
    # prepare(cluster, workdir) -> (archive_command, count archived, repository dir)
    daemon: str = ""  # "at_t0": spawned at t0; "running": idle before t0, backlog appears at t0


def _pitr(cluster: PostgresCluster, base: Path) -> tuple[str, Callable[[], int], Path]:
    repo = base / "repo"
    config = pitr_init(cluster, base / "pitr.toml", repo)
    return pitr_archive_command(config), lambda: pitr_segments(repo), repo


def _pgbackrest(asynchronous: bool) -> Callable[..., tuple[str, Callable[[], int], Path]]:
    def prepare(cluster: PostgresCluster, base: Path) -> tuple[str, Callable[[], int], Path]:
        config = pgbackrest_stanza(cluster, base, archive_async=asynchronous)
        repo = base / "repo"
        return pgbackrest_archive_command(config), lambda: pgbackrest_segments(repo), repo

    return prepare


def _cp(cluster: PostgresCluster, base: Path) -> tuple[str, Callable[[], int], Path]:
    dest = base / "archive"
    dest.mkdir()
    chown_postgres(dest)
    # What PostgreSQL's documentation suggests, made durable: fsync the file
    # under a temporary name, rename, fsync the directory.
    command = (
        f"test ! -f {dest}/%f && cp %p {dest}/%f.tmp && sync {dest}/%f.tmp "
        f"&& mv {dest}/%f.tmp {dest}/%f && sync {dest}"
    )

    def count() -> int:
        return sum(1 for p in dest.iterdir() if not p.name.endswith(".tmp"))

    return command, count, dest


def tools(daemon_available: bool) -> list[Tool]:
    out = [Tool("pitr", "pitr wal-push", "no daemon: each call archives what waits", _pitr)]
    if daemon_available:
        out += [
            Tool(
                "pitr_daemon_running",
                "pitr wal-push",
                "pitr daemon already running, idle",
                _pitr,
                daemon="running",
            ),
            Tool(
                "pitr_daemon", "pitr wal-push", "pitr daemon started at t0", _pitr, daemon="at_t0"
            ),
        ]
    out += [
        Tool("pgbackrest", "pgbackrest archive-push", "archive-async=n, zst 3", _pgbackrest(False)),
        Tool(
            "pgbackrest_async",
            "pgbackrest archive-push",
            "archive-async=y, process-max=2, zst 3",
            _pgbackrest(True),
        ),
        Tool("cp", "cp + sync", "baseline: copy, fsync file, rename, fsync dir", _cp),
    ]
    return out


def drain_all(backlog: Backlog, log: Callable[[str], None], repeat: int = 1) -> dict[str, Any]:
    """Every tool `repeat` times, round-robin so that a noisy moment on the
    machine does not land on one tool only; each row reports the median."""
    daemon = pitr_has("daemon")
    chosen = tools(daemon)
    runs: list[list[dict[str, Any]]] = [[] for _ in chosen]
    for round_no in range(repeat):
        for i, tool in enumerate(chosen):
            if runs[i] and "error" in runs[i][-1]:
                continue  # failed once: do not spend time failing again
            what = f" (run {round_no + 1} of {repeat})" if repeat > 1 else ""
            log(f"drain: {tool.name}, {tool.mode}{what}")
            try:
                one = drain_one(backlog, tool)
            except BenchError as e:
                one = {"error": str(e)}
                log(f"  failed: {str(e).splitlines()[0]}")
            else:
                log(f"  {one['seconds']:.2f}s, {one['segments_per_s']:.1f} segments/s")
            runs[i].append(one)
    rows = [_summary(tool, done) for tool, done in zip(chosen, runs, strict=True)]
    notes = []
    if daemon:
        notes.append(
            "daemon rows: 'already running' starts the daemon before t0 with the backlog's "
            ".ready files hidden, and shows them at t0 as archive_command is turned on (the "
            "daemon as a service sees a burst of WAL); 'started at t0' spawns it at t0 and "
            "turns archive_command on once it listens (its Python start-up is inside the time)"
        )
    else:
        notes.append("pitr daemon is not built in this tree: its row is skipped")
    return {"segments": backlog.segments, "repeat": repeat, "rows": rows, "notes": notes}


def _summary(tool: Tool, runs: list[dict[str, Any]]) -> dict[str, Any]:
    head: dict[str, Any] = {"key": tool.key, "tool": tool.name, "mode": tool.mode}
    failed = [r for r in runs if "error" in r]
    if failed:
        return {**head, "error": failed[0]["error"]}
    runs.sort(key=lambda r: r["seconds"])
    median = runs[len(runs) // 2]
    return {**head, **median, "runs_seconds": sorted(r["seconds"] for r in runs)}


def drain_one(backlog: Backlog, tool: Tool) -> dict[str, Any]:
    base = pg_dir("drain-")
    copy = base / "data"
    daemon: Background | None = None
    cluster: PostgresCluster | None = None
    repo_dir: Path | None = None
    try:
        # cp -a keeps owners and modes; PostgreSQL wants 0700 on the top.
        subprocess.run(["cp", "-a", os.fspath(backlog.cluster.pgdata), os.fspath(copy)], check=True)
        cluster = PostgresCluster.from_pgdata(copy, archive_command="", settings=PG_SETTINGS)
        cluster.start()
        command, count, repo_dir = tool.prepare(cluster, base)
        segments = ready_count(copy)
        with cluster.connect() as conn:
            conn.execute(f"ALTER SYSTEM SET archive_command = {_literal(command)}")
            hidden = _hide_backlog(copy) if tool.daemon == "running" else []
            if tool.daemon == "running":
                daemon = _start_daemon(base)
            t0 = time.monotonic()
            for ready in hidden:
                ready.rename(ready.with_suffix(".ready"))
            if tool.daemon == "at_t0":
                daemon = _start_daemon(base)
            conn.execute("SELECT pg_reload_conf()")
            seconds = _wait_drained(cluster, conn, copy, t0, timeout=120 + 10 * segments)
            failed = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0]
        if daemon is not None and not daemon.alive():
            raise BenchError(f"pitr daemon exited during the drain:\n{daemon.output()[-2000:]}")
        shim_rss = _wal_push_peak_rss(base / "pitr.toml", backlog) if daemon else None
        archived = count()
        if archived < segments:
            raise BenchError(
                f"only {archived} of {segments} segments are in the repository after the drain"
            )
        return {
            "segments": segments,
            "seconds": round(seconds, 3),
            "segments_per_s": round(segments / seconds, 2),
            "stored_bytes": du(repo_dir),
            "failed_attempts": int(failed),
            "verified_in_repository": archived,
            **({"wal_push_peak_rss_mib": shim_rss} if shim_rss is not None else {}),
        }
    finally:
        if daemon is not None:
            daemon.stop()
        if cluster is not None:
            cluster.cleanup()
        # pgBackRest's async archiver detaches; wait for it before removing its dirs.
        wait_gone(os.fspath(base), timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def _wal_push_peak_rss(config: Path, backlog: Backlog) -> float:
    """Peak memory (MiB) of one `pitr wal-push` answered by the running daemon:
    the process PostgreSQL starts for every segment."""
    segment = min(p for p in (backlog.cluster.pgdata / "pg_wal").iterdir() if len(p.name) == 24)
    probe = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], check=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    argv = ["runuser", "-u", PG_USER, "--", *pitr_argv(config, "wal-push", os.fspath(segment))]
    out = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True
    )
    return round(int(out.stdout.strip()) / 1024, 1)


def _hide_backlog(pgdata: Path) -> list[Path]:
    """Rename the .ready files so that a daemon started now finds nothing;
    PostgreSQL (archiving off, no checkpoint in between) does not notice."""
    hidden = []
    for ready in sorted((pgdata / "pg_wal" / "archive_status").glob("*.ready")):
        hidden.append(ready.rename(ready.with_suffix(".hidden")))
    return hidden


def _start_daemon(base: Path) -> Background:
    daemon = Background(pitr_argv(base / "pitr.toml", "daemon"), base / "daemon.log", user=PG_USER)
    _wait_listening(daemon)
    return daemon


def _wait_listening(daemon: Background) -> None:
    def listening() -> bool:
        if not daemon.alive():
            raise BenchError(f"pitr daemon exited at start:\n{daemon.output()[-2000:]}")
        return "listening on" in daemon.output()

    wait_for(listening, 60, "pitr daemon to listen on its socket", interval=0.01)


def _wait_drained(
    cluster: PostgresCluster, conn: Any, pgdata: Path, t0: float, timeout: float
) -> float:
    next_check = t0 + 1.0
    while ready_count(pgdata) > 0:
        now = time.monotonic()
        if now - t0 > timeout:
            raise BenchError(
                f"the drain did not finish within {timeout:g}s "
                f"({ready_count(pgdata)} segments left); log:\n{cluster.log_tail(15)}"
            )
        if now >= next_check:
            next_check = now + 1.0
            row = conn.execute("SELECT failed_count, last_failed_wal FROM pg_stat_archiver")
            failed, wal = row.fetchone()
            if failed:
                raise BenchError(f"archive_command failed for {wal}; log:\n{cluster.log_tail(15)}")
        time.sleep(0.01)
    return time.monotonic() - t0


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
