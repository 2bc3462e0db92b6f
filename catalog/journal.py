"""The journal: an append-only index of the records in the order they were written.

Before a record is written, a small entry naming it goes under
journal/<hour>/<instant>-<writer>-<token>. A catalog that was brought up to date at
some instant reads only the hours since then (less a margin for writers
whose clocks run behind or whose write was still in flight), so catching up
costs what is new, not what the repository holds. The entry comes first: a
writer that dies between the two leaves an entry without a record, which
the reader skips, never a record that no entry names.

An entry's name also says which catalog its writer projects the record
into (none for `pitr wal-push` without a daemon): a catch-up skips the
entries of its own catalog's writers, which commit those rows themselves,
without reading them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from catalog.errors import ObjectNotFound

if TYPE_CHECKING:
    from catalog.repository import Repository

PREFIX = "journal/"
# Entries this much older than the reader's last catch-up are read again: a
# record may land this long after its entry, and writers' clocks may lag the
# reader's by this much (hosts sharing a repository keep NTP time).
MARGIN = timedelta(seconds=30)
UNPROJECTED = "none"  # the writer of the entry has no catalog
# A catalog whose last catch-up is older than this reads every record instead
# of the journal, so expire removes entries a day older than that.
HORIZON = timedelta(days=7)
HOUR = "%Y%m%d%H"
INSTANT = "%Y%m%dT%H%M%S.%fZ"


@dataclass(frozen=True)
class Entry:
    key: str  # the journal entry's own key
    record: str  # the record it names
    writer: str  # the catalog its writer projects into, or UNPROJECTED


def write_entry(repo: Repository, record: str, writer: str) -> None:
    now = datetime.now(UTC)
    key = f"{PREFIX}{now:{HOUR}}/{now:{INSTANT}}-{writer}-{os.urandom(4).hex()}"
    body = json.dumps({"record": record}).encode()
    repo.store.put_if_absent(key, repo.codec.seal(body, key))


def entries_since(
    repo: Repository, since: datetime | None, now: datetime, skip_writer: str
) -> Iterator[Entry]:
    """Entries written from `since` (less the margin; None: from the first)
    to now, oldest first, but those of skip_writer (told apart by name: they
    are not read)."""
    if since is None:
        keys = sorted(info.key for info in repo.store.list(PREFIX))
        yield from _entries(repo, keys, "", skip_writer)
        return
    start = since - MARGIN
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour <= now + MARGIN:
        keys = sorted(info.key for info in repo.store.list(f"{PREFIX}{hour:{HOUR}}/"))
        yield from _entries(repo, keys, f"{start:{INSTANT}}", skip_writer)
        hour += timedelta(hours=1)


def _entries(repo: Repository, keys: list[str], first: str, skip_writer: str) -> Iterator[Entry]:
    for key in keys:
        name = key.rsplit("/", 1)[-1]
        parts = name.split("-")
        if name < first or len(parts) != 3 or parts[1] == skip_writer:
            continue
        entry = _read_entry(repo, key, parts[1])
        if entry is not None:
            yield entry


def _read_entry(repo: Repository, key: str, writer: str) -> Entry | None:
    try:
        doc = json.loads(repo.codec.unseal(repo.store.get(key), key))
    except (ObjectNotFound, ValueError):
        return None  # removed meanwhile, or not an entry of this pitr
    return Entry(key, str(doc["record"]), writer)


def stale_entries(repo: Repository, now: datetime) -> list[str]:
    """Entries of the hours no catch-up reads any more (expire removes them)."""
    oldest = f"{PREFIX}{now - HORIZON - timedelta(days=1):{HOUR}}/"
    return [info.key for info in repo.store.list(PREFIX) if info.key < oldest]
