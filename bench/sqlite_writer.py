"""The SQLite benchmark's measuring side (bench/sqlite_capture.py): the
writer that runs in its own process (`python -m bench.sqlite_writer DB OUT`)
and stamps each commit, the inotify watch that stamps each archived file,
and the figures made of the two."""

from __future__ import annotations

import argparse
import array
import ctypes
import ctypes.util
import json
import os
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
LITESTREAM = VENV_BIN / "litestream"
SOURCE = "app"
DB_NAME = "app.db"
PAYLOAD = 200
RATE = 100.0
MIB = 1 << 20

Log = Callable[[str], None]


# -- the writer (its own process) ----------------------------------------------


def writer_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench.sqlite_writer")
    p.add_argument("db")
    p.add_argument("out", help="file for the commit instants (int64 ns, native order)")
    p.add_argument("--seconds", type=float, default=0.0)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--rate", type=float, default=0.0, help="tx/s; 0: as fast as it can")
    a = p.parse_args(argv)
    conn = sqlite3.connect(a.db, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA journal_mode=WAL")
    stamps = array.array("q")
    insert = "INSERT INTO t(v) VALUES (?)"
    t0 = time.monotonic()
    deadline = t0 + a.seconds if a.seconds > 0 else float("inf")
    limit = a.count if a.count > 0 else sys.maxsize
    n = 0
    while n < limit:
        if a.rate > 0:
            due = t0 + n / a.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        if time.monotonic() >= deadline:
            break
        conn.execute(insert, (os.urandom(PAYLOAD),))
        stamps.append(time.time_ns())
        n += 1
    elapsed = time.monotonic() - t0
    conn.close()
    with open(a.out, "wb") as f:
        stamps.tofile(f)
    print(json.dumps({"commits": n, "seconds": elapsed}), flush=True)
    return 0


@dataclass
class Written:
    commits: int
    seconds: float
    stamps: list[int]  # ns, wall clock, one per commit in commit order

    @property
    def per_s(self) -> float:
        return self.commits / self.seconds if self.seconds else 0.0


def run_writer(
    db: Path, out: Path, *, seconds: float = 0, count: int = 0, rate: float = 0
) -> Written:
    argv = [sys.executable, "-m", "bench.sqlite_writer", str(db), str(out)]
    argv += ["--seconds", str(seconds), "--count", str(count), "--rate", str(rate)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"writer exit {proc.returncode}: {proc.stderr[-2000:]}")
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    stamps = array.array("q")
    with open(out, "rb") as f:
        stamps.frombytes(f.read())
    out.unlink()
    return Written(int(facts["commits"]), float(facts["seconds"]), stamps.tolist())


# -- inotify -------------------------------------------------------------------

IN_CLOSE_WRITE = 0x08
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
EVENT = struct.Struct("iIII")


class Arrivals:
    """time.time_ns() of the first CREATE / CLOSE_WRITE / MOVED_TO of each
    name in one directory, read by a thread blocked on an inotify descriptor."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = libc.inotify_init1(0)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
        if libc.inotify_add_watch(self.fd, os.fsencode(directory), mask) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")
        self.seen: dict[str, dict[int, int]] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                buf = os.read(self.fd, 65536)
            except OSError:
                return
            now = time.time_ns()
            at = 0
            while at + EVENT.size <= len(buf):
                _wd, mask, _cookie, size = EVENT.unpack_from(buf, at)
                name = buf[at + EVENT.size : at + EVENT.size + size].rstrip(b"\0").decode()
                at += EVENT.size + size
                kinds = self.seen.setdefault(name, {})
                for bit in (IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE):
                    if mask & bit and bit not in kinds:
                        kinds[bit] = now

    def first(self, name: str, *bits: int) -> int | None:
        kinds = self.seen.get(name, {})
        times = [kinds[b] for b in bits if b in kinds]
        return min(times) if times else None

    def close(self) -> None:
        self._stop = True
        os.close(self.fd)  # the reader's next read fails; it is a daemon thread anyway


# -- figures -------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def latency_figures(latencies_ms: list[float], missing: int) -> dict[str, Any]:
    return {
        "p50_ms": round(percentile(latencies_ms, 50), 1),
        "p99_ms": round(percentile(latencies_ms, 99), 1),
        "max_ms": round(max(latencies_ms), 1) if latencies_ms else None,
        "commits_measured": len(latencies_ms),
        "commits_never_archived": missing,
    }


def by_count(stamps: list[int], groups: list[tuple[int, int]]) -> tuple[list[float], int]:
    """groups: (commits, arrival ns) in commit order. Latency of each stamp in ms."""
    out: list[float] = []
    i = 0
    for commits, arrival in groups:
        for _ in range(commits):
            if i >= len(stamps):
                break
            out.append((arrival - stamps[i]) / 1e6)
            i += 1
    return out, len(stamps) - i


def by_seen(stamps: list[int], groups: list[tuple[int, int]]) -> tuple[list[float], int]:
    """groups: (seen ns, arrival ns), seen non-decreasing: each stamp goes to
    the first group seen at or after it."""
    out: list[float] = []
    g = 0
    missing = 0
    for t in stamps:
        while g < len(groups) and groups[g][0] < t:
            g += 1
        if g == len(groups):
            missing += 1
            continue
        out.append((groups[g][1] - t) / 1e6)
    return out, missing


def vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# -- databases -----------------------------------------------------------------


def create_db(path: Path, fill_mib: int = 0) -> None:
    """Table t for the writer, table mark for warm-up commits, and fill_mib MiB
    of random 4000-byte blobs, built without a WAL and then put in WAL mode."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    conn.execute("CREATE TABLE mark(id INTEGER PRIMARY KEY, at INTEGER)")
    conn.execute("CREATE TABLE fill(id INTEGER PRIMARY KEY, v BLOB)")
    rows = fill_mib * MIB // 4096
    step = 10000
    for first in range(0, rows, step):
        n = min(step, rows - first)
        conn.execute("BEGIN")
        conn.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
            "INSERT INTO fill(v) SELECT randomblob(4000) FROM c",
            (n,),
        )
        conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


def mark(db: Path) -> None:
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("INSERT INTO mark(at) VALUES (?)", (time.time_ns(),))
    conn.close()


def rows(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        count, top = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM t").fetchone()
    finally:
        conn.close()
    return int(count), int(top)


if __name__ == "__main__":
    sys.exit(writer_main(sys.argv[1:]))
