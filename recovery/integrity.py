"""Is the archive whole, and is every byte sound?

- WAL continuity: from every base backup on, along every timeline history
  the backup lies on, each missing segment between archived ones is named.
- Stream batches: bounds that contradict each other, overlaps, and the
  gaps the tailer recorded.
- Objects: catalog rows whose object is missing from the store, has the
  wrong size, or (reading it) fails its hash check; and for each, which
  backups and which instants can no longer be restored.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from catalog import reports
from catalog.db.models import Source, StreamBatch
from catalog.errors import CatalogError, IntegrityError, ObjectNotFound, StorageError
from catalog.redisformat import parse_id
from catalog.reports import Ref
from catalog.repository import Repository, object_key
from catalog.wal import lsn_segno, parse_wal_name, segment_name
from recovery.coverage import Coverage, Piece, lost_ranges, pg_coverage, redis_coverage
from recovery.postgres.planner import Span, TimelineInfo, ancestry, on_history, timeline_for_segment
from recovery.status import PgFacts, batch_refs, load_pg, load_redis

Progress = Callable[[int, int], None]


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


# -- WAL continuity -------------------------------------------------------------------


def name_segments(segnos: list[int], spans: list[Span], seg_size: int) -> list[str]:
    """Runs of consecutive segments, named (first .. last (n segments))."""
    out = []
    for run in _runs(segnos):
        first = segment_name(timeline_for_segment(run[0], spans, seg_size), run[0], seg_size)
        if len(run) == 1:
            out.append(first)
        else:
            tli = timeline_for_segment(run[-1], spans, seg_size)
            last = segment_name(tli, run[-1], seg_size)
            out.append(f"{first} .. {last} ({len(run)} segments)")
    return out


def wal_continuity(source: str, facts: PgFacts) -> list[Problem]:
    seg = facts.seg_size
    present = facts.segments()
    timelines: Mapping[int, TimelineInfo] = facts.timelines
    tlis = (
        {1}
        | set(timelines)
        | {b.timeline for b in facts.backups}
        | {w.timeline for w in facts.wal if w.kind == "segment"}
    )
    problems: list[Problem] = []
    for tli in sorted(tlis):
        if tli > 1 and tli not in timelines and tli not in facts.unreadable:
            problems.append(
                Problem(
                    source,
                    "missing_history",
                    f"timeline {tli} has WAL but its {tli:08X}.history file is not archived: "
                    "restores cannot follow it",
                    {"timeline": tli},
                )
            )
    # Per history: the segments missing from the oldest backup on it to its
    # newest archived segment, in runs; then which backups each run breaks.
    runs: dict[str, dict[str, Any]] = {}
    for tli in sorted(tlis):
        spans = ancestry(tli, timelines)
        on = [b for b in facts.backups if on_history(b, spans)]
        if not on:
            continue
        bounds = {
            b.id: (lsn_segno(b.start_lsn, seg), lsn_segno(max(b.stop_lsn, 1) - 1, seg)) for b in on
        }
        lo = min(first for first, _ in bounds.values())
        have = {s for (t, s) in present if s >= lo and timeline_for_segment(s, spans, seg) == t}
        hi = max([*have, *(stop for _, stop in bounds.values())])
        missing = [s for s in range(lo, hi + 1) if s not in have]
        for run in _runs(missing):
            (name,) = name_segments(run, spans, seg)
            entry = runs.setdefault(name, {"unusable": [], "short": [], "timelines": []})
            entry["timelines"].append(tli)
            for b in on:
                first, stop = bounds[b.id]
                if first > run[-1]:
                    continue  # the backup starts after the hole
                which = "unusable" if max(run[0], first) <= min(run[-1], stop) else "short"
                if b.id not in entry[which]:
                    entry[which].append(b.id)
    for name, e in runs.items():
        extra = {"segments": [name], "timelines": sorted(set(e["timelines"]))}
        if e["unusable"]:
            problems.append(
                Problem(
                    source,
                    "unusable_backup",
                    f"backup {', '.join(e['unusable'])} cannot be restored: WAL {name} "
                    "is missing before its end",
                    {**extra, "backups": e["unusable"]},
                )
            )
        short = [b for b in e["short"] if b not in e["unusable"]]
        if short:
            tl = ", ".join(map(str, extra["timelines"]))
            problems.append(
                Problem(
                    source,
                    "wal_gap",
                    f"WAL {name} is missing on timeline {tl}: restores from backup "
                    f"{', '.join(short)} cannot replay past it",
                    {**extra, "backups": short},
                )
            )
    return problems


def _runs(segnos: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for s in segnos:
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


# -- stream batches -----------------------------------------------------------------


def stream_continuity(repo: Repository, source: str) -> list[Problem]:
    problems: list[Problem] = []
    with repo.catalog.session() as s:
        src = s.scalars(select(Source).where(Source.name == source)).one_or_none()
        if src is None:
            return []
        gaps = reports.stream_gaps(s, src.id)
        rows = s.execute(
            select(
                StreamBatch.stream,
                StreamBatch.first_id,
                StreamBatch.last_id,
                StreamBatch.first_ms,
                StreamBatch.last_ms,
                StreamBatch.count,
            ).where(StreamBatch.source_id == src.id)
        ).all()
    recreated = {g.stream for g in gaps if g.detail.startswith("recreated")}
    by_stream: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        by_stream[row[0]].append(tuple(row))
    for stream, batches in sorted(by_stream.items()):
        batches.sort(key=lambda r: parse_id(r[1]))
        prev = None
        for _, first, last, first_ms, last_ms, count in batches:
            if (
                parse_id(first) > parse_id(last)
                or parse_id(first)[0] != first_ms
                or parse_id(last)[0] != last_ms
                or count < 1
            ):
                problems.append(
                    Problem(
                        source,
                        "batch_invalid",
                        f"stream {stream}: batch {first}..{last} has contradictory bounds",
                        {"stream": stream, "first_id": first},
                    )
                )
            # A recreated stream starts its IDs again: overlaps are expected there.
            if prev is not None and stream not in recreated and parse_id(first) <= parse_id(prev):
                problems.append(
                    Problem(
                        source,
                        "batch_overlap",
                        f"stream {stream}: batch {first}..{last} overlaps the batch ending "
                        f"at {prev}",
                        {"stream": stream, "first_id": first},
                    )
                )
            prev = last if prev is None or parse_id(last) > parse_id(prev) else prev
    for g in gaps:
        problems.append(
            Problem(
                source,
                "stream_gap",
                f"stream {g.stream}: entries between {g.from_id} and {g.to_id} were not "
                f"archived ({g.detail})",
                {"stream": g.stream, "from_id": g.from_id, "to_id": g.to_id},
            )
        )
    return problems


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
    repo: Repository, sources: Collection[tuple[str, str]], bad: Collection[BadObject]
) -> list[Damage]:
    """For each source (name, kind) that references a bad object: the window
    before and after losing those objects."""
    oids = {b.oid for b in bad}
    touched = {r.source for b in bad for r in b.refs}
    out = []
    for name, kind in sources:
        if name not in touched:
            continue
        names = {r.name for b in bad for r in b.refs if r.source == name}
        with repo.catalog.session() as s:
            src = s.scalars(select(Source).where(Source.name == name)).one()
            source_id, seg_size = src.id, src.wal_segment_size
            if kind == "redis":
                facts = load_redis(s, src.id, name)
                broken = batch_refs(s, src.id, oids)
        if kind == "redis":
            before = redis_coverage(facts.snapshots, facts.covered)
            after = redis_coverage(facts.snapshots, facts.covered, names, broken)
        else:
            pg = load_pg(repo, source_id, seg_size)
            before = pg_coverage(pg.backups, pg.segments(), pg.timelines, pg.seg_size)
            lost_tl = set()
            for n in names:
                w = parse_wal_name(n)
                if w is not None and w.kind == "history":
                    lost_tl.add(w.timeline)
            timelines = {t: i for t, i in pg.timelines.items() if t not in lost_tl}
            after = pg_coverage(
                pg.backups, pg.segments(exclude_oids=oids), timelines, pg.seg_size, names
            )
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


def check_archive(repo: Repository, sources: Collection[tuple[str, str]]) -> IntegrityReport:
    """Continuity of every source and existence of every referenced object."""
    return _report(repo, sources, continuity=True, sizes=False, read_data=False)


def verify_archive(
    repo: Repository,
    sources: Collection[tuple[str, str]],
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
    sources: Collection[tuple[str, str]],
    *,
    continuity: bool,
    sizes: bool,
    read_data: bool,
    workers: int = 2,
    progress: Progress | None = None,
) -> IntegrityReport:
    from recovery.status import load_pg_named, source_status

    names = {name for name, _ in sources}
    with repo.catalog.session() as s:
        refs = reports.object_refs(s, only=names)
        recorded = reports.object_sizes(s) if sizes else None
    bad, count, total = scan_objects(
        repo, refs, sizes=recorded, read_data=read_data, workers=workers, progress=progress
    )
    known_bad = {b.oid for b in bad}
    checks = []
    for name, kind in sources:
        problems: list[Problem] = []
        if kind == "postgres":
            facts = load_pg_named(repo, name)
            if facts is not None:
                # A .history file read for the planner: damage found on the way.
                for oid, why in facts.unreadable.values():
                    if oid not in known_bad:
                        bad.append(BadObject(oid, "damaged", why, tuple(refs.get(oid, ()))))
                        known_bad.add(oid)
                if continuity:
                    problems = wal_continuity(name, facts)
        elif continuity:
            problems = stream_continuity(repo, name)
        status = source_status(repo, name, kind, True)
        checks.append(SourceCheck(name, kind, status.coverage, problems))
    for d in damage(repo, sources, bad):
        for c in checks:
            if c.name == d.source:
                c.coverage = d.after
                c.lost = d.lost
    return IntegrityReport(checks, bad, count, total)
