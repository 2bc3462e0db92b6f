"""Before a restore writes anything: is every object its plan reads there?

A restore that finds a chunk or a WAL segment missing half-way has already
set the old data aside and left a directory that cannot start. So the plan's
objects are looked up first, each with the stored size the catalog recorded
for it, and a restore missing any is refused whole (exit 4), naming them.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from catalog.db.models import StoredObject
from catalog.errors import IntegrityError
from catalog.repository import Repository, object_key

# Above this many objects one listing of the store is cheaper than a
# lookup each (an S3 listing page holds 1,000 keys).
LIST_ABOVE = 2000
LOOKUP_THREADS = 8


def require_objects(repo: Repository, needed: Mapping[str, str], who: str) -> None:
    """needed: oid -> what reads it (for the message). Refuse unless every
    object is in the store with the stored size recorded for it."""
    recorded = _recorded_sizes(repo, needed)
    found = _stored_sizes(repo, list(needed))
    wrong = []
    for oid, what in needed.items():
        have, want = found.get(oid), recorded.get(oid, 0)
        if have is None:
            wrong.append(f"{what} (object {oid[:12]}…) is missing")
        elif want and have != want:
            wrong.append(f"{what} (object {oid[:12]}…) has {have} bytes, {want} were stored")
    if wrong:
        more = f" and {len(wrong) - 1} more" if len(wrong) > 1 else ""
        raise IntegrityError(
            f"{who}: cannot be restored, {wrong[0]}{more}; nothing was changed "
            "(pitr check lists what is lost)"
        )


def _recorded_sizes(repo: Repository, oids: Mapping[str, str]) -> dict[str, int]:
    wanted = list(oids)
    sizes: dict[str, int] = {}
    with repo.catalog.session() as s:
        for i in range(0, len(wanted), 500):
            rows = s.execute(
                select(StoredObject.oid, StoredObject.stored_size).where(
                    StoredObject.oid.in_(wanted[i : i + 500])
                )
            )
            sizes.update({oid: size for oid, size in rows})
    return sizes


def _stored_sizes(repo: Repository, oids: list[str]) -> dict[str, int]:
    """oid -> bytes in the store, for those that are there."""
    if len(oids) > LIST_ABOVE:
        wanted = {object_key(oid): oid for oid in oids}
        return {
            wanted[info.key]: info.size
            for info in repo.store.list("objects/")
            if info.key in wanted
        }

    def look(oid: str) -> tuple[str, int | None]:
        info = repo.store.stat(object_key(oid))
        return oid, None if info is None else info.size

    with ThreadPoolExecutor(min(LOOKUP_THREADS, max(1, len(oids)))) as pool:
        return {oid: size for oid, size in pool.map(look, oids) if size is not None}
