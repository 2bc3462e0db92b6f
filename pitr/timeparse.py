"""Parsing of recovery targets (TIME) and durations at the command-line edge."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_ZONE_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-/]*$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '26h', '7d', '1h30m'."""
    s = text.strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"invalid duration {text!r} (use forms like 30s, 15m, 26h, 7d)")
    return timedelta(seconds=total)


def local_zone() -> ZoneInfo | None:
    """The zone named by TZ, or None for the system's local zone."""
    import os

    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            return None
    return None


def parse_time(text: str) -> datetime:
    """A target instant, returned in UTC.

    Accepted: '2025-01-16 12:00', '2025-01-16 12:00:05.250', ISO 8601 with an
    offset, or any of these followed by a zone name ('... Europe/Berlin').
    Without a zone, local time (TZ or the system zone).
    """
    s = text.strip()
    zone = None
    head, _, last = s.rpartition(" ")
    if head and _ZONE_WORD.match(last) and _is_datetime(head):
        try:
            zone = ZoneInfo("UTC" if last.upper() in ("Z", "GMT") else last)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"invalid time {text!r}: unknown time zone {last!r}") from None
        s = head
    try:
        value = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r} (use '2025-01-16 12:00', ISO 8601 with an offset, "
            "or a trailing zone name)"
        ) from None
    if value.tzinfo is not None:
        if zone is not None:
            raise ValueError(f"invalid time {text!r}: both an offset and a zone name")
        return value.astimezone(UTC)
    zone = zone or local_zone()
    if zone is None:
        return value.astimezone().astimezone(UTC)  # the system's local zone
    resolved = value.replace(tzinfo=zone).astimezone(UTC)
    if resolved.astimezone(zone).replace(tzinfo=None) != value:
        raise ValueError(f"invalid time {text!r}: does not exist in {zone.key} (clocks skip it)")
    return resolved


def _is_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def format_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
