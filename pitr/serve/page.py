"""The status page: one HTML document, rendered on the server, readable
without JavaScript, that reloads itself. Words and units are those of
`pitr report rpo` and `pitr info`."""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape

from pitr.health import Rpo
from pitr.output import ago, when
from pitr.serve.timeline import Span, render

# ?span= values the page offers, the first being the default; "all": from
# the oldest instant any source can reach
SPANS = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7), "all": None}
SPAN_WORDS = {"1h": "last hour", "1d": "last day", "7d": "last week", "all": "everything"}
REFRESH_SECONDS = 30

STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:0 1rem;color:#222}
h1{font-size:1.3rem}h2{font-size:1.1rem;margin:1.6rem 0 .4rem}
.ok{color:#17692e}.behind{color:#b3141b;font-weight:bold}
nav a{margin-right:.8rem}nav a.on{font-weight:bold;text-decoration:none;color:#222}
.scroll{overflow-x:auto}table{border-collapse:collapse}td,th{padding:.15rem .7rem .15rem 0;
text-align:left;white-space:nowrap}th{font-weight:600;color:#555}
svg.timeline{width:100%;height:64px;display:block;margin:.3rem 0}
svg .track{fill:#eee}svg .window{fill:#3b9c57}svg .gap{fill:#d7262e}
svg .backup{fill:#1f3b73}svg .mark{fill:#c27c0e}svg text{font-size:11px;fill:#555}
ul{margin:.2rem 0;padding-left:1.2rem}.gaps li{color:#b3141b}
"""


def page(repository: str, rows: list[Rpo], span_name: str, now: datetime) -> str:
    span = _span(rows, span_name, now)
    behind = [r for r in rows if not r.ok]
    summary = (
        f'<p class="behind">{len(behind)} of {len(rows)} sources behind</p>'
        if behind
        else f'<p class="ok">all {len(rows)} sources within their limits</p>'
    )
    nav = " ".join(
        f'<a href="?span={name}"{" class=on" if name == span_name else ""}>{SPAN_WORDS[name]}</a>'
        for name in SPANS
    )
    sections = "".join(_source(r, span) for r in rows)
    empty = "" if rows else "<p>No sources: nothing is configured or archived yet.</p>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f'<meta http-equiv=refresh content="{REFRESH_SECONDS}">'
        f"<title>pitr: {escape(repository)}</title><style>{STYLE}</style></head><body>"
        f"<h1>pitr — {escape(repository)}</h1>"
        f"<p>as of {when(now)} · refreshes every {REFRESH_SECONDS}s</p>"
        f"<nav>{nav}</nav>{summary}{empty}{sections}</body></html>"
    )


def _span(rows: list[Rpo], name: str, now: datetime) -> Span:
    length = SPANS[name]
    if length is None:
        starts = [r.status.coverage.recoverable_from for r in rows]
        starts += [b.started_at for r in rows for b in r.status.backups]
        oldest = min((t for t in starts if t is not None), default=now - timedelta(hours=1))
        length = max((now - oldest) * 1.1, timedelta(seconds=10))  # a margin before it
    return Span(now - length, now)


def _source(r: Rpo, span: Span) -> str:
    st = r.status
    state = '<span class="ok">ok</span>' if r.ok else '<span class="behind">BEHIND</span>'
    cells = [
        ("last archived", when(st.last_archived_at)),
        ("lag", _against(r.lag, r.limits.max_lag)),
        ("newest backup", when(st.last_backup_at)),
        ("age", _against(r.backup_age, r.limits.max_backup_age)),
        (
            "recoverable",
            f"{when(st.coverage.recoverable_from)} .. {when(st.coverage.recoverable_to)}",
        ),
    ]
    table = (
        '<div class="scroll"><table><tr>'
        + "".join(f"<th>{name}</th>" for name, _ in cells)
        + "</tr><tr>"
        + "".join(f"<td>{escape(value)}</td>" for _, value in cells)
        + "</tr></table></div>"
    )
    lines = [
        _list("problems", r.problems),
        _list("gaps", [f"gap {when(g.start)} .. {when(g.end)}: {g.detail}" for g in st.gaps]),
        _list("marks", [f"mark {name}: {when(at)}" for name, at in st.marks]),
        _list("notes", [f"note: {n}" for n in st.notes]),
    ]
    return (
        f'<section id="source-{escape(st.name)}"><h2>{escape(st.name)} ({escape(st.kind)}) '
        f"{state}</h2>{table}{render(st, span)}{''.join(lines)}</section>"
    )


def _against(age: float | None, limit: timedelta | None) -> str:
    """'3m10s' or '3m10s of 5m00s': an age beside the limit it is held to."""
    if limit is None:
        return ago(age)
    return f"{ago(age)} of {ago(limit.total_seconds())}"


def _list(what: str, items: list[str]) -> str:
    if not items:
        return ""
    return f'<ul class="{what}">' + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"
