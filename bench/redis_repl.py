"""The replication capture under redis-benchmark: the writer's rate, the
rate at which the capture makes the writes durable, and its lag when the
writer stops. Not yet a phase of bench.run: run it alone,

    /opt/pitr/venv/bin/python -m bench.redis_repl [--requests N] [--pipeline P]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import redis

from archiver.redis.replication import ReplicationCapture
from catalog.repository import Repository
from tests.harness import free_port

TESTS = "set,incr,hset"


def measure(requests: int, pipeline: int, workdir: Path) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    stop = threading.Event()
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        repo, _ = Repository.init((workdir / "repo").as_uri(), f"sqlite:///{workdir}/catalog.db")
        capture = ReplicationCapture(repo, "bench", f"redis://127.0.0.1:{port}/0")
        thread = threading.Thread(target=capture.run, args=(stop,))
        thread.start()
        while not capture.epoch:
            time.sleep(0.01)
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
            time.sleep(0.001)
        t2 = time.monotonic()
        commands = requests * len(TESTS.split(","))
        return {
            "commands": commands,
            "writer_per_s": commands / (t1 - t0),
            "durable_per_s": commands / (t2 - t0),
            "ratio": (t1 - t0) / (t2 - t0),
            "lag_ms": (t2 - t1) * 1000,
            "bytes": goal,
            "batches": capture.stats.batches,
        }
    finally:
        stop.set()
        server.kill()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--pipeline", type=int, default=32)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pitr-bench-repl-"))
    try:
        r = measure(args.requests, args.pipeline, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"{r['commands']:.0f} commands ({TESTS}, -P {args.pipeline}): writer "
        f"{r['writer_per_s']:,.0f}/s, durable in the archive {r['durable_per_s']:,.0f}/s "
        f"(ratio {r['ratio']:.2f}), lag when the writer stopped {r['lag_ms']:.0f} ms, "
        f"{r['bytes']:,} bytes in {r['batches']} batches"
    )


if __name__ == "__main__":
    main()
