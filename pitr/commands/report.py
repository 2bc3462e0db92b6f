"""pitr report rpo: how far behind archiving is, per source; exit 3 when a
source is behind its lag limit or its newest backup is older than its
backup age limit (options, else the config: pitr.health), so cron or a
monitoring check can alert on it."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click

from pitr.context import AppContext
from pitr.output import duration, output_option, source_option


@click.group(name="report")
def command() -> None:
    """Reports: rpo."""


@command.command(name="rpo")
@source_option()
@duration(
    "--max-lag",
    "Fail (exit 3) when a source's newest archived fact is older (e.g. 5m); "
    "default: the config's max_lag.",
)
@duration(
    "--max-backup-age",
    "Fail (exit 3) when a source's newest backup or snapshot is older (e.g. 26h); "
    "default: the config's max_backup_age.",
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
    from pitr.config import Thresholds
    from pitr.health import add_live, assess_sources

    rows = assess_sources(app, source_name, Thresholds(max_lag, max_backup_age))
    if output != "prometheus":
        add_live(app, rows)
    if output == "json":
        from pitr.health import rpo_json
        from pitr.output import emit_json

        emit_json([rpo_json(r) for r in rows])
    elif output == "prometheus":
        from pitr.metrics import SourceCollector, exposition

        click.echo(exposition(SourceCollector(lambda: rows)).decode(), nl=False)
    else:
        _print(rows)
    behind = [r for r in rows if not r.ok]
    for r in behind:
        click.echo(f"pitr: report rpo: {r.status.name}: {'; '.join(r.problems)}", err=True)
    if behind:
        from pitr import exitcodes

        sys.exit(exitcodes.UNMET)


def _print(rows: list[Any]) -> None:
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
        for p in r.status.imprecise:
            click.echo(
                f"{r.status.name}: lower precision {when(p.start)} .. {when(p.end)}: {p.detail}"
            )
        for note in r.status.notes:
            click.echo(f"{r.status.name}: note: {note}")
        for line in r.live.lines if r.live is not None else ():
            click.echo(f"{r.status.name}: {line}")
        for warning in r.live.warnings if r.live is not None else ():
            click.echo(f"{r.status.name}: warning: {warning}")
