"""Delta restore: 1% of a database changed since the backup; how long do
pitr's full restore, pitr's `--delta` and `pgbackrest restore --delta`
take to bring the data directory back to the backup's target?

    python -m bench.delta [--scale 100] [--repeat 3]

One cluster is filled by `pgbench -i`, both tools archive it and take a
full backup, and a target is written after both. For each run and tool, a
data directory is restored to the target, started, has 1% of
pgbench_accounts updated (through the primary key, so only those pages
change), is stopped, and is then restored again in place with the tool's
delta mode; that second restore is timed. pitr's full restore into a new
directory is timed beside them. Only the restore command is timed (not
the WAL replay that follows, which is the same for every row).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import (
    PG_SETTINGS,
    chown_postgres,
    dir_bytes,
    pg_dir,
    pg_tool,
    pgbackrest_archive_command,
    pgbackrest_argv,
    pgbackrest_stanza,
    pitr_archive_command,
    pitr_argv,
    pitr_init,
    run,
    timed,
)
from bench.pgcycle import _write_markers
from tests.servers import PG_USER, PostgresCluster

ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.delta", description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=int, default=100, help="pgbench scale (100: ~1.5 GB)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--changed", type=float, default=0.01, help="share of accounts updated")
    p.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "delta.json")
    args = p.parse_args(argv)
    base = pg_dir("delta-")
    cluster = PostgresCluster.create(archive_command="", settings=PG_SETTINGS)
    try:
        result = measure(cluster, base, args.scale, args.repeat, args.changed)
    finally:
        cluster.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)


def measure(
    cluster: PostgresCluster, base: Path, scale: int, repeat: int, changed: float
) -> dict[str, Any]:
    cluster.start()
    log(f"pgbench -i -s {scale}")
    run(_pgbench(cluster, "-i", "-q", "-s", str(scale)), "pgbench -i", user=PG_USER, timeout=3600)
    cluster.psql(
        "CREATE TABLE bench_markers (n int PRIMARY KEY, "
        "t timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    pitr_cfg = pitr_init(cluster, base / "pitr.toml", base / "pitr-repo")
    pgb_base = base / "pgbackrest"
    pgb_base.mkdir()
    chown_postgres(pgb_base)
    pgb_cfg = pgbackrest_stanza(cluster, pgb_base)
    cluster.set_archive_command(
        f"{pgbackrest_archive_command(pgb_cfg)} && {pitr_archive_command(pitr_cfg)}"
    )
    log("backups")
    run(pitr_argv(pitr_cfg, "backup"), "pitr backup", user=PG_USER, timeout=3600)
    run(
        pgbackrest_argv(pgb_cfg, "--type=full", "backup"),
        "pgbackrest backup",
        user=PG_USER,
        timeout=3600,
    )
    time.sleep(1.5)  # pgBackRest keeps a backup's stop time to the second
    target = _write_markers(cluster)
    cluster.stop()
    accounts = scale * 100_000
    rows = max(1, int(accounts * changed))

    def pitr(dest: Path, *more: str) -> list[str]:
        iso = target.replace(" ", "T") + "+00:00"
        return pitr_argv(
            pitr_cfg, "restore", "--source", "db", "--to", iso, "--pgdata", os.fspath(dest), *more
        )

    def pgbackrest(dest: Path, *more: str) -> list[str]:
        return pgbackrest_argv(
            pgb_cfg,
            "--type=time",
            f"--target={target}+00",
            "--target-action=promote",
            f"--pg1-path={dest}",
            *more,
            "restore",
        )

    runs: dict[str, list[float]] = {"pitr full": [], "pitr --delta": [], "pgBackRest --delta": []}
    for round_no in range(repeat):
        dest = pg_dir(f"delta-full-{round_no}-") / "data"
        seconds, _ = timed(partial(run, pitr(dest), "pitr restore", user=PG_USER, timeout=3600))
        runs["pitr full"].append(round(seconds, 2))
        shutil.rmtree(dest.parent, ignore_errors=True)
        order = [("pitr --delta", pitr), ("pgBackRest --delta", pgbackrest)]
        for name, argv in order if round_no % 2 == 0 else order[::-1]:
            dest = _changed_directory(name, argv, rows)
            log(f"{name}: restore over a directory with {rows} of {accounts} accounts changed")
            command = argv(dest, "--delta")
            seconds, _ = timed(partial(run, command, name, user=PG_USER, timeout=3600))
            runs[name].append(round(seconds, 2))
            shutil.rmtree(dest.parent, ignore_errors=True)
    return {
        "scale": scale,
        "database_bytes": _db_bytes(cluster),
        "changed_rows": rows,
        "seconds": runs,
        "median": {name: sorted(v)[len(v) // 2] for name, v in runs.items()},
    }


def _changed_directory(name: str, argv: Any, rows: int) -> Path:
    """A directory restored by the tool, started, changed and stopped."""
    dest = pg_dir("delta-") / "data"
    if name.startswith("pgBackRest"):
        dest.mkdir(mode=0o700)
        chown_postgres(dest)
    run(argv(dest), f"{name}: first restore", user=PG_USER, timeout=3600)
    lived = PostgresCluster.from_pgdata(dest, archive_command="", settings=PG_SETTINGS)
    lived.start_recovered(timeout=1800)
    lived.psql(f"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= {rows}")
    lived.psql("CHECKPOINT")
    lived.stop()
    return dest


def _db_bytes(cluster: PostgresCluster) -> int:
    return dir_bytes(cluster.pgdata / "base")


def _pgbench(cluster: PostgresCluster, *args: str) -> list[str]:
    return [
        pg_tool("pgbench"),
        *args,
        "-h",
        os.fspath(cluster.socket_dir),
        "-p",
        str(cluster.port),
        "postgres",
    ]


def print_table(result: dict[str, Any]) -> None:
    full = result["median"]["pitr full"]
    print(
        f"scale {result['scale']}, {result['database_bytes'] / 2**30:.2f} GiB in base/, "
        f"{result['changed_rows']} accounts changed"
    )
    for name, runs in result["seconds"].items():
        median = result["median"][name]
        print(f"  {name:20} median {median:7.2f} s  ({median / full:.2f}x pitr full)  runs {runs}")


if __name__ == "__main__":
    main()
