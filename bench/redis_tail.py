"""Redis stream tailer under a pipelined writer.

A redis-server, `pitr tail` following `bench:*`, and a writer in this
process sending XADD in pipelined batches as fast as it can for a fixed
time. A sampler reads the catalog's stream_batches (sum of count) while the
writer runs: the tailer's sustained rate is the slope of archived entries
over the writing window (after the first second, once the first batches
have closed), and the lag is what was written but not yet archived when the
writer stopped, plus the time the tailer then needed to catch up.

Then the stream, as the writer left it, is read twice more with no writer
running: by a bare redis-py XREAD loop that keeps nothing, and by a second
`pitr tail` with a fresh repository. The ratio of the two rates is what
the tailer's own work (encoding, storing, the catalog) costs over reading.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    Background,
    BenchError,
    catalog_query,
    pitr_argv,
    pitr_config,
    run,
    wait_for,
)
from tests.servers import RedisServer, new_dir

STREAM = "bench:events"
BARE_COUNT = 1000
PAYLOAD = "x" * 64


def tail_benchmark(
    seconds: float, batch: int, log: Callable[[str], None], tail_batch: int = 0
) -> dict[str, Any]:
    """tail_batch: the --batch-count of `pitr tail` (0: its default)."""
    options = ("--batch-count", str(tail_batch)) if tail_batch else ()
    server = RedisServer()
    tailer: Background | None = None
    base = new_dir("tail-")
    try:
        server.start()
        repo = base / "repo"
        config = pitr_config(base / "pitr.toml", repo, redis_url=server.url)
        run(pitr_argv(config, "init"), "pitr init")
        client = server.client()
        client.xadd(STREAM, {"n": 0, "v": PAYLOAD})  # so that the tailer finds the stream

        def archived() -> int:
            rows = catalog_query(repo, "SELECT coalesce(sum(count), 0) FROM stream_batches")
            return int(rows[0][0])

        argv = pitr_argv(config, "tail", "--source", "cache", *options)
        tailer = Background(argv, base / "tail.log")
        wait_for(
            lambda: _tailer_alive(tailer) and archived() >= 1,
            60,
            "pitr tail to archive the first entry",
            interval=0.1,
        )
        log(f"redis: pipelined XADD (batches of {batch}) for {seconds:g}s, pitr tail following")
        samples: list[tuple[float, int]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append((time.monotonic(), archived()))
                done.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        written = 1
        t0 = time.monotonic()
        sampler.start()
        pipe = client.pipeline(transaction=False)
        while time.monotonic() - t0 < seconds:
            for i in range(batch):
                pipe.xadd(STREAM, {"n": written + i, "v": PAYLOAD})
            pipe.execute()
            written += batch
        t_end = time.monotonic()
        done.set()
        sampler.join()
        at_end = archived()
        window = t_end - t0
        caught = wait_for(
            lambda: _tailer_alive(tailer) and archived() >= written and time.monotonic(),
            300,
            f"pitr tail to archive all {written} entries",
            interval=0.05,
        )
        catch_up = caught - t_end
        gaps = int(catalog_query(repo, "SELECT count(*) FROM stream_gaps")[0][0])
        code = tailer.stop(timeout=60)
        if code != 0:
            raise BenchError(f"pitr tail exited {code}:\n{tailer.output()[-2000:]}")
        total = archived()
        if total != written:
            raise BenchError(f"pitr tail archived {total} entries, {written} were written")
        log(f"redis: the {written} entries again, by a bare XREAD loop and a fresh pitr tail")
        bare = _bare_xread(client, written, raw=False)
        bare_raw = _bare_xread(client, written, raw=True)
        backlog = _backlog(server.url, base, written, options)
        return {
            "seconds": round(window, 2),
            "batch": batch,
            "tail_batch_count": tail_batch or None,
            "entries_written": written,
            "written_per_s": round((written - 1) / window),
            "archived_per_s_sustained": round(_slope(samples, t0 + 1.0, t_end)),
            "archived_per_s_overall": round((written - 1) / (t_end + catch_up - t0)),
            "lag_entries_at_end": written - at_end,
            "catch_up_seconds": round(catch_up, 2),
            "gaps": gaps,
            "bare_xread_per_s": round(bare),
            "bare_xread_raw_per_s": round(bare_raw),
            "backlog_per_s": round(backlog),
            "backlog_vs_bare": round(backlog / bare, 2),
            "backlog_vs_bare_raw": round(backlog / bare_raw, 2),
        }
    finally:
        if tailer is not None:
            tailer.stop(timeout=30)
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def redis_phase(results: dict[str, Any], args: Any, phase: Callable[..., Any], log: Any) -> None:
    """bench.run's redis phase: phase(results, name, fn) runs and records it."""
    from bench.common import pitr_has

    if not pitr_has("tail"):
        results["notes"].append("pitr tail is not built in this tree: redis skipped")
        return
    seconds, batch, tail_batch = args.redis_seconds, args.redis_batch, args.redis_tail_batch
    results["redis_tail"] = phase(
        results, "redis tail", lambda: tail_benchmark(seconds, batch, log, tail_batch)
    )


