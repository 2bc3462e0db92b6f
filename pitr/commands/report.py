"""pitr report rpo: how far behind archiving is, per source; exit 3 when a
source is behind --max-lag or its newest backup is older than
--max-backup-age, so cron or a monitoring check can alert on it."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from pitr.context import AppContext
from pitr.output import duration, output_option, source_option


@click.group(name="report")
def command() -> None:
    """Reports: rpo."""


@dataclass
class Rpo:
    status: Any  # recovery.status.SourceStatus
    lag: float | None
    backup_age: float | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@command.command(name="rpo")
@source_option()
@duration("--max-lag", "Fail (exit 3) when a source's newest archived fact is older (e.g. 5m).")
@duration(
    "--max-backup-age",
    "Fail (exit 3) when a source's newest backup or snapshot is older (e.g. 26h).",
)
@output_option("prometheus")
@click.pass_obj
def rpo(
    app: AppContext,
    source_name: str | None,
    max_lag: timedelta | None,
    max_backup_age: timedelta | None,
    output: str,
) -> None:
    """Recovery point report: last archived, lag, recoverable window and gaps."""
    from pitr import kinds
    from recovery.status import source_status

    repo = app.repo()
    sources = app.known_sources(source_name)
    now = datetime.now(UTC)
    rows = [
        assess(
            source_status(repo, name, kind, kinds.get(kind).reports, cfg),
            now,
            max_lag,
            max_backup_age,
        )
        for name, kind, cfg in sources
    ]
    if output == "json":
        from pitr.output import emit_json

        emit_json([rpo_json(r) for r in rows])
    elif output == "prometheus":
        click.echo(prometheus(rows, now), nl=False)
    else:
        _print(rows)
    behind = [r for r in rows if not r.ok]
    for r in behind:
        click.echo(f"pitr: report rpo: {r.status.name}: {'; '.join(r.problems)}", err=True)
    if behind:
        from pitr import exitcodes

        sys.exit(exitcodes.UNMET)


def assess(
    status: Any, now: datetime, max_lag: timedelta | None, max_backup_age: timedelta | None
) -> Rpo:
    last, backup = status.last_archived_at, status.last_backup_at
    r = Rpo(
        status,
        None if last is None else (now - last).total_seconds(),
        None if backup is None else (now - backup).total_seconds(),
    )
    over = (
        _over(r.lag, max_lag, "nothing archived yet", "last archived", "--max-lag"),
        _over(
            r.backup_age,
            max_backup_age,
            "no backup yet",
            "newest backup finished",
            "--max-backup-age",
        ),
    )
    r.problems += [problem for problem in over if problem]
    return r


def _over(
    age: float | None, limit: timedelta | None, none: str, what: str, option: str
) -> str | None:
    """What is wrong with an age against its limit: `none` when there is
    nothing to measure; None within the limit or with no limit."""
    if limit is None:
        return None
    if age is None:
        return none
    if age > limit.total_seconds():
        return f"{what} {_ago(age)} ago, over {option} {_ago(limit.total_seconds())}"
    return None


def _ago(seconds: float) -> str:
    from pitr.output import ago

    return ago(seconds)


def rpo_json(r: Rpo) -> dict[str, Any]:
    from pitr.output import window_json
    from pitr.timeparse import format_utc

    st = r.status
    return {
        "source": st.name,
        "kind": st.kind,
        "last_archived_at": format_utc(st.last_archived_at),
        "lag_seconds": None if r.lag is None else round(r.lag, 3),
        **window_json(st.coverage, st.gaps),
        "last_backup_at": format_utc(st.last_backup_at),
        "backup_age_seconds": None if r.backup_age is None else round(r.backup_age, 3),
        "ok": r.ok,
        "problems": r.problems,
    }


# name, help, value of a row (None: no sample)
METRICS: list[tuple[str, str, Any]] = [
    (
        "pitr_last_archived_timestamp_seconds",
        "When the source's newest fact (WAL file, stream batch, snapshot) was archived.",
        lambda r: _ts(r.status.last_archived_at),
    ),
    (
        "pitr_archive_lag_seconds",
        "Seconds since the source's newest fact was archived.",
        lambda r: r.lag,
    ),
    (
        "pitr_last_backup_timestamp_seconds",
        "When the source's newest base backup or snapshot finished.",
        lambda r: _ts(r.status.last_backup_at),
    ),
    (
        "pitr_backup_age_seconds",
        "Seconds since the source's newest base backup or snapshot finished.",
        lambda r: r.backup_age,
    ),
    (
        "pitr_recoverable_from_timestamp_seconds",
        "Earliest instant a restore of the source can reach.",
        lambda r: _ts(r.status.coverage.recoverable_from),
    ),
    (
        "pitr_recoverable_to_timestamp_seconds",
        "Latest instant a restore of the source can reach.",
        lambda r: _ts(r.status.coverage.recoverable_to),
    ),
    (
        "pitr_recoverable_gaps",
        "Holes in the recoverable window and stream entries known lost.",
        lambda r: len(r.status.gaps),
    ),
    (
        "pitr_backups",
        "Base backups or snapshots in the catalog.",
        lambda r: len(r.status.backups),
    ),
    (
        "pitr_rpo_ok",
        "1 when the source is within --max-lag and --max-backup-age, else 0.",
        lambda r: 1 if r.ok else 0,
    ),
]


def prometheus(rows: list[Rpo], now: datetime) -> str:
    """The text exposition format (for node_exporter's textfile collector)."""
    lines = [
        "# HELP pitr_source_info A source pitr archives, with its kind.",
        "# TYPE pitr_source_info gauge",
    ]
    lines += [
        f'pitr_source_info{{source="{_label(r.status.name)}",kind="{_label(r.status.kind)}"}} 1'
        for r in rows
    ]
    for name, help_text, value in METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for r in rows:
            v = value(r)
            if v is not None:
                lines.append(f'{name}{{source="{_label(r.status.name)}"}} {_num(v)}')
    lines += [
        "# HELP pitr_report_timestamp_seconds When this report was made.",
        "# TYPE pitr_report_timestamp_seconds gauge",
        f"pitr_report_timestamp_seconds {_num(now.timestamp())}",
    ]
    return "\n".join(lines) + "\n"


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:.3f}"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _print(rows: list[Rpo]) -> None:
    from pitr.output import ago, table, when

    table(
        None,
        ["source", "kind", "last archived", "lag", "newest backup", "age", "recoverable", "status"],
        [
            [
                r.status.name,
                r.status.kind,
                when(r.status.last_archived_at),
                ago(r.lag),
                when(r.status.last_backup_at),
                ago(r.backup_age),
                f"{when(r.status.coverage.recoverable_from)} .. "
                f"{when(r.status.coverage.recoverable_to)}",
                "ok" if r.ok else "BEHIND",
            ]
            for r in rows
        ],
    )
    for r in rows:
        for g in r.status.gaps:
            click.echo(f"{r.status.name}: gap {when(g.start)} .. {when(g.end)}: {g.detail}")
        for note in r.status.notes:
            click.echo(f"{r.status.name}: note: {note}")
