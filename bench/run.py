"""pitr side by side with pgBackRest on one machine, one data set, one run.

    python -m bench.run [--scale 50] [--repeat 3] [--redis-seconds 10] [--only wal,backup,redis]
    python -m bench.run --only sqlite [--sqlite-seconds 10] [--sqlite-db-mib 1024]
    python -m bench.run --only stream [--stream-seconds 10] [--stream-commits 500]
    python -m bench.run --only redis-repl [--redis-repl-requests 350000]

Run from the repository root as root (PostgreSQL runs as the postgres OS
user); scripts/bench.sh prepares the machine first. Prints a table and
writes the same figures as JSON (bench/results/latest.json by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("wal", "backup", "redis", "sqlite", "stream", "redis-repl")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n")[0])
    p.add_argument(
        "--scale",
        type=int,
        default=50,
        help="pgbench scale of the database (50: ~40 WAL segments; 150 as in issue 6: ~116)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="drain and restore runs per tool (the median is reported)",
    )
    p.add_argument(
        "--transactions",
        type=int,
        default=2000,
        help="pgbench transactions per client (2 clients) between the backups and the "
        "restore target: WAL both restores replay",
    )
    p.add_argument("--redis-seconds", type=float, default=10.0, help="how long the writer writes")
    p.add_argument("--redis-batch", type=int, default=1000, help="XADD per pipeline round trip")
    p.add_argument(
        "--redis-tail-batch",
        type=int,
        default=0,
        help="--batch-count of the pitr tail runs (0: the tailer's default)",
    )
    p.add_argument(
        "--redis-repl-requests",
        type=int,
        default=350_000,
        help="redis-benchmark requests per test (3 tests) of each redis-repl run",
    )
    p.add_argument(
        "--sqlite-seconds", type=float, default=10.0, help="how long each SQLite writer run writes"
    )
    p.add_argument(
        "--sqlite-db-mib",
        type=int,
        default=1024,
        help="size of the SQLite database the restores start from (MiB)",
    )
    p.add_argument(
        "--sqlite-commits",
        type=int,
        default=100_000,
        help="commits archived on top of its base copy before the SQLite restores (0: none)",
    )
    p.add_argument(
        "--sqlite-parts",
        default="latency,restore",
        help="parts of the sqlite phase: latency (with throughput), restore (with memory)",
    )
    p.add_argument(
        "--stream-seconds", type=float, default=10.0, help="pgbench load of each stream run (s)"
    )
    p.add_argument(
        "--stream-commits",
        type=int,
        default=500,
        help="single-row commits timed per mode in each stream run",
    )
    p.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"comma-separated phases to run, of {', '.join(PHASES)}",
    )
    p.add_argument(
        "--output", default=str(ROOT / "bench" / "results" / "latest.json"), help="JSON file"
    )
    p.add_argument("--workdir", default="/tmp", help="where the temporary directories go")
    args = p.parse_args(argv)
    if args.scale < 1 or args.repeat < 1 or args.transactions < 0 or args.redis_batch < 1:
        p.error("--scale, --repeat and --redis-batch must be at least 1, --transactions 0 or more")
    if args.redis_tail_batch < 0 or args.redis_repl_requests < 1:
        p.error("--redis-tail-batch must be 0 or more, --redis-repl-requests at least 1")
    if args.redis_seconds <= 0 or args.sqlite_seconds <= 0:
        p.error("--redis-seconds and --sqlite-seconds must be positive")
    if args.stream_seconds <= 0 or args.stream_commits < 1:
        p.error("--stream-seconds must be positive and --stream-commits at least 1")
    if args.sqlite_db_mib < 0 or args.sqlite_commits < 0:
        p.error("--sqlite-db-mib and --sqlite-commits must be 0 or more")
    args.phases = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phase {sorted(unknown)[0]!r} (known: {', '.join(PHASES)})")
    return args


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def machine_facts() -> dict[str, Any]:
    from tests.servers import PG_BIN, PITR_BIN

    mem_kib = 0
    cpu = platform.processor() or "unknown"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = _first_line(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "kernel": platform.release(),
        "postgres": _first_line([str(PG_BIN / "postgres"), "--version"]).replace(
            "postgres (PostgreSQL)", "PostgreSQL"
        ),
        "pgbackrest": _first_line(["pgbackrest", "version"]),
        "redis": " ".join(_first_line(["redis-server", "--version"]).split()[:3]),
        "litestream": "Litestream " + _first_line([str(PITR_BIN.parent / "litestream"), "version"]),
        "pitr": _first_line([str(PITR_BIN), "--version"]).split()[-1],
        "commit": commit,
        "python": platform.python_version(),
        "loadavg_start": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


def _on_signal(signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench: run as root (PostgreSQL is started as the postgres user)", file=sys.stderr)
        return 2
    root = _prepare(args.workdir)

    from bench.common import Background

    run = Run(_new_results(args))
    try:
        _run_phases(run, args)
    except KeyboardInterrupt:
        log("interrupted: stopping servers and removing temporary files")
        _cleanup(root, Background)
        return 130
    finally:
        if run.backlog is not None:
            run.backlog.cluster.cleanup()
    _cleanup(root, Background)
    _write_results(run.results, Path(args.output))
    return 1 if run.results["errors"] else 0


@dataclass
class Run:
    results: dict[str, Any]
    backlog: Any = None  # bench.drain's backlog once built: its cluster is cleaned up last


def _prepare(workdir: str | None) -> Path:
    """Work from the repository root in a new temporary directory, and turn
    the signals that end a run into KeyboardInterrupt."""
    os.chdir(ROOT)
    root = Path(tempfile.mkdtemp(prefix="pitr-bench-", dir=workdir))
    root.chmod(0o755)
    # tests.servers puts every server and directory under PITR_TEST_BASE.
    os.environ["PITR_TEST_BASE"] = str(root)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    # Also when started from a shell that ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return root


def _new_results(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "facts": machine_facts(),
        "settings": {
            "scale": args.scale,
            "repeat": args.repeat,
            "transactions": args.transactions,
            "phases": args.phases,
            "redis_seconds": args.redis_seconds,
            "redis_batch": args.redis_batch,
            "redis_tail_batch": args.redis_tail_batch,
            "redis_repl_requests": args.redis_repl_requests,
            "sqlite_seconds": args.sqlite_seconds,
            "sqlite_db_mib": args.sqlite_db_mib,
            "sqlite_commits": args.sqlite_commits,
            "stream_seconds": args.stream_seconds,
            "stream_commits": args.stream_commits,
        },
        "errors": [],
        "notes": [],
    }


def _run_phases(run: Run, args: argparse.Namespace) -> None:
    results = run.results
    if "wal" in args.phases or "backup" in args.phases:
        run.backlog = _phase(results, "backlog", lambda: _backlog(args.scale))
    backlog = run.backlog
    if backlog is not None and "wal" in args.phases:
        _wal_drain_phase(results, backlog, args.repeat)
    if backlog is not None and "backup" in args.phases:
        from bench.pgcycle import backup_and_restore

        results["postgres"] = _phase(
            results,
            "backup and restore",
            lambda: backup_and_restore(
                backlog,
                args.scale,
                args.transactions,
                Path(args.output).parent / "logs",
                log,
                args.repeat,
            ),
        )
    if "redis" in args.phases:
        from bench.redis_tail import redis_phase

        redis_phase(results, args, _phase, log)
    if "sqlite" in args.phases:
        _sqlite_phase(results, args)
    if "stream" in args.phases:
        from bench.stream import stream_benchmark

        results["stream"] = _phase(
            results,
            "stream",
            lambda: stream_benchmark(args.stream_seconds, args.stream_commits, args.repeat, log),
        )
    if "redis-repl" in args.phases:
        from bench.redis_repl import DEFAULT_PIPELINE, digest_errors, repl_benchmark

        results["redis_repl"] = _phase(
            results,
            "redis-repl",
            lambda: repl_benchmark(args.redis_repl_requests, DEFAULT_PIPELINE, args.repeat, log),
        )
        results["errors"] += digest_errors(results["redis_repl"])


def _wal_drain_phase(results: dict[str, Any], backlog: Any, repeat: int) -> None:
    from bench.drain import drain_all

    drain = _phase(results, "wal drain", lambda: drain_all(backlog, log, repeat))
    if drain is None:
        return
    drain["build_seconds"] = round(backlog.build_seconds, 1)
    drain["db_bytes"] = backlog.db_bytes
    for row in drain["rows"]:
        if "error" in row:
            what = f"drain {row['tool']} ({row['mode']})"
            results["errors"].append(f"{what}: {row['error']}")
    results["wal_drain"] = drain


def _sqlite_phase(results: dict[str, Any], args: argparse.Namespace) -> None:
    from bench.sqlite_capture import sqlite_benchmark

    results["sqlite"] = _phase(
        results,
        "sqlite",
        lambda: sqlite_benchmark(
            args.sqlite_seconds,
            args.sqlite_db_mib,
            args.sqlite_commits,
            args.repeat,
            log,
            tuple(x.strip() for x in args.sqlite_parts.split(",") if x.strip()),
        ),
    )
    for row in (results["sqlite"] or {}).get("sessions", []):
        if row.get("lost"):
            results["errors"].append(
                f"sqlite {row['tool']} {row['mode']} run {row['run']}: {row['lost']} of "
                f"{row['commits']} commits never archived"
            )
    if (results["sqlite"] or {}).get("restore_error"):
        results["errors"].append(f"sqlite restore: {results['sqlite']['restore_error']}")
    for row in ((results["sqlite"] or {}).get("restore") or {}).get("tools", []):
        if row.get("error"):
            results["errors"].append(f"sqlite restore {row['tool']}: {row['error']}")
        elif row.get("rows_restored") != row.get("rows_in_source"):
            results["errors"].append(
                f"sqlite restore {row['tool']}: {row.get('rows_restored')} rows restored, "
                f"{row.get('rows_in_source')} in the source"
            )


def _write_results(results: dict[str, Any], out: Path) -> None:
    """Print the report and write it as JSON and text beside each other."""
    from bench import report

    results["facts"]["loadavg_end"] = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    results = {k: v for k, v in results.items() if v is not None}
    report.add_ratios(results)
    text = report.render(results)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".txt").write_text(text)
    log(f"wrote {out}")


def _backlog(scale: int) -> Any:
    from bench.drain import build_backlog

    return build_backlog(scale, log)


def _phase(results: dict[str, Any], name: str, fn: Any) -> Any:
    """Run one phase; a failure is recorded and the next phase still runs."""
    t0 = time.monotonic()
    try:
        value = fn()
    except KeyboardInterrupt:
        raise
    except Exception as e:
        log(f"{name} failed: {e}")
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()
        results["errors"].append(f"{name}: {e}")
        return None
    log(f"{name}: done in {time.monotonic() - t0:.0f}s")
    return value


def _cleanup(root: Path, background: Any) -> None:
    from bench.common import wait_gone
    from tests import harness

    background.stop_all()
    for server in list(harness._live):
        try:
            server.cleanup()
        except Exception as e:  # keep cleaning the others
            log(f"cleanup of {server!r}: {e}")
    # Anything still running from our directory (pgBackRest's detached async
    # archiver, a command cut short) is ours: end it by pid.
    wait_gone(str(root), timeout=10)
    harness.remove_base_dir()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
