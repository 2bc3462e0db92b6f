"""Full base backup and point-in-time restore of the same database, by pitr
and by pgBackRest.

The backlog cluster is started again with its old backlog marked done (the
drain already measured it), archiving into a fresh pitr repository and a
fresh pgBackRest stanza. Each backup runs while the archive_command puts
that tool's push first, so that neither backup waits on the other tool for
its last segment. The restore target lies between two marker rows written
after both backups; each restore is timed until the restored cluster has
promoted and answers a query, and then checked to hold exactly the first
marker and every pgbench row. Restores are repeated, alternating which tool
goes first, and the median is reported.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    PG_SETTINGS,
    BenchError,
    catalog_query,
    chown_postgres,
    du,
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
    wait_for,
)
from bench.drain import Backlog
from tests.servers import PG_USER, PostgresCluster

RESTORE_PAUSE = 3.0  # seconds before each timed restore

Log = Callable[[str], None]


def backup_and_restore(
    backlog: Backlog, scale: int, transactions: int, logs: Path, log: Log, repeat: int = 1
) -> dict[str, Any]:
    """Backups and restores; the restored clusters' server logs are copied to logs."""
    cluster = backlog.cluster
    status = cluster.pgdata / "pg_wal" / "archive_status"
    for ready in status.glob("*.ready"):
        ready.rename(ready.with_suffix(".done"))  # measured by the drain already
    cluster.set_archive_command("")
    cluster.start()
    base = pg_dir("cycle-")
    pitr_repo = base / "pitr-repo"
    pitr_cfg = pitr_init(cluster, base / "pitr.toml", pitr_repo)
    pgb_base = base / "pgbackrest"
    pgb_base.mkdir()
    chown_postgres(pgb_base)
    pgb_cfg = pgbackrest_stanza(cluster, pgb_base)
    pitr_push = pitr_archive_command(pitr_cfg)
    pgb_push = pgbackrest_archive_command(pgb_cfg)
    cluster.psql(
        "CREATE TABLE bench_markers (n int PRIMARY KEY, "
        "t timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    try:
        results: dict[str, Any] = {"restore": []}
        # Both archive from here on, pgBackRest first: its backup then never
        # waits for pitr's push (pitr's backup pushes its own WAL if need be).
        cluster.set_archive_command(f"{pgb_push} && {pitr_push}")

        def pitr_backup(round_no: int) -> dict[str, Any]:
            # The last backup goes into the repository the restores use; the
            # others into fresh ones, so that each is full, as pgBackRest's is.
            cfg, repo = pitr_cfg, pitr_repo
            if round_no < repeat - 1:
                repo = base / f"pitr-repo-{round_no}"
                cfg = pitr_init(cluster, base / f"pitr-{round_no}.toml", repo)
            seconds, _ = timed(lambda: run(pitr_argv(cfg, "backup"), "pitr backup", user=PG_USER))
            return _pitr_backup_row(repo, seconds)

        def pgb_backup(round_no: int) -> dict[str, Any]:
            before = du(pgb_base / "repo" / "backup")
            seconds, _ = timed(
                lambda: run(
                    pgbackrest_argv(pgb_cfg, "--type=full", "backup"),
                    "pgbackrest backup",
                    user=PG_USER,
                    timeout=3600,
                )
            )
            return _pgbackrest_backup_row(pgb_cfg, pgb_base / "repo", seconds, before)

        results["backup"] = _alternating(
            [("pitr", pitr_backup), ("pgBackRest", pgb_backup)], repeat, "seconds", "backup", log
        )

        if transactions:
            # WAL for both restores to replay: the same for both tools.
            log(f"workload: pgbench -n -c 2 -j 2 -t {transactions} (WAL to replay)")
            run(
                [pg_tool("pgbench"), "-n", "-c", "2", "-j", "2", "-t", str(transactions)]
                + ["-h", os.fspath(cluster.socket_dir), "-p", str(cluster.port), "postgres"],
                "pgbench workload",
                user=PG_USER,
                timeout=3600,
            )
        results["workload"] = f"pgbench -n -c 2 -j 2 -t {transactions}" if transactions else ""
        target = _write_markers(cluster)
        results["target"] = target
        log(f"restore target {target} UTC (between marker 1 and marker 2)")
        expected_rows = scale * 100_000

        def pitr_restore(dest: Path) -> None:
            run(
                pitr_argv(
                    pitr_cfg,
                    "restore",
                    "--source",
                    "db",
                    "--to",
                    target.replace(" ", "T") + "+00:00",
                    "--pgdata",
                    os.fspath(dest),
                ),
                "pitr restore",
                user=PG_USER,
                timeout=3600,
            )

        def pgb_restore(dest: Path) -> None:
            dest.mkdir(mode=0o700)
            chown_postgres(dest)
            run(
                pgbackrest_argv(
                    pgb_cfg,
                    "--type=time",
                    f"--target={target}+00",
                    "--target-action=promote",
                    f"--pg1-path={dest}",
                    "restore",
                ),
                "pgbackrest restore",
                user=PG_USER,
                timeout=3600,
            )

        def timed_restore(name: str, restore: Callable[[Path], None]) -> dict[str, Any]:
            # Let every restore start on a settled machine: memory the previous
            # cleanup freed is slower to touch again a few seconds later.
            time.sleep(RESTORE_PAUSE)
            return _restore_row(name, restore, expected_rows, logs)

        results["restore"] = _alternating(
            [
                ("pitr", lambda _: timed_restore("pitr", pitr_restore)),
                ("pgBackRest", lambda _: timed_restore("pgBackRest", pgb_restore)),
            ],
            repeat,
            "total_seconds",
            "restore to the target, start, wait for promotion",
            log,
        )
        return results
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def _alternating(
    tools: list[tuple[str, Callable[[int], dict[str, Any]]]],
    repeat: int,
    key: str,
    what: str,
    log: Log,
) -> list[dict[str, Any]]:
    """Each tool's run, `repeat` rounds, alternating who goes first (what
    ran just before moves the figures on this machine); per tool the median
    row by `key`, with every run's figure."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in tools}
    for round_no in range(repeat):
        for name, one in tools if round_no % 2 == 0 else tools[::-1]:
            log(f"{name}: {what} (run {round_no + 1} of {repeat})")
            runs[name].append(one(round_no))
    rows = []
    for name, _ in tools:
        done = sorted(runs[name], key=lambda r: r[key])
        rows.append({**done[len(done) // 2], f"runs_{key}": [r[key] for r in done]})
    return rows


def _pitr_backup_row(repo: Path, seconds: float) -> dict[str, Any]:
    rows = catalog_query(repo, "SELECT size_bytes, stored_bytes FROM backups")
    if len(rows) != 1:
        raise BenchError(f"pitr's catalog lists {len(rows)} backups, expected 1")
    size, stored = rows[0]
    return {
        "tool": "pitr",
        "settings": "zstd 3, 1 MiB chunks, 2 sealing threads (1 per core), 4 writer threads",
        "seconds": round(seconds, 2),
        "db_bytes": int(size),
        "stored_bytes": int(stored),
        "repo_bytes_on_disk": du(repo / "objects"),
    }


def _pgbackrest_backup_row(
    config: Path, repo: Path, seconds: float, disk_before: int
) -> dict[str, Any]:
    out = run(pgbackrest_argv(config, "--output=json", "info"), "pgbackrest info", user=PG_USER)
    try:
        info = json.loads(out.stdout)[0]["backup"][-1]["info"]
    except (ValueError, LookupError) as e:
        raise BenchError(f"pgbackrest info: unexpected output ({e})") from e
    return {
        "tool": "pgBackRest",
        "settings": "--type=full, compress-type=zst, compress-level=3, process-max=2",
        "seconds": round(seconds, 2),
        "db_bytes": int(info["size"]),
        "stored_bytes": int(info["repository"]["delta"]),
        "repo_bytes_on_disk": du(repo / "backup") - disk_before,
    }


def _write_markers(cluster: PostgresCluster) -> str:
    """Marker 1, the target a moment later, marker 2 a moment after that;
    then close the segment and wait until it is archived."""
    # The target must lie after both backups ended, so write marker 1 now.
    cluster.psql("INSERT INTO bench_markers(n) VALUES (1)")
    time.sleep(0.5)
    target = cluster.psql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    ).strip()
    time.sleep(0.5)
    cluster.psql("INSERT INTO bench_markers(n) VALUES (2)")
    name = cluster.psql("SELECT pg_walfile_name(pg_switch_wal())").strip()

    def archived() -> bool:
        out = cluster.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        return out.strip() >= name

    wait_for(archived, 300, f"segment {name} to be archived", interval=0.2)
    return target


def _restore_row(
    name: str, restore: Callable[[Path], None], expected_rows: int, logs: Path
) -> dict[str, Any]:
    parent = pg_dir(f"restore-{name.lower()}-")
    dest = parent / "data"
    restored: PostgresCluster | None = None
    try:
        restore_s, _ = timed(lambda: restore(dest))
        restored = PostgresCluster.from_pgdata(dest, archive_command="", settings=PG_SETTINGS)
        t0 = time.monotonic()
        restored.start(timeout=1800)
        with restored.connect() as conn:

            def promoted() -> bool:
                return conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0] is True

            wait_for(promoted, 1800, f"the {name} restore to promote", interval=0.05)
            markers = conn.execute("SELECT array_agg(n ORDER BY n) FROM bench_markers").fetchone()
            recovery_s = time.monotonic() - t0
            rows = conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0]
        log_text = restored.log_path.read_text(errors="replace")
        logs.mkdir(parents=True, exist_ok=True)
        settings = (dest / "postgresql.auto.conf").read_text(errors="replace")
        (logs / f"restore-{name.lower()}.log").write_text(
            f"--- postgresql.auto.conf ---\n{settings}\n--- server log ---\n{log_text}"
        )
        if markers[0] != [1] or rows != expected_rows:
            raise BenchError(
                f"{name} restore: markers {markers[0]} and {rows} pgbench_accounts rows, "
                f"expected [1] and {expected_rows}"
            )
        return {
            "tool": name,
            "restore_seconds": round(restore_s, 2),
            "recovery_seconds": round(recovery_s, 2),
            "total_seconds": round(restore_s + recovery_s, 2),
            "segments_restored": log_text.count("restored log file"),
            "markers": markers[0],
            "accounts_rows": rows,
        }
    finally:
        if restored is not None:
            restored.cleanup()
        shutil.rmtree(parent, ignore_errors=True)
