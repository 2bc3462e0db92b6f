"""One source's timeline as inline SVG: the recoverable window over a span
ending now, holes in red with their cause, backups and marks as ticks.

Drawn on the server so that the page needs no JavaScript; every shape
carries a <title> (the browser's tooltip) and a class the page test reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any

from pitr.output import when

WIDTH, HEIGHT, BAR_TOP, BAR_HEIGHT = 1000, 64, 18, 20
MIN_WIDTH = 2.0  # a hole of a second in a week must still be visible


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def x(self, at: datetime) -> float:
        """at's position on the bar, clamped to it."""
        offset = (at - self.start).total_seconds() / self.seconds
        return round(min(max(offset, 0.0), 1.0) * WIDTH, 1)

    def covers(self, start: datetime, end: datetime) -> bool:
        return start <= self.end and end >= self.start


def render(status: Any, span: Span) -> str:
    """status: recovery.status.SourceStatus."""
    shapes = [
        f'<rect class="track" x="0" y="{BAR_TOP}" width="{WIDTH}" height="{BAR_HEIGHT}"/>',
        *_pieces(status, span),
        *_ticks("backup", [(_backup_title(b), b.finished_at) for b in status.backups], span),
        *_ticks("mark", [(f"mark {name} {when(at)}", at) for name, at in status.marks], span),
        *_axis(span),
    ]
    label = f"timeline of {status.name} from {when(span.start)} to {when(span.end)}"
    return (
        f'<svg class="timeline" data-source="{escape(status.name)}" role="img" '
        f'aria-label="{escape(label)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'preserveAspectRatio="none">' + "".join(shapes) + "</svg>"
    )


def _backup_title(backup: Any) -> str:
    return f"backup {backup.id} finished {when(backup.finished_at)}"


def _pieces(status: Any, span: Span) -> list[str]:
    """Restorable stretches in green, holes and lost facts in red. What
    lies outside the window (before the first backup, after the newest
    archived fact) stays the grey of the track: not a gap, just not there."""
    shapes = []
    for piece in [*status.coverage.restorable, *status.gaps]:
        end = piece.end or span.end
        if not span.covers(piece.start, end):
            continue
        x0, x1 = span.x(piece.start), span.x(end)
        width = max(x1 - x0, MIN_WIDTH)
        if piece.ok:
            what, title = "window", f"recoverable {when(piece.start)} .. {when(piece.end)}"
        else:
            what, title = "gap", f"gap {when(piece.start)} .. {when(piece.end)}: {piece.detail}"
        shapes.append(
            f'<rect class="{what}" x="{x0}" y="{BAR_TOP}" width="{width}" '
            f'height="{BAR_HEIGHT}"><title>{escape(title)}</title></rect>'
        )
    return shapes


def _ticks(what: str, items: list[tuple[str, datetime]], span: Span) -> list[str]:
    """A tick above the bar for each instant within the span."""
    top = 4 if what == "mark" else BAR_TOP - 6
    return [
        f'<rect class="{what}" x="{span.x(at) - 1.5}" y="{top}" width="3" '
        f'height="{BAR_TOP + BAR_HEIGHT - top}"><title>{escape(title)}</title></rect>'
        for title, at in items
        if span.start <= at <= span.end
    ]


def _axis(span: Span) -> list[str]:
    """Five instant labels under the bar (UTC, as the CLI prints them)."""
    labels = []
    for i in range(5):
        at = span.start + timedelta(seconds=span.seconds * i / 4)
        anchor = ("start", "middle", "middle", "middle", "end")[i]
        text = when(at).replace("T", " ")
        labels.append(
            f'<text x="{WIDTH * i / 4}" y="{HEIGHT - 4}" text-anchor="{anchor}">'
            f"{escape(text)}</text>"
        )
    return labels
