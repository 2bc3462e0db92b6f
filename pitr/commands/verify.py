"""pitr verify: every object the catalog references exists with the size it
was written with; with --read-data each one is read back and re-hashed.

Exit 0 when every object is sound, 4 when one is missing or damaged (each is
listed with the backups, WAL files and stream batches that need it, and the
instants that can no longer be restored).
"""

from __future__ import annotations

import sys

import click

from pitr.context import AppContext
from pitr.output import output_option, source_option


@click.command(name="verify")
@click.option("--read-data", is_flag=True, help="Read every object back and re-hash it.")
@source_option("Only objects of this source.")
@click.option(
    "--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Parallel reads."
)
@output_option()
@click.pass_obj
def command(
    app: AppContext, read_data: bool, source_name: str | None, workers: int, output: str
) -> None:
    """Check stored objects: sizes, or with --read-data their hashes."""
    from pitr.commands.check import chosen_sources, exit_code, print_report, report_json
    from pitr.progress import byte_progress
    from recovery.integrity import verify_archive

    repo = app.repo()
    sources = chosen_sources(app, source_name)
    with byte_progress("verify") as progress:
        report = verify_archive(
            repo, sources, read_data=read_data, workers=workers, progress=progress
        )
    doc = {"read_data": read_data, **report_json(report)}
    if output == "json":
        from pitr.output import emit_json

        emit_json(doc)
    else:
        print_report(doc, "verify" + (" --read-data" if read_data else ""))
    code = exit_code(report)
    if code:
        click.echo(f"pitr: verify: {len(report.bad)} missing or damaged objects", err=True)
        sys.exit(code)
