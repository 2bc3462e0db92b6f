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

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import BenchError
from bench.sqlite_tools import TOOLS, Pitr, Tool, iso_utc, remove_db
from bench.sqlite_writer import (
    DB_NAME,
    LITESTREAM,
    MIB,
    RATE,
    Arrivals,
    Log,
    create_db,
    rows,
    run_writer,
)

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
                target = iso_utc(time.time_ns())
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
                remove_db(out)
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
                    remove_db(out)
                    continue
                seconds = time.monotonic() - t0
                n, top = rows(out)
                row.setdefault("runs_seconds", []).append(round(seconds, 2))
                row["rows_restored"] = n
                row["max_id_restored"] = top
                log(f"sqlite restore: {tool.name} {seconds:.1f}s, {n} rows")
                remove_db(out)
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