def _bare_xread(client: Any, expected: int, raw: bool) -> float:
    """Entries per second of the plainest reader: redis-py (bytes, hiredis
    when installed) reading the whole stream with XREAD COUNT 1000, the
    tailer's default batch, and keeping nothing. Not raw: client.xread(), as
    redis-py parses it (each entry's fields into a dict); raw: the reply as
    the server sent it, lists of bytes, as the tailer reads it."""
    if raw:
        client = client.client()  # a client of its own for the raw callback
        client.set_response_callback("XREAD", lambda r, **_: r)
    last: bytes | str = "0-0"
    seen = 0
    t0 = time.monotonic()
    while True:
        reply = client.xread({STREAM: last}, count=BARE_COUNT)
        if not reply:
            break
        entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))
        seen += len(entries)
        last = entries[-1][0]
    seconds = time.monotonic() - t0
    if seen != expected:
        raise BenchError(f"the bare XREAD loop read {seen} entries, the stream holds {expected}")
    return seen / seconds


def _backlog(url: str, base: Path, expected: int, options: tuple[str, ...]) -> float:
    """Entries per second of a `pitr tail` with a fresh repository archiving
    the stream as it stands: the slope of archived entries from the first
    batch in the catalog (its start-up left out) to the last."""
    repo = base / "repo-backlog"
    config = pitr_config(base / "backlog.toml", repo, redis_url=url)
    run(pitr_argv(config, "init"), "pitr init")

    def archived() -> int:
        rows = catalog_query(repo, "SELECT coalesce(sum(count), 0) FROM stream_batches")
        return int(rows[0][0])

    argv = pitr_argv(config, "tail", "--source", "cache", *options)
    tailer = Background(argv, base / "backlog.log")
    try:
        samples: list[tuple[float, int]] = []

        def progress() -> bool:
            _tailer_alive(tailer)
            n = archived()
            if n:
                samples.append((time.monotonic(), n))
            return n >= expected

        wait_for(progress, 300, f"pitr tail to archive the {expected} entries", interval=0.02)
    finally:
        code = tailer.stop(timeout=60)
    if code != 0:
        raise BenchError(f"pitr tail exited {code}:\n{tailer.output()[-2000:]}")
    (ta, a), (tb, b) = samples[0], samples[-1]
    if b != expected or tb <= ta:
        raise BenchError(f"pitr tail archived {b} of {expected} entries of the backlog")
    return (b - a) / (tb - ta)


def _tailer_alive(tailer: Background) -> bool:
    if not tailer.alive():
        raise BenchError(f"pitr tail exited:\n{tailer.output()[-2000:]}")
    return True


def _slope(samples: list[tuple[float, int]], start: float, end: float) -> float:
    """Archived entries per second between the first sample at or after start
    and the last sample at or before end."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        raise BenchError("too few catalog samples to measure the tailer's rate")
    (ta, a), (tb, b) = inside[0], inside[-1]
    return (b - a) / (tb - ta)
