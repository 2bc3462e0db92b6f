"""TIME forms of docs/reference.md and durations."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from pitr.timeparse import format_utc, parse_duration, parse_time


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set TZ for the test (and the C library's idea of it), restored after."""

    def set_tz(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield set_tz
    monkeypatch.undo()  # restore TZ before telling the C library
    time.tzset()


def utc(
    year: int, month: int, day: int, hour: int, minute: int, sec: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, sec, us, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-16 12:00 UTC", utc(2025, 1, 16, 12, 0)),
        ("2025-01-16 12:00:05 UTC", utc(2025, 1, 16, 12, 0, 5)),
        ("2025-01-16 12:00:05.250 UTC", utc(2025, 1, 16, 12, 0, 5, 250_000)),
        ("2025-01-16T12:00:00+01:00", utc(2025, 1, 16, 11, 0)),
        ("2025-01-16T12:00:00-05:30", utc(2025, 1, 16, 17, 30)),
        ("2025-01-16 12:00:00+00:00", utc(2025, 1, 16, 12, 0)),
        ("2025-01-16T12:00:00Z", utc(2025, 1, 16, 12, 0)),
        ("2025-01-16 12:00 Europe/Berlin", utc(2025, 1, 16, 11, 0)),  # CET, +01:00
        ("2025-07-16 12:00 Europe/Berlin", utc(2025, 7, 16, 10, 0)),  # CEST, +02:00
        ("2025-01-16 12:00:05.250 America/New_York", utc(2025, 1, 16, 17, 0, 5, 250_000)),
        ("  2025-01-16 12:00 UTC  ", utc(2025, 1, 16, 12, 0)),
    ],
)
def test_time_forms(text: str, expected: datetime, local_tz: Callable[[str], None]) -> None:
    local_tz("Asia/Tokyo")  # none of these depend on the local zone
    value = parse_time(text)
    assert value == expected
    assert value.tzinfo is UTC


@pytest.mark.parametrize(
    ("zone", "text", "expected"),
    [
        ("America/New_York", "2025-01-16 12:00", utc(2025, 1, 16, 17, 0)),
        ("America/New_York", "2025-07-16 12:00", utc(2025, 7, 16, 16, 0)),
        ("Europe/Berlin", "2025-01-16 12:00:05.250", utc(2025, 1, 16, 11, 0, 5, 250_000)),
        ("UTC", "2025-01-16 12:00", utc(2025, 1, 16, 12, 0)),
        (":Asia/Kolkata", "2025-01-16 12:00", utc(2025, 1, 16, 6, 30)),
        # A POSIX TZ rule that is no zone name: the C library's local time.
        ("XYZ-3", "2025-01-16 12:00", utc(2025, 1, 16, 9, 0)),
    ],
)
def test_no_zone_means_local_time(
    zone: str, text: str, expected: datetime, local_tz: Callable[[str], None]
) -> None:
    local_tz(zone)
    value = parse_time(text)
    assert value == expected
    assert value.tzinfo is UTC


def test_an_explicit_zone_ignores_the_local_one(local_tz: Callable[[str], None]) -> None:
    local_tz("America/Los_Angeles")
    assert parse_time("2025-01-16 12:00 UTC") == utc(2025, 1, 16, 12, 0)
    assert parse_time("2025-01-16T12:00:00+01:00") == utc(2025, 1, 16, 11, 0)
    assert parse_time("2025-01-16 12:00") == utc(2025, 1, 16, 20, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2025-02-30 10:00", "invalid time '2025-02-30 10:00'"),
        ("2025-01-16 25:00", "invalid time '2025-01-16 25:00'"),
        ("2025-01-16 12:60", "invalid time"),
        ("yesterday", "invalid time 'yesterday'"),
        ("", "invalid time"),
        ("16/01/2025 12:00", "invalid time"),
        ("2025-01-16 12:00 Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        ("2025-01-16T12:00:00+01:00 Europe/Berlin", "both an offset and a zone name"),
    ],
)
def test_bad_times_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_time(text)
    assert "\n" not in str(info.value)


def test_invalid_time_message_shows_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="2025-01-16 12:00"):
        parse_time("next tuesday")


def test_format_utc() -> None:
    berlin = parse_time("2025-01-16 12:00 Europe/Berlin")
    assert format_utc(berlin) == "2025-01-16T11:00:00Z"
    assert format_utc(None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("26h", timedelta(hours=26)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("0s", timedelta(0)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "abc", "5x", "1h30", "-5m", "m", "h1", "1h-"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
