"""An application writing to a SQLite database, run as its own process by
the SQLite tests: it commits rows and logs when each commit was made.

    python tests/sqlite_writer.py DB LOG --count N [--sleep A B] [--payload BYTES]
        [--busy-ms MS] [--name NAME] [--truncate-every N] [--seed S]

Each commit appends a JSON line to LOG: {"name", "seq", "before", "after",
"waited"}: the wall-clock instants just before the COMMIT was asked for
and just after it returned, and how long the transaction waited for locks.
Only the standard library: it stands for somebody else's program.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time

SCHEMA = "CREATE TABLE IF NOT EXISTS rows (name TEXT, seq INTEGER, payload BLOB)"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("log")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--sleep", type=float, nargs=2, default=(0.0, 0.0))
    p.add_argument("--payload", type=int, default=100)
    p.add_argument("--busy-ms", type=int, default=5000)
    p.add_argument("--name", default="w")
    p.add_argument("--truncate-every", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rng = random.Random(a.seed)
    conn = sqlite3.connect(a.db, isolation_level=None, timeout=a.busy_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout={a.busy_ms}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(SCHEMA)
    with open(a.log, "a") as log:
        for seq in range(a.count):
            started = time.monotonic()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO rows VALUES (?, ?, ?)", (a.name, seq, rng.randbytes(a.payload))
            )
            before = time.time()
            conn.execute("COMMIT")
            after = time.time()
            waited = time.monotonic() - started
            line = {"name": a.name, "seq": seq, "before": before, "after": after, "waited": waited}
            log.write(json.dumps(line) + "\n")
            log.flush()
            if a.truncate_every and (seq + 1) % a.truncate_every == 0:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            lo, hi = a.sleep
            if hi:
                time.sleep(rng.uniform(lo, hi))
    conn.close()


if __name__ == "__main__":
    main()
