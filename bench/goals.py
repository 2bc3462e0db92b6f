"""The targets the benchmark report checks its ratios against (bench.report)."""

from __future__ import annotations

from typing import Any

from bench.report import _table, _x

# The targets of issue 6: drain at least 1.5x pgBackRest's rate; back up at least as
# fast into no more space; restore at least as fast. pitr drains with its daemon, which
# runs as a service; the row with its start-up inside the time has the same goal.
GOALS = (
    (("drain_pitr_daemon_running_vs_pgbackrest",), ">=", 1.5, "WAL drain rate, daemon running"),
    (
        ("drain_pitr_daemon_vs_pgbackrest", "drain_pitr_vs_pgbackrest"),
        ">=",
        1.5,
        "WAL drain rate, daemon started at t0",
    ),
    (("backup_speed_pitr_vs_pgbackrest",), ">=", 1.0, "full base backup, speed"),
    (("backup_size_pitr_vs_pgbackrest",), "<=", 1.0, "full base backup, stored size"),
    (("restore_speed_pitr_vs_pgbackrest",), ">=", 1.0, "restore to an instant, speed"),
    # Issue 21: the plain path at least as fast as pgBackRest's synchronous push,
    # the recommended form with the daemon twice as fast.
    (("drain_pitr_vs_pgbackrest",), ">=", 1.0, "WAL drain rate, no daemon"),
    (("drain_pitr_daemon_running_vs_pgbackrest",), ">=", 2.0, "WAL drain rate, daemon (issue 21)"),
)


def goal_lines(ratios: dict[str, Any]) -> list[str]:
    """The goals table of the report: each ratio against its target."""
    rows = []
    for keys, better, goal, what in GOALS:
        key = next((k for k in keys if ratios.get(k) is not None), None)
        if key is None:
            continue
        value = ratios[key]
        met = value >= goal if better == ">=" else value <= goal
        rows.append([what, key, _x(value), f"{better} {goal:g}x", "met" if met else "not met"])
    if ratios.get("wal_push_peak_rss_mib") is not None:
        rss = ratios["wal_push_peak_rss_mib"]
        rows.append(
            [
                "wal-push memory with the daemon",
                "wal_push_peak_rss_mib",
                f"{rss:g} MiB",
                "< 50 MB",
                "met" if rss * 1.048576 < 50 else "not met",
            ]
        )
    for key, what, goal, better in (
        ("sqlite_p99_ms_pitr_fast", "SQLite commit-to-archived p99, fast writer", 50, "<="),
        ("sqlite_p99_ms_pitr_rate", "SQLite commit-to-archived p99, 100 tx/s", 50, "<="),
        ("sqlite_throughput_pitr_vs_none", "SQLite writer throughput with pitr", 0.9, ">="),
        ("sqlite_archiver_peak_rss_mib", "SQLite archiver peak RSS", 95.4, "<"),
    ):
        value = ratios.get(key)
        if value is None:
            continue
        met = value <= goal if better == "<=" else value >= goal if better == ">=" else value < goal
        unit = "x" if "throughput" in key else " ms" if "ms" in key else " MiB"
        shown = f"{value:g}{unit}"
        wanted = "< 100 MB" if "rss" in key else f"{better} {goal:g}{unit}"
        rows.append([what, key, shown, wanted, "met" if met else "not met"])
    if not rows:
        return []
    return [
        "Against the goals of issues 6 and 21 (pitr / pgBackRest)",
        *_table(["figure", "ratio key in the JSON", "ratio", "goal", "status"], rows, {2}),
        "",
    ]
