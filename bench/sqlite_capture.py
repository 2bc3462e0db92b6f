"""SQLite capture: `pitr tail` side by side with Litestream, same database
file layout, same writer process, one run.

A writer in its own process (`python -m bench.sqlite_capture writer ...`)
commits one INSERT of a 200-byte random blob per transaction, in WAL mode
with SQLite's default autocheckpoint and busy_timeout 5000, and writes the
wall-clock instant each commit returned (nanoseconds) to a file.

Latency, commit to archived. The instant a commit is archived is the
instant the file holding it appears in the archive, seen by inotify in this
process (no polling):

- pitr: the batch record `records/<source>/sqlite/<db>/<generation>/<gfirst>`
  (the store links it into place once it is durable, after the batch's frame
  object). The i-th commit after the warm-up lands in the batch whose
  cumulative `commits` first reaches i (catalog `sqlitedb_batches`, ordered
  by gfirst). If pitr archived fewer commits than were written, that count
  no longer lines up, and each commit is put in the first batch whose
  `last_seen` (the instant pitr read the WAL index) is at or after the
  commit's instant instead. The catalog's `archived_at` gives a second figure.
- Litestream: the L0 file `ltx/0/<min>-<max>.ltx` of its file replica
  (written under a temporary name and renamed, or closed after writing).
  After the session, `litestream restore -txid <max>` of each L0 file and
  `SELECT max(id)` says which commits it holds: commit i lands in the first
  L0 file whose restored max(id) >= i.

Throughput: commits per second of the same writer going as fast as it can,
with no archiver, with `pitr tail`, with `litestream replicate`.

Restore: a database of `db_mib` MiB of random blobs, each tool archiving
its own byte-for-byte copy from a fresh start (base copy / snapshot), then
`commits` commits of the writer on top, then each tool restores to the
newest instant into an empty file; the time runs until the command exits
(pitr always runs PRAGMA integrity_check; Litestream runs with
`-integrity-check full` so that both check). Both restored files must hold
every committed row. pitr's peak memory is VmHWM of its process, read just
before it is stopped.
"""

from __future__ import annotations

import argparse
import array
import ctypes
import ctypes.util
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import BenchError

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
    p = argparse.ArgumentParser(prog="bench.sqlite_capture writer")
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
    argv = [sys.executable, "-m", "bench.sqlite_capture", "writer", str(db), str(out)]
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


# -- the tools -----------------------------------------------------------------


class Tool:
    name = ""

    def __init__(self, base: Path, db: Path, log: Log) -> None:
        self.base = base
        self.db = db
        self.log = log
        self.proc: Any = None

    def start(self) -> None:
        """Start archiving db and return once a warm-up commit is archived."""

    def arrivals_dir(self) -> Path | None:
        return None

    def finish(self, written: Written, arrivals: Arrivals | None) -> dict[str, Any]:
        return {}

    def peak_rss_kib(self) -> int | None:
        return vm_hwm_kib(self.proc.proc.pid) if self.proc is not None else None

    def stop(self) -> None:
        if self.proc is not None:
            code = self.proc.stop(timeout=120)
            if code not in (0, -15, 130):
                self.log(f"{self.name} exited {code}: {self.proc.output()[-1500:]}")
            self.proc = None


class NoArchiver(Tool):
    name = "none"


