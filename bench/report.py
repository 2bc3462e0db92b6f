"""The results as one plain-text table (stdout, docs) and as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MIB = 1 << 20


def ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 2)


def add_ratios(results: dict[str, Any]) -> None:
    """pitr against pgBackRest, each as 'higher is better for pitr' except sizes."""
    out: dict[str, Any] = {}
    drain = results.get("wal_drain") or {}
    rates = {r["key"]: r["segments_per_s"] for r in drain.get("rows", []) if "error" not in r}
    out["drain_pitr_vs_pgbackrest"] = ratio(rates.get("pitr"), rates.get("pgbackrest"))
    out["drain_pitr_daemon_running_vs_pgbackrest"] = ratio(
        rates.get("pitr_daemon_running"), rates.get("pgbackrest")
    )
    out["drain_pitr_daemon_vs_pgbackrest"] = ratio(
        rates.get("pitr_daemon"), rates.get("pgbackrest")
    )
    out["drain_pitr_daemon_vs_pgbackrest_async"] = ratio(
        rates.get("pitr_daemon"), rates.get("pgbackrest_async")
    )
    daemon_row: dict[str, Any] = next(
        (r for r in drain.get("rows", []) if r.get("key") == "pitr_daemon"), {}
    )
    out["wal_push_peak_rss_mib"] = daemon_row.get("wal_push_peak_rss_mib")
    for section, key, field in (
        ("backup", "backup_speed_pitr_vs_pgbackrest", "seconds"),
        ("restore", "restore_speed_pitr_vs_pgbackrest", "total_seconds"),
    ):
        by_tool = {r["tool"]: r for r in (results.get("postgres") or {}).get(section, [])}
        if "pitr" in by_tool and "pgBackRest" in by_tool:
            out[key] = ratio(by_tool["pgBackRest"][field], by_tool["pitr"][field])
            if section == "backup":
                out["backup_size_pitr_vs_pgbackrest"] = ratio(
                    by_tool["pitr"]["stored_bytes"], by_tool["pgBackRest"]["stored_bytes"]
                )
    sq = (results.get("sqlite") or {}).get("summary") or {}
    out["sqlite_throughput_pitr_vs_none"] = sq.get("throughput_pitr_vs_none")
    out["sqlite_throughput_litestream_vs_none"] = sq.get("throughput_litestream_vs_none")
    for mode in ("fast", "rate"):
        out[f"sqlite_p99_ms_pitr_{mode}"] = (sq.get(f"pitr_{mode}") or {}).get("median_p99_ms")
    restored = ((results.get("sqlite") or {}).get("restore") or {}).get("tools", [])
    by_tool = {r["tool"]: r for r in restored}
    if "pitr" in by_tool and "litestream" in by_tool:
        out["sqlite_restore_speed_pitr_vs_litestream"] = ratio(
            by_tool["litestream"].get("seconds"), by_tool["pitr"].get("seconds")
        )
        out["sqlite_archiver_peak_rss_mib"] = by_tool["pitr"].get("archiver_peak_rss_mib")
    results["ratios"] = out


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: set[int]) -> list[str]:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def render(results: dict[str, Any]) -> str:
    f = results["facts"]
    out = [
        f"pitr benchmark, {f['date_utc']}",
        f"machine: {f['nproc']} cores ({f['cpu']}), {f['memory_gib']} GiB RAM, "
        f"load average {f['loadavg_start']} at the start, {f['loadavg_end']} at the end",
        f"software: {f['postgres']}, {f['pgbackrest']}, {f['redis']}, pitr {f['pitr']} "
        f"({f['commit']}), Python {f['python']}",
        f"data: pgbench scale {results['settings']['scale']}",
        "",
    ]
    drain = results.get("wal_drain")
    if drain:
        pgb = next(
            (
                r["segments_per_s"]
                for r in drain["rows"]
                if r["key"] == "pgbackrest" and "error" not in r
            ),
            None,
        )
        out.append(
            f"WAL drain: a backlog of {drain['segments']} segments (16 MiB), "
            "archived by PostgreSQL's archiver one call per segment; "
            f"median of {drain.get('repeat', 1)} runs per tool"
        )
        rows = []
        for r in drain["rows"]:
            if "error" in r:
                rows.append([r["tool"], r["mode"], "failed", "-", "-", "-"])
                continue
            rows.append(
                [
                    r["tool"],
                    r["mode"],
                    r["seconds"],
                    r["segments_per_s"],
                    _mib(r["stored_bytes"]),
                    _x(ratio(r["segments_per_s"], pgb)),
                ]
            )
        out += _table(
            ["tool", "mode", "seconds", "segments/s", "stored MiB", "vs pgBackRest"],
            rows,
            {2, 3, 4, 5},
        )
        out += [f"note: {n}" for n in drain.get("notes", [])]
        out.append("")
    pg = results.get("postgres")
    if pg:
        out += _backup_section(pg["backup"])
        out += _restore_section(pg)
    tail = results.get("redis_tail")
    if tail:
        out.append(
            f"Redis stream tail: pipelined XADD (batches of {tail['batch']}) for "
            f"{tail['seconds']:g}s, `pitr tail"
            + (f" --batch-count {tail['tail_batch_count']}" if tail.get("tail_batch_count") else "")
            + "` following"
        )
        out += _table(
            [
                "written/s",
                "archived/s (sustained)",
                "archived/s (overall)",
                "lag at end (entries)",
                "catch-up s",
                "gaps",
            ],
            [
                [
                    tail["written_per_s"],
                    tail["archived_per_s_sustained"],
                    tail["archived_per_s_overall"],
                    tail["lag_entries_at_end"],
                    tail["catch_up_seconds"],
                    tail["gaps"],
                ]
            ],
            {0, 1, 2, 3, 4, 5},
        )
        if "backlog_per_s" in tail:
            out.append(
                f"the {tail['entries_written']} entries again, no writer: a fresh `pitr tail` "
                f"{tail['backlog_per_s']}/s; a bare redis-py XREAD loop (COUNT 1000) "
                f"{tail['bare_xread_per_s']}/s with client.xread ({tail['backlog_vs_bare']:.2f}x), "
                f"{tail['bare_xread_raw_per_s']}/s with raw replies "
                f"({tail['backlog_vs_bare_raw']:.2f}x)"
            )
        out.append("")
    if results.get("sqlite"):
        out += _sqlite_section(results["sqlite"])
    if results.get("stream"):
        from bench.stream import stream_section

        out += stream_section(results["stream"])
    if results.get("redis_repl"):
        from bench.redis_repl_restore import repl_section

        out += repl_section(results["redis_repl"])
    from bench.goals import goal_lines

    out += goal_lines(results.get("ratios") or {})
    errors = results.get("errors") or []
    for e in errors:
        out.append(f"error: {e}")
    for n in results.get("notes") or []:
        out.append(f"note: {n}")
    return "\n".join(out).rstrip() + "\n"


def _pgbackrest(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    return {r["tool"]: r for r in rows}.get("pgBackRest")


def _speed(pgb: dict[str, Any] | None, r: dict[str, Any], key: str) -> str:
    """pgBackRest's time over this tool's: above 1x, this one is faster."""
    return _x(ratio(pgb[key], r[key]) if pgb else None)


def _all_runs(r: dict[str, Any], key: str) -> str:
    return " ".join(f"{t:.2f}" for t in r.get(key, []))


def _median_of(rows: Sequence[dict[str, Any]], key: str) -> str:
    runs = len(rows[0].get(key, [0]))
    return f"median of {runs} runs per tool, alternating which goes first"


def _backup_section(backups: list[dict[str, Any]]) -> list[str]:
    pgb = _pgbackrest(backups)
    rows = [
        [
            r["tool"],
            r["seconds"],
            _mib(r["stored_bytes"]),
            _speed(pgb, r, "seconds"),
            _x(ratio(r["stored_bytes"], pgb["stored_bytes"]) if pgb else None),
            _all_runs(r, "runs_seconds"),
            r["settings"],
        ]
        for r in backups
    ]
    return [
        f"Full base backup of the same database ({_mib(backups[0]['db_bytes'])} MiB), "
        "archiving on; speed vs pgBackRest = its time / pitr's; "
        + _median_of(backups, "runs_seconds"),
        *_table(
            ["tool", "seconds", "stored MiB", "speed vs pgBackRest", "size vs pgBackRest"]
            + ["all runs (s)", "settings"],
            rows,
            {1, 2, 3, 4},
        ),
        "",
    ]


def _restore_section(pg: dict[str, Any]) -> list[str]:
    restores = pg["restore"]
    pgb = _pgbackrest(restores)
    rows = [
        [
            r["tool"],
            r["restore_seconds"],
            r["recovery_seconds"],
            r["total_seconds"],
            _speed(pgb, r, "total_seconds"),
            r.get("segments_restored", "-"),
            "ok" if r["markers"] == [1] else str(r["markers"]),
            _all_runs(r, "runs_total_seconds"),
        ]
        for r in restores
    ]
    work = f" after {pg['workload']}" if pg.get("workload") else ""
    return [
        f"Restore to an instant ({pg['target']} UTC{work}), timed until the restored "
        "cluster has promoted and answers a query; " + _median_of(restores, "runs_total_seconds"),
        *_table(
            ["tool", "restore s", "start+replay s", "total s", "speed vs pgBackRest"]
            + ["WAL files fetched", "markers", "all runs (total s)"],
            rows,
            {1, 2, 3, 4, 5},
        ),
        "",
    ]


def _sqlite_section(sq: dict[str, Any]) -> list[str]:
    out: list[str] = []
    sessions = sq.get("sessions") or []
    if sessions:
        none = (sq.get("summary") or {}).get("none_fast", {}).get("median_tx_per_s")
        out.append(
            f"SQLite capture: one INSERT (200 B) per transaction, {sq['seconds']:g}s per run, "
            f"as fast as it can (fast) or at {sq['rate']:g} tx/s (rate); commit-to-archived "
            f"latency from inotify on the archive; {sq['litestream']}"
        )
        rows = []
        for r in sessions:
            rows.append(
                [
                    r["tool"],
                    r["mode"],
                    r["run"],
                    r["tx_per_s"],
                    _x(ratio(r["tx_per_s"], none)) if r["mode"] == "fast" else "-",
                    r.get("p50_ms"),
                    r.get("p99_ms"),
                    r.get("max_ms"),
                    r.get("lost", "-"),
                    r.get("archived_at_p99_ms", "-"),
                ]
            )
        out += _table(
            ["tool", "mode", "run", "tx/s", "vs none", "p50 ms", "p99 ms", "max ms"]
            + ["lost", "p99 ms (archived_at)"],
            rows,
            {2, 3, 4, 5, 6, 7, 8, 9},
        )
        out.append("")
    restore = sq.get("restore")
    if restore:
        lit = next((r for r in restore["tools"] if r["tool"] == "litestream"), None)
        out.append(
            f"SQLite restore: {_mib(restore['db_bytes'])} MiB database, {restore['commits']} "
            "commits archived on top of the base copy, restored to the newest instant "
            "(both with a full integrity_check)"
        )
        rows = [
            [
                r["tool"],
                r.get("seconds"),
                _speed(lit, r, "seconds") if lit else "-",
                " ".join(f"{t:.2f}" for t in r.get("runs_seconds", []))
                + "".join(f" failed after {t:.2f}" for t in r.get("failed_runs_seconds", [])),
                r.get("rows_in_source"),
                r.get("rows_restored"),
                r.get("writer_tx_per_s"),
                f"{r['archived_when_writer_ended']}, {r['catch_up_seconds']}"
                if "catch_up_seconds" in r
                else "-",
                r.get("start_seconds"),
                r.get("archiver_peak_rss_mib"),
            ]
            for r in restore["tools"]
        ]
        out += _table(
            ["tool", "restore s", "speed vs Litestream", "all runs (s)", "rows in source"]
            + ["rows restored", "writer tx/s", "archived at writer's end, catch-up s"]
            + ["start s", "archiver peak RSS MiB"],
            rows,
            {1, 2, 4, 5, 6, 7, 8, 9},
        )
        out.append("")
    return out
