"""Is the archive whole, and is every byte sound?

- Continuity, by kind (recovery/<kind>/continuity.py): WAL chains along
  every timeline history; stream batches and the gaps the tailer recorded.
- Objects: catalog rows whose object is missing from the store, has the
  wrong size, or (reading it) fails its hash check; and for each, which
  backups and which instants can no longer be restored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from catalog import reports
from catalog.errors import CatalogError, IntegrityError, ObjectNotFound, StorageError
from catalog.queries import source_row
from catalog.reports import Ref
from catalog.repository import Repository, object_key
from recovery.coverage import Coverage, Piece, lost_ranges

if TYPE_CHECKING:
    from recovery.reporting import KindReports

Progress = Callable[[int, int], None]
# (name, kind, the kind's reports) of a source to look at
ReportedSource = tuple[str, str, "KindReports"]


@dataclass(frozen=True)
class Problem:
    source: str
    type: str  # wal_gap | unusable_backup | missing_history | stream_gap | batch_overlap | ...
    detail: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BadObject:
    oid: str
    problem: str  # missing | size | damaged
    detail: str
    refs: tuple[Ref, ...]


@dataclass
class Damage:
    """What a set of bad objects costs one source."""

    source: str
    kind: str
    before: Coverage
    after: Coverage

    @property
    def lost(self) -> list[Piece]:
        return lost_ranges(self.before, self.after)


# -- objects ------------------------------------------------------------------------


def scan_objects(
    repo: Repository,
    refs: Mapping[str, list[Ref]],
    *,
    sizes: Mapping[str, tuple[int, int]] | None = None,
    read_data: bool = False,
    workers: int = 2,
    progress: Progress | None = None,
) -> tuple[list[BadObject], int, int]:
    """Bad objects among those referenced; and how many objects and stored
    bytes were checked. Without sizes only existence is checked."""
    listing = {info.key: info.size for info in repo.store.list("objects/")}
    bad, present, total = _check_listing(listing, refs, sizes)
    if not read_data:
        if sizes is not None:
            # No size to compare with (rows written before sizes were kept
            # for objects found in the store): those few are read instead.
            unsized = [(oid, have) for oid, have in present if not sizes.get(oid, (0, 0))[1]]
            bad += _read_objects(repo, unsized, refs, sizes, workers, None)
            bad.sort(key=lambda b: b.oid)
        return bad, len(refs), total
    bad += _read_objects(repo, present, refs, sizes or {}, workers, progress)
    bad.sort(key=lambda b: b.oid)
    return bad, len(refs), total


def _check_listing(
    listing: Mapping[str, int],
    refs: Mapping[str, list[Ref]],
    sizes: Mapping[str, tuple[int, int]] | None,
) -> tuple[list[BadObject], list[tuple[str, int]], int]:
    """Against one listing of the store: the objects missing or of the wrong
    stored size, the others with their stored size, and the stored bytes of
    all that are there."""
    bad: list[BadObject] = []
    present: list[tuple[str, int]] = []
    total = 0
    for oid in sorted(refs):
        have = listing.get(object_key(oid))
        if have is None:
            bad.append(BadObject(oid, "missing", "missing from the store", tuple(refs[oid])))
            continue
        total += have
        _, stored = (sizes or {}).get(oid, (0, 0))
        if sizes is not None and stored and have != stored:
            bad.append(
                BadObject(
                    oid,
                    "size",
                    f"{have} bytes in the store, {stored} when it was written",
                    tuple(refs[oid]),
                )
            )
            continue
        present.append((oid, have))
    return bad, present, total


def _read_objects(
    repo: Repository,
    to_read: list[tuple[str, int]],
    refs: Mapping[str, list[Ref]],
    sizes: Mapping[str, tuple[int, int]],
    workers: int,
    progress: Progress | None,
) -> list[BadObject]:
    """Read back and re-hash (oid, stored size) objects on a pool of
    workers, a bounded number in flight; the ones that fail."""
    bad: list[BadObject] = []
    done = 0
    read_total = sum(n for _, n in to_read)
    with ThreadPoolExecutor(workers, thread_name_prefix="pitr-verify") as pool:
        pending: deque[tuple[str, int, Future[str | None]]] = deque()

        def settle() -> None:
            nonlocal done
            oid, n, fut = pending.popleft()
            why = fut.result()
            if why is not None:
                kind = "missing" if why.startswith("missing") else "damaged"
                bad.append(BadObject(oid, kind, why, tuple(refs[oid])))
            done += n
            if progress:
                progress(done, read_total)

        for oid, n in to_read:
            plain = sizes.get(oid, (0, 0))[0]
            pending.append((oid, n, pool.submit(_read_object, repo, oid, plain)))
            while len(pending) > workers * 4:
                settle()
        while pending:
            settle()
    return bad


def _read_object(repo: Repository, oid: str, plain: int) -> str | None:
    """What is wrong with an object read back (plain: its size when written,
    0 if unknown), or None when it is sound. A storage error is raised."""
    try:
        data = repo.get_chunk(oid)
    except ObjectNotFound:
        return "missing from the store"
    except StorageError:
        raise
    except (IntegrityError, CatalogError) as e:
        return str(e)
    if plain and len(data) != plain:
        return f"holds {len(data)} bytes, {plain} when it was written"
    return None


def damage(
    repo: Repository, sources: Collection[ReportedSource], bad: Collection[BadObject]
) -> list[Damage]:
    """For each source that references a bad object: the window before and
    after losing those objects."""
    oids = {b.oid for b in bad}
    touched = {r.source for b in bad for r in b.refs}
    out = []
    for name, kind, hooks in sources:
        if name not in touched:
            continue
        names = {r.name for b in bad for r in b.refs if r.source == name}
        with repo.catalog.session() as s:
            src = source_row(s, name)
        if src is None:
            continue
        before, after = hooks.damage(repo, src, oids, names)
        out.append(Damage(name, kind, before, after))
    return out


# -- whole reports ------------------------------------------------------------------


@dataclass
class SourceCheck:
    name: str
    kind: str
    coverage: Coverage  # what can be restored with the objects as they are
    problems: list[Problem] = field(default_factory=list)
    lost: list[Piece] = field(default_factory=list)  # instants lost to bad objects


@dataclass
class IntegrityReport:
    sources: list[SourceCheck]
    bad: list[BadObject]
    objects: int = 0
    stored_bytes: int = 0

    @property
    def problems(self) -> list[Problem]:
        return [p for s in self.sources for p in s.problems]


def check_archive(repo: Repository, sources: Collection[ReportedSource]) -> IntegrityReport:
    """Continuity of every source and existence of every referenced object."""
    return _report(repo, sources, continuity=True, sizes=False, read_data=False)


def verify_archive(
    repo: Repository,
    sources: Collection[ReportedSource],
    *,
    read_data: bool,
    workers: int = 2,
    progress: Progress | None = None,
) -> IntegrityReport:
    """Every referenced object exists with its size; with read_data, also
    reads back and re-hashes."""
    return _report(
        repo,
        sources,
        continuity=False,
        sizes=True,
        read_data=read_data,
        workers=workers,
        progress=progress,
    )


def _report(
    repo: Repository,
    sources: Collection[ReportedSource],
    *,
    continuity: bool,
    sizes: bool,
    read_data: bool,
    workers: int = 2,
    progress: Progress | None = None,
) -> IntegrityReport:
    from recovery.status import source_status

    names = {name for name, _, _ in sources}
    with repo.catalog.session() as s:
        refs = reports.object_refs(s, only=names)
        recorded = reports.object_sizes(s) if sizes else None
    bad, count, total = scan_objects(
        repo, refs, sizes=recorded, read_data=read_data, workers=workers, progress=progress
    )
    known_bad = {b.oid for b in bad}
    checks = []
    for name, kind, hooks in sources:
        problems: list[Problem] = []
        with repo.catalog.session() as s:
            src = source_row(s, name)
        if src is not None:
            problems, unreadable = hooks.check(repo, src, continuity)
            # Objects read on the way (e.g. .history files for the planner).
            for oid, why in unreadable.items():
                if oid not in known_bad:
                    bad.append(BadObject(oid, "damaged", why, tuple(refs.get(oid, ()))))
                    known_bad.add(oid)
        status = source_status(repo, name, kind, hooks, True)
        checks.append(SourceCheck(name, kind, status.coverage, problems))
    for d in damage(repo, sources, bad):
        for c in checks:
            if c.name == d.source:
                c.coverage = d.after
                c.lost = d.lost
    return IntegrityReport(checks, bad, count, total)
