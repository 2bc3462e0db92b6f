"""pitr expire: apply retention, then remove objects nothing references.

--keep N keeps the N newest backups (snapshots) of each source,
--keep-within DURATION every one finished within DURATION; with both, a
backup either rule keeps stays. The backup needed to restore the start of
the kept window stays too, as does the backup each mark's restore starts
from (unless --ignore-marks), and the WAL and stream entries the kept
backups need. With neither option only unreferenced objects are removed.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from pitr.context import AppContext
from pitr.output import duration, output_option, source_option


@click.command(name="expire")
@click.option("--keep", type=click.IntRange(min=1), metavar="N", help="Keep the N newest backups.")
@duration("--keep-within", "Keep every backup finished within DURATION (e.g. 7d).")
@duration(
    "--grace",
    "Leave unreferenced objects younger than this (writers not yet committed).",
    default="1h",
    show_default=True,
)
@source_option("Apply retention to this source only.")
@click.option(
    "--ignore-marks",
    is_flag=True,
    help="Let retention remove what marks need (restores to old marks stop working).",
)
@click.option("--dry-run", is_flag=True, help="Print what would be removed, change nothing.")
@output_option()
@click.pass_obj
def command(
    app: AppContext,
    keep: int | None,
    keep_within: timedelta | None,
    grace: timedelta,
    source_name: str | None,
    ignore_marks: bool,
    dry_run: bool,
    output: str,
) -> None:
    """Apply retention and remove unreferenced objects."""
    from catalog.journal import stale_entries
    from catalog.marks import MarkPoint, marks_by_source
    from pitr import exitcodes
    from pitr.commands.check import chosen_sources
    from pitr.expiry import apply_plan, garbage, sweep
    from recovery.retention import Policy, plan_expiry

    repo = app.repo()
    now = datetime.now(UTC)
    marks: tuple[MarkPoint, ...] = ()
    if not ignore_marks:
        with repo.catalog.session() as s:
            marks = tuple(m for ms in marks_by_source(s).values() for m in ms)
    policy = Policy(keep, keep_within, marks)
    plans = [
        plan_expiry(repo, name, hooks, policy, now)
        for name, _, hooks in chosen_sources(app, source_name)
    ]
    reused: list[str] = []
    stale = stale_entries(repo, now)
    if dry_run:
        found = garbage(repo, plans, now, grace)
    else:
        for plan in plans:
            apply_plan(repo, plan)
        found = garbage(repo, [], now, grace)
        reused = sweep(repo, found)
        for key in stale:
            repo.store.delete(key)
    doc = _json(plans, found, dry_run, grace, len(stale))
    if output == "json":
        from pitr.output import emit_json

        emit_json(doc)
    else:
        _print(plans, doc)
    if reused:
        click.echo(
            f"pitr: expire: {len(reused)} removed objects were taken up by a writer meanwhile "
            f"(first {reused[0]}); run pitr check and take a new backup",
            err=True,
        )
        sys.exit(exitcodes.INTEGRITY)


def _json(
    plans: list[Any], found: Any, dry_run: bool, grace: timedelta, journal_removed: int
) -> dict[str, Any]:
    from pitr.timeparse import format_utc

    return {
        "dry_run": dry_run,
        "sources": [
            {
                "name": p.name,
                "kind": p.kind,
                "window_start": format_utc(p.window_start),
                "kept": [{"id": bid, "reason": why} for bid, why in sorted(p.kept.items())],
                "removed_backups": [
                    {"id": bid, "finished_at": format_utc(at)} for bid, at in p.removed
                ],
                "removed_wal": [f.name for f in p.of_type("wal")],
                "removed_stream_batches": len(p.of_type("stream_batch")),
                "removed_stream_gaps": len(p.of_type("stream_gap")),
                "removed_sqlite_batches": len(p.of_type("sqlite_batch")),
                "removed_sqlite_gaps": len(p.of_type("sqlite_gap")),
                "removed_repl_epochs": [f.name for f in p.of_type("repl_epoch")],
                "removed_repl_batches": len(p.of_type("repl_batch")),
            }
            for p in plans
            if p.kind
        ],
        "objects": {
            "removed": len(found.objects),
            "removed_bytes": found.bytes,
            "kept_within_grace": len(found.young),
            "grace_seconds": grace.total_seconds(),
        },
        "journal_entries_removed": journal_removed,
    }


def _print(plans: list[Any], doc: dict[str, Any]) -> None:
    from pitr.output import heading, table, when
    from pitr.units import human_bytes

    verb = "would remove" if doc["dry_run"] else "removed"
    for p, s in zip([p for p in plans if p.kind], doc["sources"], strict=True):
        heading(
            f"{p.name} ({p.kind})"
            + (f": kept window from {when(p.window_start)}" if p.window_start else "")
        )
        rows = [[bid, "keep", why] for bid, why in sorted(p.kept.items())]
        rows += [[bid, verb, f"finished {when(at)}"] for bid, at in p.removed]
        if rows:
            table(None, ["backup", "", "why"], sorted(rows))
        wal = s["removed_wal"]
        if wal:
            click.echo(f"  {verb} {len(wal)} WAL files ({wal[0]} .. {wal[-1]})")
        if s["removed_stream_batches"] or s["removed_stream_gaps"]:
            click.echo(
                f"  {verb} {s['removed_stream_batches']} stream batches and "
                f"{s['removed_stream_gaps']} recorded gaps"
            )
        if s["removed_sqlite_batches"] or s["removed_sqlite_gaps"]:
            click.echo(
                f"  {verb} {s['removed_sqlite_batches']} frame batches and "
                f"{s['removed_sqlite_gaps']} recorded gaps"
            )
        if s["removed_repl_epochs"] or s["removed_repl_batches"]:
            click.echo(
                f"  {verb} {len(s['removed_repl_epochs'])} replication epochs and "
                f"{s['removed_repl_batches']} batches"
            )
    o = doc["objects"]
    click.echo(
        f"objects: {verb} {o['removed']} no longer referenced "
        f"({human_bytes(o['removed_bytes'])}); {o['kept_within_grace']} unreferenced objects "
        f"younger than the grace period kept"
    )
    if doc["dry_run"]:
        click.echo("dry run: nothing changed")
