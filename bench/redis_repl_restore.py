"""The restore half of bench.redis_repl: the pitr configuration the capture
and the restore share, `pitr restore` timed with its peak memory, the
servers' digests, and the text report's section."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import BenchError
from pitr.config import RepositoryConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
# Goals of the issue: the capture keeps up with the writer, and is not far behind it.
RATIO_GOAL = 0.9
LAG_GOAL_MS = 1000
MILLION = 1_000_000


def write_config(workdir: Path, url: str) -> tuple[Path, RepositoryConfig]:
    """The TOML of tests/redissupport.py's form, and the repository as pitr
    reads it from there (a local one keeps its catalog at <repo>/catalog.db),
    so that the capture writes where the restore will look."""
    path = workdir / "pitr.toml"
    path.write_text(
        f'[repository]\nurl = "{workdir / "repo"}"\n\n'
        f'[sources.bench]\nkind = "redis"\nurl = "{url}"\nkeys = ["*"]\nstreams = []\n'
        'capture = "replication"\n'
    )
    return path, load_config(str(path), env={}).repository


def digest(client: Any) -> str:
    value = client.execute_command("DEBUG", "DIGEST")
    return value.decode() if isinstance(value, bytes) else str(value)


def _status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _children(pid: int) -> list[int]:
    """pid's children, by the kernel's per-thread lists (cheaper than a scan of /proc)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            continue
    return out


class PeakSampler(threading.Thread):
    """The high-water marks (VmHWM) of pitr and of its children (the scratch
    redis-server of the replay), read from /proc every 50 ms while pitr runs.
    wait4's ru_maxrss is the larger of pitr's own and its reaped children's,
    not their sum: this tells them apart."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.own_kib = 0
        self.children_kib: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.own_kib = max(self.own_kib, _status_kib(self.pid, "VmHWM") or 0)
            for child in set(self.children_kib) | set(_children(self.pid)):
                kib = _status_kib(child, "VmHWM")
                if kib is not None:
                    self.children_kib[child] = max(self.children_kib.get(child, 0), kib)
            self.done.wait(0.05)


def restore(config: Path, target: datetime, url: str, workdir: Path) -> dict[str, Any]:
    """`pitr restore` of the source to target into url, from the tree this
    benchmark runs from (the same code as the capture)."""
    argv = [sys.executable, "-m", "pitr", "--config", str(config), "restore"]
    argv += ["--source", "bench", "--to", target.isoformat(), "--redis-url", url]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    out_path = workdir / "restore.log"
    with open(out_path, "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        sampler = PeakSampler(proc.pid)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            sampler.done.set()
        seconds = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # so that Popen does not wait again
    sampler.join()
    text = out_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"pitr restore exited {proc.returncode}:\n{text[-2000:]}")
    replayed = re.search(r"after replaying (\d+) writes", text)
    children = sampler.children_kib.values()
    return {
        "restore_seconds": round(seconds, 3),
        "replayed_writes": int(replayed.group(1)) if replayed else None,
        # ru_maxrss is KiB on Linux.
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "pitr_peak_rss_mib": round(sampler.own_kib / 1024, 1),
        "scratch_peak_rss_mib": round(max(children, default=0) / 1024, 1) if children else None,
    }


def _goal(met: bool) -> str:
    return "met" if met else "not met"


def repl_section(result: dict[str, Any]) -> list[str]:
    """The text report's part (bench.report.render): every run, then the goals."""
    from bench.report import _table

    runs = result["runs"]
    out = [
        "Redis replication capture and restore: redis-benchmark -t "
        f"{result['tests']} -n {result['requests']} -P {result['pipeline']} -r 100000 on "
        f"top of a base of {result['base_keys']:,} keys ({result['base_value_bytes']} B), "
        "captured in the benchmark's process; then `pitr restore` into an empty redis-server",
    ]
    out += _table(
        ["run", "captured", "writer/s", "durable/s", "ratio", "lag ms"]
        + ["restore s", "restored/s", "peak RSS MiB", "scratch MiB", "keys", "digest"],
        [
            [
                r["run"],
                r["commands"],
                r["writer_per_s"],
                r["durable_per_s"],
                f"{r['ratio']:.2f}",
                r["lag_ms"],
                r["restore_seconds"],
                r["restored_writes_per_s"],
                r["peak_rss_mib"],
                r["scratch_peak_rss_mib"],
                f"{r['target_keys']}/{r['source_keys']}",
                "equal" if r["digest_equal"] else "DIFFERS",
            ]
            for r in runs
        ],
        {1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
    )
    out.append(
        "peak RSS: ru_maxrss of `pitr restore` from wait4; Linux gives the larger of the "
        "process's own peak and its reaped children's, so it is pitr's own unless the scratch "
        "figure is as large. scratch: VmHWM of pitr's scratch redis-server (a process of its "
        "own), sampled every 50 ms. restore s: from starting pitr to its exit (base and replay)"
    )
    worst_ratio = min(r["ratio"] for r in runs)
    worst_lag = max(r["lag_ms"] for r in runs)
    writes = min(r["commands"] for r in runs)
    rate = statistics.median(r["restored_writes_per_s"] for r in runs)
    rss = max(r["peak_rss_mib"] for r in runs)
    out += _table(
        ["goal", "worst run", "target", "status"],
        [
            [
                "capture rate vs the writer's",
                f"{worst_ratio:.2f}x",
                f">= {RATIO_GOAL}x",
                _goal(worst_ratio >= RATIO_GOAL),
            ],
            ["lag when the writer stopped", f"{worst_lag:g} ms", "< 1 s", _goal(worst_lag < 1000)],
            [
                "restore of 1M captured writes",
                f"{writes:,} writes, median {rate:,.0f}/s, peak {rss:g} MiB",
                ">= 1,000,000 writes",
                "measured" if writes >= MILLION else "too few writes (a small run)",
            ],
        ],
        set(),
    )
    out.append("")
    return out
