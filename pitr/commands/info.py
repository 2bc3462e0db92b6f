"""pitr info: per source, its identity, backups, recoverable window and
archive totals."""

from __future__ import annotations

from typing import Any

import click

from pitr.context import AppContext
from pitr.output import report_command


@report_command("info")
def command(app: AppContext, source_name: str | None, output: str) -> None:
    """Sources, backups, recoverable windows and sizes."""
    doc = info_doc(app, source_name)
    if output == "json":
        from pitr.output import emit_json

        emit_json(doc)
        return
    _print(doc)


def info_doc(app: AppContext, source_name: str | None) -> dict[str, Any]:
    """What `info --output json` prints (and /api/sources serves)."""
    from catalog import reports
    from catalog.marks import marks_by_source
    from pitr import kinds
    from recovery.status import source_status

    repo = app.repo()
    statuses = [
        source_status(repo, name, kind, kinds.get(kind).reports, configured)
        for name, kind, configured in app.known_sources(source_name)
    ]
    with repo.catalog.session() as s:
        totals = reports.repository_totals(s)
        marks = marks_by_source(s)
    return {
        "repository": {
            "url": app.config.repository.url,
            "catalog": repo.catalog.safe_url,
            **totals,
        },
        "sources": [source_json(st, marks.get(st.name, [])) for st in statuses],
    }


def source_json(st: Any, marks: list[Any]) -> dict[str, Any]:
    from pitr.output import piece_json, window_json
    from pitr.timeparse import format_utc

    return {
        "name": st.name,
        "kind": st.kind,
        "configured": st.configured,
        "identity": st.identity,
        "backups": [
            {
                "id": b.id,
                "kind": b.kind,
                "started_at": format_utc(b.started_at),
                "finished_at": format_utc(b.finished_at),
                "size_bytes": b.size_bytes,
                "stored_bytes": b.stored_bytes,
                "dedup_ratio": None if b.dedup_ratio is None else round(b.dedup_ratio, 2),
                "timeline": b.timeline,
                "start_lsn": b.start_lsn,
                "stop_lsn": b.stop_lsn,
            }
            for b in st.backups
        ],
        **window_json(st.coverage, st.gaps),
        "lower_precision": [piece_json(p) for p in st.imprecise],
        "last_archived_at": format_utc(st.last_archived_at),
        "archive": st.totals,
        "notes": st.notes,
        "marks": [
            {"name": m.name, "at": format_utc(m.at), "lsn": m.lsn, "timeline": m.timeline}
            for m in marks
        ],
    }


def _print(doc: dict[str, Any]) -> None:
    from datetime import datetime

    from pitr import kinds
    from pitr.output import heading, table, when
    from pitr.units import human_bytes

    def t(text: str | None) -> str:
        return when(datetime.fromisoformat(text)) if text else "-"

    for src in doc["sources"]:
        ident = src["identity"]
        who = f"{src['name']} ({src['kind']})"
        if ident.get("system_identifier"):
            version = ident.get("pg_version") or 0
            who += (
                f", system {ident['system_identifier']}, PostgreSQL "
                f"{version // 10000 if version >= 1000 else version}"
            )
        if not src["configured"]:
            who += ", not in the config"
        heading(who)
        click.echo(f"  recoverable: {t(src['recoverable_from'])} .. {t(src['recoverable_to'])}")
        for g in src["gaps"]:
            click.echo(f"  gap {t(g['from'])} .. {t(g['to'])}: {g['detail']}")
        for p in src["lower_precision"]:
            click.echo(f"  lower precision {t(p['from'])} .. {t(p['to'])}: {p['detail']}")
        summary = kinds.get(src["kind"]).archive_summary(src["archive"])
        if summary:
            click.echo(f"  {summary}")
        click.echo(f"  last archived: {t(src['last_archived_at'])}")
        for note in src["notes"]:
            click.echo(f"  note: {note}")
        for m in src["marks"]:
            where = f", restore point at LSN {m['lsn']}" if m["lsn"] else ""
            click.echo(f"  mark {m['name']}: {t(m['at'])}{where}")
        if src["backups"]:
            table(
                None,
                ["backup", "started", "finished", "size", "stored", "dedup"],
                [
                    [
                        b["id"],
                        t(b["started_at"]),
                        t(b["finished_at"]),
                        human_bytes(b["size_bytes"]),
                        human_bytes(b["stored_bytes"]),
                        "-" if b["dedup_ratio"] is None else f"{b['dedup_ratio']:.1f}x",
                    ]
                    for b in src["backups"]
                ],
            )
    repo = doc["repository"]
    click.echo(
        f"repository {repo['url']}: {repo['objects']} objects, "
        f"{human_bytes(repo['stored_bytes'])} stored for {human_bytes(repo['bytes'])} of data"
    )
