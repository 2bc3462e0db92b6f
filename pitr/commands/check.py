"""pitr check: is the archive whole? WAL chains per timeline from every
backup on, stream batches and recorded gaps, objects missing from the store.

Exit 0 when whole, 4 when an object the catalog references is missing (or a
.history file read on the way is damaged), else 3 when the WAL or stream
archive has holes.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from pitr.context import AppContext
from pitr.output import report_command

if TYPE_CHECKING:
    from recovery.integrity import ReportedSource


@report_command("check")
def command(app: AppContext, source_name: str | None, output: str) -> None:
    """Continuity of WAL chains and stream batches, missing objects."""
    from pitr import kinds
    from recovery.integrity import check_archive

    repo = app.repo()
    report = check_archive(repo, chosen_sources(app, source_name))
    doc = report_json(report)
    doc["warnings"] = [
        line
        for src in app.config.sources.values()
        if source_name in (None, src.name)
        for line in kinds.get(src.kind).setup_warnings(app, src)
    ]
    if output == "json":
        from pitr.output import emit_json

        emit_json(doc)
    else:
        print_report(doc, "check")
    code = exit_code(report)
    if code:
        click.echo(
            f"pitr: check: {len(report.problems)} continuity problems, "
            f"{len(report.bad)} missing or damaged objects",
            err=True,
        )
        sys.exit(code)


def chosen_sources(app: AppContext, source_name: str | None) -> list[ReportedSource]:
    """(name, kind, the kind's reports) of the sources asked about."""
    from pitr import kinds

    return [
        (name, kind, kinds.get(kind).reports) for name, kind, _ in app.known_sources(source_name)
    ]


def exit_code(report: Any) -> int:
    from pitr import exitcodes

    if report.bad:
        return exitcodes.INTEGRITY
    if report.problems:
        return exitcodes.UNMET
    return exitcodes.OK


def report_json(report: Any) -> dict[str, Any]:
    """The JSON shared by check and verify."""
    from pitr.output import piece_json, window_json

    return {
        "ok": not report.bad and not report.problems,
        "objects_checked": report.objects,
        "stored_bytes_checked": report.stored_bytes,
        "sources": [
            {
                "name": s.name,
                "kind": s.kind,
                **window_json(s.coverage, s.coverage.gaps),
                "lost": [piece_json(p) for p in s.lost],
                "problems": [
                    {"type": p.type, "detail": p.detail, **dict(p.extra)} for p in s.problems
                ],
            }
            for s in report.sources
        ],
        "bad_objects": [
            {
                "oid": b.oid,
                "problem": b.problem,
                "detail": b.detail,
                "refs": [{"source": r.source, "kind": r.kind, "name": r.name} for r in b.refs],
            }
            for b in report.bad
        ],
    }


def print_report(doc: dict[str, Any], what: str) -> None:
    from datetime import datetime

    from catalog.reports import REF_KINDS
    from pitr.output import heading, when

    def t(text: str | None) -> str:
        return when(datetime.fromisoformat(text)) if text else "-"

    for s in doc["sources"]:
        heading(f"{s['name']} ({s['kind']})")
        click.echo(f"  recoverable: {t(s['recoverable_from'])} .. {t(s['recoverable_to'])}")
        for g in s["gaps"]:
            click.echo(f"  gap {t(g['from'])} .. {t(g['to'])}: {g['detail']}")
        for p in s["problems"]:
            click.echo(f"  {p['type']}: {p['detail']}")
        for p in s["lost"]:
            click.echo(f"  no longer restorable {t(p['from'])} .. {t(p['to'])}: {p['detail']}")
    for b in doc["bad_objects"]:
        click.echo(f"object {b['oid']}: {b['detail']}")
        for r in b["refs"]:
            what_ = REF_KINDS.get(r["kind"], r["kind"])
            click.echo(f"  needed by {r['source']}: {what_} {r['name']}")
    for line in doc.get("warnings", []):
        click.echo(f"warning: {line}")
    problems = sum(len(s["problems"]) for s in doc["sources"])
    click.echo(
        f"{what}: {doc['objects_checked']} objects, {problems} continuity problems, "
        f"{len(doc['bad_objects'])} missing or damaged objects" + (": ok" if doc["ok"] else "")
    )
