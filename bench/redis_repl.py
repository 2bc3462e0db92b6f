"""The Redis replication capture under redis-benchmark, and the restore of
what it captured.

    python -m bench.run --only redis-repl [--repeat 3] [--redis-repl-requests 350000]
    python -m bench.redis_repl [--requests N] [--pipeline P] [--repeat R]

Each run: a source redis-server preloaded with a base (DEBUG POPULATE), the
ReplicationCapture in this process into a local repository, redis-benchmark
writing SET, INCR and HSET; the writer's rate, the rate at which the writes
became durable in the archive (the capture's stored offset reaching the
server's master_repl_offset) and the lag when the writer stopped. Then
`pitr restore` of the source, as it was once the capture was durable, into
an empty redis-server, timed with its peak memory, and the two servers'
DEBUG DIGEST compared (bench/redis_repl_restore.py).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from archiver.redis.replication import ReplicationCapture
from bench.common import BenchError
from catalog.repository import Repository
from tests.harness import free_port

TESTS = "set,incr,hset"
BASE_KEYS = 100_000  # DEBUG POPULATE: the base the writes land on top of
BASE_VALUE_BYTES = 100
DEFAULT_REQUESTS = 350_000  # per test: 3 x 350,000 = 1.05 million captured writes
DEFAULT_PIPELINE = 32


@contextmanager
def redis_server(workdir: Path, name: str) -> Iterator[tuple[int, Any]]:
    """A loopback redis-server with no persistence that answers DEBUG
    (DIGEST, POPULATE) from loopback clients; (port, client)."""
    port = free_port()
    (workdir / name).mkdir()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--enable-debug-command", "local"]
    argv += ["--dir", str(workdir / name), "--logfile", str(workdir / name / "redis.log")]
    # Without a delay the capture's full sync starts at once.
    argv += ["--repl-diskless-sync-delay", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=120)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"redis-server {name} on port {port} did not start") from None
                time.sleep(0.05)
        yield port, client
    finally:
        client.close()
        proc.kill()
        proc.wait(30)


def measure(
    client: Any, port: int, capture: ReplicationCapture, requests: int, pipeline: int
) -> tuple[datetime, dict[str, Any]]:
    """redis-benchmark against the source while the capture runs; the
    figures once the capture has stored everything the writer wrote."""
    t0 = time.monotonic()
    subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", TESTS, "-n", str(requests)]
        + ["-P", str(pipeline), "-r", "100000", "-q"],
        check=True,
        capture_output=True,
    )
    t1 = time.monotonic()
    goal = int(client.info("replication")["master_repl_offset"])
    while capture.durable < goal:
        if time.monotonic() - t1 > 300:
            raise BenchError(f"the capture stored {capture.durable} of {goal} bytes in 300 s")
        time.sleep(0.001)
    t2 = time.monotonic()
    durable_at = datetime.now(UTC)
    commands = requests * len(TESTS.split(","))
    return durable_at, {
        "commands": commands,
        "writer_per_s": round(commands / (t1 - t0)),
        "durable_per_s": round(commands / (t2 - t0)),
        "ratio": round((t1 - t0) / (t2 - t0), 3),
        "lag_ms": round((t2 - t1) * 1000, 1),
        "bytes": goal,
        "batches": capture.stats.batches,
    }


def one_run(
    requests: int, pipeline: int, workdir: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    from bench.redis_repl_restore import digest, restore, write_config

    with redis_server(workdir, "source") as (port, client):
        client.execute_command("DEBUG", "POPULATE", BASE_KEYS, "base:", BASE_VALUE_BYTES)
        url = f"redis://127.0.0.1:{port}/0"
        config, rc = write_config(workdir, url)
        repo, _ = Repository.init(rc.url, rc.catalog)
        capture = ReplicationCapture(repo, "bench", url)
        stop = threading.Event()
        failed: list[BaseException] = []

        def follow() -> None:
            try:
                capture.run(stop)
            except BaseException as e:  # reported by the waits below
                failed.append(e)

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 120
            while not capture.epoch:  # the base is stored
                if failed or time.monotonic() > deadline:
                    raise BenchError(f"the capture stored no base: {failed or 'timeout'}")
                time.sleep(0.01)
            log(f"redis-repl: redis-benchmark -t {TESTS} -n {requests} -P {pipeline}, captured")
            durable_at, row = measure(client, port, capture, requests, pipeline)
        finally:
            stop.set()
            thread.join(60)
            repo.close()
        if failed:
            raise BenchError(f"the capture failed: {failed[0]}")
        # The batches are stamped with their arrival: a moment later covers all of them.
        time.sleep(0.01)
        target = datetime.now(UTC)
        row["lag_to_target_ms"] = round((target - durable_at).total_seconds() * 1000, 1)
        row["source_keys"] = int(client.dbsize())
        row["source_digest"] = digest(client)
        with redis_server(workdir, "target") as (tport, target_client):
            log(f"redis-repl: pitr restore of {row['commands']} writes to {target.isoformat()}")
            row.update(restore(config, target, f"redis://127.0.0.1:{tport}/0", workdir))
            row["target_keys"] = int(target_client.dbsize())
            row["target_digest"] = digest(target_client)
    row["digest_equal"] = row["source_digest"] == row["target_digest"]
    row["restored_writes_per_s"] = round(row["commands"] / row["restore_seconds"])
    return row


def repl_benchmark(
    requests: int, pipeline: int, repeat: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """repeat runs of capture then restore, each on fresh servers and a fresh
    repository; every run is kept."""
    runs = []
    for i in range(1, repeat + 1):
        workdir = Path(tempfile.mkdtemp(prefix="pitr-bench-repl-"))
        try:
            row = one_run(requests, pipeline, workdir, log)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        row["run"] = i
        log(
            f"redis-repl run {i}: writer {row['writer_per_s']:,}/s, durable "
            f"{row['durable_per_s']:,}/s, lag {row['lag_ms']:.0f} ms; restore "
            f"{row['restore_seconds']:.1f} s, digest "
            + ("equal" if row["digest_equal"] else "DIFFERS")
        )
        runs.append(row)
    return {
        "tests": TESTS,
        "requests": requests,
        "pipeline": pipeline,
        "base_keys": BASE_KEYS,
        "base_value_bytes": BASE_VALUE_BYTES,
        "runs": runs,
    }


def digest_errors(result: dict[str, Any] | None) -> list[str]:
    """A run whose restored server differs from the source (for results["errors"])."""
    out = []
    for r in (result or {}).get("runs", []):
        if not r["digest_equal"] or r["source_keys"] != r["target_keys"]:
            out.append(
                f"redis-repl run {r['run']}: the restored server differs from the source "
                f"(digest {r['target_digest']} vs {r['source_digest']}, "
                f"{r['target_keys']} keys vs {r['source_keys']})"
            )
    return out


def main() -> None:
    from bench.redis_repl_restore import repl_section

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="per test")
    parser.add_argument("--pipeline", type=int, default=DEFAULT_PIPELINE)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    result = repl_benchmark(args.requests, args.pipeline, args.repeat, log)
    print("\n".join(repl_section(result)))
    errors = digest_errors(result)
    for e in errors:
        print(f"error: {e}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