class Pitr(Tool):
    name = "pitr"

    def __init__(self, base: Path, db: Path, log: Log) -> None:
        super().__init__(base, db, log)
        self.repo = base / "repo"
        self.config = base / "pitr.toml"
        self.config.write_text(
            f'[repository]\nurl = "file://{self.repo}"\n'
            f'catalog = "sqlite:///{base / "catalog.db"}"\n'
            f'\n[sources.{SOURCE}]\nkind = "sqlite"\npath = "{db}"\n'
        )
        self.c0 = 0

    def argv(self, *args: str) -> list[str]:
        from tests.servers import PITR_BIN

        return [os.fspath(PITR_BIN), "--config", os.fspath(self.config), *args]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.base / 'catalog.db'}?mode=ro", uri=True, timeout=30)
        try:
            return list(conn.execute(sql))
        finally:
            conn.close()

    def archived(self) -> int:
        return int(self.query("SELECT coalesce(sum(commits), 0) FROM sqlitedb_batches")[0][0])

    def start(self) -> None:
        from bench.common import Background, run, wait_for

        if not self.repo.exists():
            run(self.argv("init"), "pitr init")
        self.proc = Background(self.argv("tail", "--source", SOURCE), self.base / "tail.log")
        before = self.archived() if (self.base / "catalog.db").exists() else 0
        wait_for(
            lambda: self._alive() and (self.base / "repo" / "records" / SOURCE / "bases").exists(),
            600,
            "pitr tail's base copy",
            interval=0.1,
        )
        mark(self.db)
        wait_for(lambda: self._alive() and self.archived() > before, 60, "pitr: warm-up commit")
        self.c0 = self.archived()

    def _alive(self) -> bool:
        from bench.common import BenchError

        if not self.proc.alive():
            raise BenchError(f"pitr tail exited:\n{self.proc.output()[-2000:]}")
        return True

    def generation_dir(self) -> Path:
        gens = sorted((self.repo / "records" / SOURCE / "sqlite" / DB_NAME).iterdir())
        return gens[-1]

    def arrivals_dir(self) -> Path | None:
        return self.generation_dir()

    def catch_up(self, total: int, timeout: float = 600, stall: float = 5) -> int:
        """Wait until pitr has archived `total` commits, or has stopped
        archiving for `stall` s short of it; the commits archived."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            self._alive()
            now = self.archived()
            if now >= total:
                return now
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > stall:
                return now
            time.sleep(0.1)
        return self.archived()

    def finish(self, written: Written, arrivals: Arrivals | None) -> dict[str, Any]:
        archived = self.catch_up(self.c0 + written.commits)
        batches = self.query(
            "SELECT generation, gfirst, commits, last_seen, archived_at FROM sqlitedb_batches "
            "ORDER BY generation, gfirst"
        )
        gaps = int(self.query("SELECT count(*) FROM sqlitedb_gaps")[0][0])
        gen = self.generation_dir().name
        lost = self.c0 + written.commits - archived
        skip = self.c0
        by_record: list[tuple[int, int, int]] = []  # commits, seen ns, record ns
        by_row: list[tuple[int, int, int]] = []  # commits, seen ns, archived_at ns
        no_record = 0
        for generation, gfirst, commits, last_seen, archived_at in batches:
            take = commits
            if skip:
                drop = min(skip, commits)
                skip -= drop
                take -= drop
            if take <= 0:
                continue
            seen = _ns(last_seen)
            at = arrivals.first(f"{gfirst:012d}", IN_CREATE, IN_MOVED_TO) if arrivals else None
            if generation != gen or at is None:
                no_record += 1
                at = _ns(archived_at)
            by_record.append((take, seen, at))
            by_row.append((take, seen, _ns(archived_at)))
        figures: dict[str, Any] = {"archived": archived - self.c0, "lost": lost, "gaps": gaps}
        figures["batches"] = len(by_record)
        figures["batches_without_record_event"] = no_record
        if lost == 0:
            figures["mapping"] = "cumulative commits"
            lat, missing = by_count(written.stamps, [(c, a) for c, _, a in by_record])
            lat2, _ = by_count(written.stamps, [(c, a) for c, _, a in by_row])
        else:
            figures["mapping"] = "last_seen (commits were lost)"
            lat, missing = by_seen(written.stamps, [(s, a) for _, s, a in by_record])
            lat2, _ = by_seen(written.stamps, [(s, a) for _, s, a in by_row])
        figures.update(latency_figures(lat, missing))
        if lost == 0:  # commit -> pitr read the WAL index that holds it
            seen, _ = by_count(written.stamps, [(c, s) for c, s, _ in by_record])
            figures["seen_p50_ms"] = round(percentile(seen, 50), 1)
            figures["seen_p99_ms"] = round(percentile(seen, 99), 1)
        row = latency_figures(lat2, 0)
        figures["archived_at_p50_ms"] = row["p50_ms"]
        figures["archived_at_p99_ms"] = row["p99_ms"]
        figures["peak_rss_kib"] = self.peak_rss_kib()
        return figures

    def newest_seen(self) -> str:
        top = self.query("SELECT max(last_seen) FROM sqlitedb_batches")[0][0]
        return _iso(_ns(top))

    def restore(self, out: Path, target: str) -> None:
        from bench.common import run

        run(
            self.argv("restore", "--source", SOURCE, "--to", target, "--into", str(out)),
            "pitr restore",
            timeout=3600,
        )


class Litestream(Tool):
    name = "litestream"

    def __init__(self, base: Path, db: Path, log: Log) -> None:
        super().__init__(base, db, log)
        self.replica = base / "replica"
        self.config = base / "litestream.yml"
        self.config.write_text(
            f"dbs:\n  - path: {db}\n    replica:\n      type: file\n      path: {self.replica}\n"
        )
        self.l0 = self.replica / "ltx" / "0"

    def l0_files(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.l0) if n.endswith(".ltx"))
        except FileNotFoundError:
            return []

    def start(self) -> None:
        from bench.common import Background, wait_for

        self.proc = Background(
            [LITESTREAM, "replicate", "-config", self.config], self.base / "litestream.log"
        )
        wait_for(
            lambda: self._alive() and "snapshot complete" in self.proc.output(),
            600,
            "litestream's snapshot",
            interval=0.1,
        )
        before = len(self.l0_files())
        mark(self.db)
        wait_for(lambda: self._alive() and len(self.l0_files()) > before, 60, "litestream: warm-up")
        self.first_new = self.l0_files()[-1]

    def _alive(self) -> bool:
        from bench.common import BenchError

        if not self.proc.alive():
            raise BenchError(f"litestream exited:\n{self.proc.output()[-2000:]}")
        return True

    def arrivals_dir(self) -> Path | None:
        return self.l0

    def finish(self, written: Written, arrivals: Arrivals | None) -> dict[str, Any]:
        time.sleep(3)  # three sync intervals
        self.stop()
        assert arrivals is not None
        probe = self.base / "probe.db"
        groups: list[tuple[int, int]] = []
        done = 0
        no_event = 0
        for name in self.l0_files():
            if name <= self.first_new:
                continue
            at = arrivals.first(name, IN_MOVED_TO, IN_CLOSE_WRITE)
            if at is None:
                no_event += 1
                continue
            txid = name.split("-")[1].split(".")[0]
            _remove_db(probe)
            argv = [LITESTREAM, "restore", "-config", self.config, "-txid", txid]
            subprocess.run(
                [*map(str, argv), "-o", str(probe), str(self.db)],
                capture_output=True,
                check=True,
                timeout=600,
            )
            _count, top = rows(probe)
            if top > done:
                groups.append((top - done, at))
                done = top
        _remove_db(probe)
        lat, missing = by_count(written.stamps, groups)
        figures: dict[str, Any] = {"archived": done, "lost": written.commits - done}
        figures["l0_files"] = len(groups)
        figures["l0_files_without_event"] = no_event
        figures["mapping"] = "restore -txid of each L0 file, max(id)"
        figures.update(latency_figures(lat, missing))
        return figures

    def restore(self, out: Path, target: str) -> None:
        from bench.common import run

        argv = [LITESTREAM, "restore", "-config", self.config, "-o", out]
        argv += ["-timestamp", target, "-integrity-check", "full", self.db]
        run(argv, "litestream restore", timeout=3600)


def _ns(text: str) -> int:
    """A catalog timestamp (naive UTC text) in ns."""
    t = datetime.fromisoformat(str(text))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1e6) * 1000


def _iso(ns: int) -> str:
    t = datetime.fromtimestamp(ns / 1e9, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


TOOLS: dict[str, type[Tool]] = {"none": NoArchiver, "pitr": Pitr, "litestream": Litestream}


# -- sessions ------------------------------------------------------------------


def session(
    root: Path, tool_name: str, mode: str, seconds: float, log: Log, run_no: int
) -> dict[str, Any]:
    """A fresh database, the tool archiving it, the writer for `seconds`."""
    base = root / f"{tool_name}-{mode}-{run_no}"
    base.mkdir()
    db = base / DB_NAME
    create_db(db)
    tool = TOOLS[tool_name](base, db, log)
    arrivals: Arrivals | None = None
    try:
        tool.start()
        where = tool.arrivals_dir()
        arrivals = Arrivals(where) if where is not None else None
        rate = RATE if mode == "rate" else 0.0
        written = run_writer(db, base / "stamps.bin", seconds=seconds, rate=rate)
        row: dict[str, Any] = {
            "tool": tool_name,
            "mode": mode,
            "run": run_no,
            "commits": written.commits,
            "tx_per_s": round(written.per_s, 1),
        }
        row.update(tool.finish(written, arrivals))
        count, _top = rows(db)
        row["rows_in_db"] = count
        return row
    finally:
        if arrivals is not None:
            arrivals.close()
        tool.stop()
        shutil.rmtree(base, ignore_errors=True)


def latency_and_throughput(
    root: Path, seconds: float, repeat: int, log: Log, tools: list[str]
) -> list[dict[str, Any]]:
    out = []
    for r in range(1, repeat + 1):
        order = tools if r % 2 else list(reversed(tools))
        plan = [(t, "fast") for t in order] + [(t, "rate") for t in order if t != "none"]
        for tool_name, mode in plan:
            row = session(root, tool_name, mode, seconds, log, r)
            log(
                f"sqlite {tool_name} {mode} run {r}: {row['tx_per_s']} tx/s"
                + (f", p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms" if "p50_ms" in row else "")
                + (f", LOST {row['lost']} commits" if row.get("lost") else "")
            )
            out.append(row)
    return out


def restore_phase(
    root: Path, db_mib: int, commits: int, repeat: int, log: Log, tools: list[str]
) -> dict[str, Any]:
    seed = root / "seed.db"
    t0 = time.monotonic()
    create_db(seed, db_mib)
    built = time.monotonic() - t0
    log(f"sqlite: built a {seed.stat().st_size / MIB:.0f} MiB database in {built:.0f}s")
    result: dict[str, Any] = {"db_bytes": seed.stat().st_size, "commits": commits, "tools": []}
    ready: list[tuple[Tool, str, int]] = []
    try:
        for name in tools:
            base = root / f"restore-{name}"
            base.mkdir()
            db = base / DB_NAME
            shutil.copyfile(seed, db)
            tool = TOOLS[name](base, db, log)
            t0 = time.monotonic()
            tool.start()
            start_s = time.monotonic() - t0
            written = run_writer(db, base / "stamps.bin", count=commits)
            row: dict[str, Any] = {
                "tool": name,
                "start_seconds": round(start_s, 1),
                "writer_tx_per_s": round(written.per_s, 1),
            }
            count, _ = rows(db)
            if isinstance(tool, Pitr):
                at_end = tool.archived() - tool.c0
                t_end = time.monotonic()
                archived = tool.catch_up(tool.c0 + written.commits, stall=60)
                row["archived_when_writer_ended"] = at_end
                row["catch_up_seconds"] = round(time.monotonic() - t_end, 1)
                row["archived"] = archived - tool.c0
                if archived - tool.c0 < written.commits:  # say why in the results
                    row["archiver_log_tail"] = tool.proc.output()[-1500:]
                row["archiver_peak_rss_mib"] = round((tool.peak_rss_kib() or 0) / 1024, 1)
                target = tool.newest_seen()
                tool.stop()
            else:
                time.sleep(3)
                row["archiver_peak_rss_mib"] = round((tool.peak_rss_kib() or 0) / 1024, 1)
                target = _iso(time.time_ns())
                tool.stop()
            row["rows_in_source"] = count
            row["target"] = target
            log(f"sqlite restore: {name} archived {commits} commits on {db_mib} MiB")
            result["tools"].append(row)
            ready.append((tool, target, count))
        seed.unlink(missing_ok=True)
        for r in range(repeat):
            order = ready if r % 2 == 0 else list(reversed(ready))
            for tool, target, _count in order:
                out = tool.base / "restored.db"
                _remove_db(out)
                time.sleep(3)
                row = next(x for x in result["tools"] if x["tool"] == tool.name)
                t0 = time.monotonic()
                try:
                    tool.restore(out, target)
                except BenchError as e:  # a failed restore is a figure too
                    seconds = time.monotonic() - t0
                    row.setdefault("failed_runs_seconds", []).append(round(seconds, 2))
                    row["error"] = str(e).splitlines()[-1][-300:]
                    log(f"sqlite restore: {tool.name} FAILED after {seconds:.1f}s: {row['error']}")
                    _remove_db(out)
                    continue
                seconds = time.monotonic() - t0
                n, top = rows(out)
                row.setdefault("runs_seconds", []).append(round(seconds, 2))
                row["rows_restored"] = n
                row["max_id_restored"] = top
                log(f"sqlite restore: {tool.name} {seconds:.1f}s, {n} rows")
                _remove_db(out)
        for row in result["tools"]:
            runs = sorted(row.get("runs_seconds", []))
            row["seconds"] = runs[len(runs) // 2] if runs else None
        return result
    finally:
        for tool, _, _ in ready:
            tool.stop()


def sqlite_benchmark(
    seconds: float,
    db_mib: int,
    commits: int,
    repeat: int,
    log: Log,
    parts: tuple[str, ...] = ("latency", "restore"),
) -> dict[str, Any]:
    from tests.servers import new_dir

    root = new_dir("sqlite-")
    tools = ["none", "pitr", "litestream"]
    out: dict[str, Any] = {
        "seconds": seconds,
        "rate": RATE,
        "repeat": repeat,
        "litestream": _litestream_version(),
    }
    try:
        if "latency" in parts:
            out["sessions"] = latency_and_throughput(root, seconds, repeat, log, tools)
            out["summary"] = summarise(out["sessions"])
        if "restore" in parts and commits > 0:
            try:
                out["restore"] = restore_phase(root, db_mib, commits, repeat, log, tools[1:])
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                out["restore_error"] = str(e)[-2000:]
                log(f"sqlite restore failed: {e}")
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _litestream_version() -> str:
    try:
        proc = subprocess.run([LITESTREAM, "version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return "not installed"
    return proc.stdout.strip() or "?"


def summarise(sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per tool and mode, and throughput ratios against no archiver."""

    def med(values: list[float]) -> float | None:
        s = sorted(v for v in values if v is not None)
        return s[len(s) // 2] if s else None

    out: dict[str, Any] = {}
    for s in sessions:
        key = f"{s['tool']}_{s['mode']}"
        slot = out.setdefault(key, {"tx_per_s": [], "p50_ms": [], "p99_ms": [], "lost": []})
        slot["tx_per_s"].append(s["tx_per_s"])
        for k in ("p50_ms", "p99_ms", "lost"):
            if k in s:
                slot[k].append(s[k])
    for slot in out.values():
        for k in ("tx_per_s", "p50_ms", "p99_ms"):
            slot[f"median_{k}"] = med(slot[k])
    none = (out.get("none_fast") or {}).get("median_tx_per_s")
    for tool in ("pitr", "litestream"):
        mine = (out.get(f"{tool}_fast") or {}).get("median_tx_per_s")
        out[f"throughput_{tool}_vs_none"] = round(mine / none, 2) if mine and none else None
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "writer":
        sys.exit(writer_main(sys.argv[2:]))
    print("usage: python -m bench.sqlite_capture writer DB OUT [--seconds S] [--count N]")
    sys.exit(2)
