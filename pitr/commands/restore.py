"""pitr restore: every chosen source back to one instant, mark or other
target (docs/targets.md says which to use when).

All plans are made before anything is touched, so a target that one source
cannot reach leaves every source as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import click

from pitr.config import ConfigError
from pitr.context import AppContext
from pitr.kinds.base import MODES, PartialRequest, RestoreRequest, SourceConfig
from pitr.targets import ACTIONS, Target


@click.command(name="restore")
@click.option(
    "--to",
    "to",
    metavar="TIME|MARK",
    help="Target instant (local time unless a zone is given), a mark's name, "
    "'latest' (all archived WAL) or 'end-of-backup'.",
)
@click.option("--to-lsn", metavar="LSN", help="PostgreSQL: stop at this WAL location.")
@click.option("--to-xid", metavar="XID", help="PostgreSQL: stop at this transaction's commit.")
@click.option(
    "--exclusive", is_flag=True, help="Stop just before the target (time, LSN or xid), not after."
)
@click.option(
    "--target-action",
    type=click.Choice(ACTIONS),
    help="PostgreSQL, once replay reaches the target: promote (default), pause or shutdown.",
)
@click.option(
    "--source", "source_name", metavar="NAME", help="Only this source (default: every source)."
)
@click.option(
    "--pgdata", metavar="DIR", help="Where to lay down a PostgreSQL source (default: its pgdata)."
)
@click.option(
    "--redis-url", metavar="URL", help="Redis to restore into (default: the source's url)."
)
@click.option(
    "--into",
    metavar="PATH",
    help="Where to write a SQLite source: a file, or a directory for several databases.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@click.option(
    "--force", is_flag=True, help="Replace existing data (PostgreSQL's and SQLite's is set aside)."
)
@click.option(
    "--delta",
    is_flag=True,
    help="PostgreSQL: rewrite only what differs in an existing, stopped data directory "
    "of the same cluster.",
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    metavar="TABLE",
    help="Partial restore: only this table's rows (repeatable), brought into a live database.",
)
@click.option("--where", metavar="SQL", help="Partial restore: only rows meeting this condition.")
@click.option(
    "--into-database",
    metavar="DSN|FILE",
    help="Partial restore: the live database the rows go into (default: the source's own).",
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    help="Partial restore: insert-missing (default), replace (by primary key) or side-table.",
)
@click.option(
    "--scratch-dir",
    metavar="DIR",
    help="Partial restore: where the restored copy is made (default: the temp directory).",
)
@click.pass_obj
def command(
    app: AppContext,
    to: str | None,
    to_lsn: str | None,
    to_xid: str | None,
    exclusive: bool,
    target_action: str | None,
    source_name: str | None,
    pgdata: str | None,
    redis_url: str | None,
    into: str | None,
    dry_run: bool,
    force: bool,
    delta: bool,
    tables: tuple[str, ...],
    where: str | None,
    into_database: str | None,
    mode: str | None,
    scratch_dir: str | None,
) -> None:
    """Restore sources to the instant TIME, the mark MARK, or another target;
    with --table, only those rows, into a live database."""
    from pitr import kinds
    from pitr.targets import check_sources, parse_target, with_marks

    _check_options(
        tables,
        {
            "--where": where,
            "--into-database": into_database,
            "--mode": mode,
            "--scratch-dir": scratch_dir,
        },
        {
            "--pgdata": pgdata,
            "--redis-url": redis_url,
            "--into": into,
            "--force": force,
            "--delta": delta,
            "--target-action": target_action,
        },
    )
    target = parse_target(to, to_lsn, to_xid, exclusive, target_action)
    target = with_marks(app, target)
    sources = _sources(app, source_name, target)
    if tables and len(sources) > 1:
        raise ConfigError("--table restores one source's rows: name it with --source")
    check_sources(target, [(s.name, s.kind, kinds.get(s.kind).target_forms) for s in sources])
    if delta and not any(kinds.get(s.kind).delta_restores for s in sources):
        able = " or ".join(k for k in kinds.names() if kinds.get(k).delta_restores)
        raise ConfigError(f"--delta is for {able} sources: name one with --source")
    request = RestoreRequest(
        target.instant,
        force,
        {"pgdata": pgdata, "redis_url": redis_url, "into": into},
        target.goal,
        delta,
    )
    for option, value in request.into.items():
        takers = [s for s in sources if kinds.get(s.kind).into_option == option]
        if value and len(takers) > 1:
            flag = "--" + option.replace("_", "-")
            raise ConfigError(
                f"{flag} names one target: choose a {takers[0].kind} source with --source"
            )

    click.echo(target.describe(to))
    if tables:
        rows = PartialRequest(
            tuple(dict.fromkeys(tables)), where, scratch_dir, into_database, mode or MODES[0]
        )
        src = sources[0]
        _restore_rows(
            app,
            src,
            replace(request, target=target.marks.get(src.name, target.instant)),
            rows,
            dry_run,
        )
        return
    jobs = [
        kinds.get(src.kind).plan_restore(
            app, src, replace(request, target=target.marks.get(src.name, target.instant))
        )
        for src in sources
    ]
    for job in jobs:
        for line in job.describe():
            click.echo(f"  {line}")
    if dry_run:
        click.echo("dry run: nothing changed")
        return
    # Every target is checked before any is touched: a refusal leaves all as they were.
    for job in jobs:
        job.check_target()
    for job in jobs:
        job.execute(app)


def _check_options(
    tables: tuple[str, ...], partial: Mapping[str, object], whole: Mapping[str, object]
) -> None:
    """The options of a partial restore and of a whole one do not mix."""
    if not tables and any(partial.values()):
        raise ConfigError(f"{_first_set(partial)} is for a partial restore: name a --table")
    if tables and any(whole.values()):
        raise ConfigError(f"{_first_set(whole)} is for a whole restore, not with --table")


def _first_set(options: Mapping[str, object]) -> str:
    return next(name for name, value in options.items() if value)


def _restore_rows(
    app: AppContext, src: SourceConfig, request: RestoreRequest, rows: PartialRequest, dry_run: bool
) -> None:
    from pitr import kinds

    kind = kinds.get(src.kind)
    if dry_run:
        for line in kind.plan_restore(app, src, request).describe():
            click.echo(f"  {line}")
        click.echo(f"  then {', '.join(rows.tables)} by {rows.mode}; dry run: nothing changed")
        return
    kind.restore_rows(app, src, request, rows)


def _sources(app: AppContext, name: str | None, target: Target) -> list[SourceConfig]:
    """--source, else every source: of the config, or those a mark covers."""
    if name:
        return [app.source(name)]
    sources = list(app.config.sources.values())
    if target.goal.form == "mark":
        sources = [s for s in sources if s.name in target.marks]
    if not sources:
        raise ConfigError("the configuration has no sources to restore")
    return sources
