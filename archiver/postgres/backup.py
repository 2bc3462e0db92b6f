"""PostgreSQL base backups: pg_backup_start, copy PGDATA into the
content-addressed store, pg_backup_stop, wait for the stop segment.

Files are copied by archiver.filecopy: chunks hashed and compressed on one
thread per core, written by others that wait on the fsyncs, with memory
bounded whatever the database size.
"""

from __future__ import annotations

import contextlib
import pwd
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from archiver.backups import Taken, commit_backup, objects_of_latest
from archiver.errors import BackupFailed, BadInput, SourceUnreachable, WalIntegrityError
from archiver.filecopy import Copier, FileCopy
from archiver.postgres.files import Entry, walk_pgdata
from catalog.db.models import WalFile
from catalog.details import PgBackupDetails
from catalog.errors import first_line
from catalog.manifests import FileEntry, PgBackupManifest
from catalog.queries import ensure_source
from catalog.records import BackupRecord
from catalog.repository import DEFAULT_CHUNK_SIZE, Chunk, Repository
from catalog.wal import lsn_segno, parse_lsn, segment_name

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


def take_base_backup(
    repo: Repository,
    source: str,
    dsn: str,
    pgdata: str,
    *,
    workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    archive_wait: float = 300.0,
    progress: Progress | None = None,
) -> Taken:
    import psycopg

    t0 = time.monotonic()
    root = Path(pgdata)
    try:
        from psycopg.conninfo import conninfo_to_dict

        from catalog.db.engine import pg_timeouts

        conn = psycopg.connect(dsn, autocommit=True, **pg_timeouts(conninfo_to_dict(dsn)))
    except psycopg.Error as e:
        raise SourceUnreachable(f"backup {source}: cannot connect: {first_line(e)}") from e
    try:
        with conn:
            server = _server_facts(conn, source, root)
            _check_identity(repo, source, server)
            known = objects_of_latest(repo, source, "pg_base")
            started = datetime.now(UTC)
            backup_id = f"{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
            label = f"pitr {source} {backup_id}"
            if server.version >= 150000:
                conn.execute("SELECT pg_backup_start(%s, true)", (label,))
            else:
                conn.execute("SELECT pg_start_backup(%s, true, false)", (label,))
            try:
                entries, chunks = _copy_files(repo, root, known, workers, chunk_size, progress)
            finally:
                stop_sql = (
                    "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
                    if server.version >= 150000
                    else "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)"
                )
                row = conn.execute(stop_sql).fetchone()
            finished = datetime.now(UTC)
    except psycopg.Error as e:
        # The server went away or refused mid-backup (restart, shutdown, ...):
        # nothing is recorded, and the next backup starts afresh.
        raise SourceUnreachable(f"backup {source}: the server failed: {first_line(e)}") from e
    assert row is not None
    stop_lsn, labelfile, spcmap = row
    label_info = parse_backup_label(labelfile)
    timeline = int(label_info["START TIMELINE"])
    start_lsn = label_info["START WAL LOCATION"].split()[0]
    seg_size = server.seg_size
    first, last = (
        lsn_segno(parse_lsn(start_lsn), seg_size),
        lsn_segno(parse_lsn(stop_lsn) - 1, seg_size),
    )
    stop_segment = segment_name(timeline, last, seg_size)
    _archive_backup_wal(
        repo,
        source,
        root / "pg_wal",
        [segment_name(timeline, n, seg_size) for n in range(first, last + 1)],
        archive_wait,
    )

    manifest = PgBackupManifest(
        id=backup_id,
        source=source,
        system_identifier=server.sysid,
        pg_version=server.version,
        wal_segment_size=seg_size,
        chunk_size=chunk_size,  # every chunk of a file but its last: restore writes in parallel
        owner=_owner(root),
        timeline=timeline,
        start_lsn=start_lsn,
        stop_lsn=stop_lsn,
        stop_segment=stop_segment,
        started_at=started,
        finished_at=finished,
        backup_label=labelfile,
        tablespace_map=spcmap or "",
        entries=tuple(entries),
    )
    record = BackupRecord(
        source,
        backup_id,
        "pg_base",
        started,
        finished,
        size_bytes=sum(c.size for c in chunks),
        timeline=timeline,
        start_lsn=start_lsn,
        stop_lsn=stop_lsn,
        details=PgBackupDetails(len(manifest.files), stop_segment).to_json(),
    )
    return Taken(commit_backup(repo, record, manifest, chunks), time.monotonic() - t0)


def parse_backup_label(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class _Server:
    version: int  # server_version_num
    sysid: str
    seg_size: int


def _server_facts(conn: Any, source: str, root: Path) -> _Server:
    version = int(conn.execute("SHOW server_version_num").fetchone()[0])
    data_dir = conn.execute("SHOW data_directory").fetchone()[0]
    if Path(data_dir).resolve() != root.resolve():
        raise BackupFailed(
            f"backup {source}: the server's data directory is {data_dir}, "
            f"but the config says pgdata = {root}"
        )
    sysid = str(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])
    seg_size = int(
        conn.execute("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'").fetchone()[
            0
        ]
    )
    if seg_size < 1 << 20:  # older servers report it in 8 kB blocks
        seg_size *= 8192
    archive_mode = conn.execute("SHOW archive_mode").fetchone()[0]
    if archive_mode == "off":
        raise BackupFailed(
            f"backup {source}: archive_mode is off; turn it on with archive_command "
            f"'pitr wal-push %p' so the backup can be restored"
        )
    return _Server(version, sysid, seg_size)


def _check_identity(repo: Repository, source: str, server: _Server) -> None:
    with repo.catalog.session() as s:
        src = ensure_source(s, source, "postgres")
        if src.system_identifier and src.system_identifier != server.sysid:
            raise WalIntegrityError(
                f"backup {source}: the server is system {server.sysid}, but the source "
                f"archives system {src.system_identifier}"
            )


def _copy_files(
    repo: Repository,
    root: Path,
    known: set[str],
    workers: int | None,
    chunk_size: int,
    progress: Progress | None,
) -> tuple[list[FileEntry], list[Chunk]]:
    entries = list(walk_pgdata(root))
    total = sum(e.size for e in entries)
    done = 0
    out: list[FileEntry] = []
    chunks: list[Chunk] = []
    # Entries in walk order, each file with its copy under way.
    queued: deque[tuple[Entry, FileCopy | None]] = deque()
    ranges = 0  # of the files queued: bounds what waits in memory

    def collect() -> None:
        nonlocal done, ranges
        entry, copy = queued.popleft()
        link = entry.target if entry.kind == "link" else None
        item = FileEntry(entry.path, entry.kind, entry.mode, target=link)
        if copy is not None:
            ranges -= len(copy.ranges)
            got = copy.chunks()
            done += entry.size
            if progress:
                progress(done, total)
            if got is None:
                return  # removed during the backup: WAL replay accounts for it
            item = replace(item, chunks=tuple(c.oid for c in got), size=sum(c.size for c in got))
            chunks.extend(got)
        out.append(item)

    with Copier(repo, known, chunk_size, sealers=workers) as copier:
        for entry in entries:
            copy = copier.copy(root / entry.path, entry.size) if entry.kind == "file" else None
            queued.append((entry, copy))
            ranges += len(copy.ranges) if copy else 0
            while ranges > 16 * copier.sealers and len(queued) > 1:
                collect()
        while queued:
            collect()
    return out, chunks


def _archive_backup_wal(
    repo: Repository, source: str, wal_dir: Path, names: list[str], timeout: float
) -> None:
    """The backup is usable only once the WAL from its start to its stop is
    archived. A segment PostgreSQL has marked ready is pushed from here (the
    same push as archive_command's, so whichever comes second finds it
    there): the backup need not wait its turn behind the archiver."""
    from archiver.postgres.walpush import push_wal

    deadline = time.monotonic() + timeout
    tried: set[str] = set()
    while True:
        with repo.catalog.session() as s:
            src = ensure_source(s, source, "postgres")
            archived = set(
                s.scalars(
                    select(WalFile.name).where(WalFile.source_id == src.id, WalFile.name.in_(names))
                )
            )
        missing = [n for n in names if n not in archived]
        if not missing:
            return
        ready = [
            n
            for n in missing
            if n not in tried and (wal_dir / "archive_status" / f"{n}.ready").exists()
        ]
        for name in ready:
            tried.add(name)
            with contextlib.suppress(BadInput):  # gone meanwhile: archived and recycled
                push_wal(repo, source, wal_dir / name)
        if ready:
            continue
        if time.monotonic() > deadline:
            raise BackupFailed(
                f"backup {source}: WAL segment {missing[0]} was not archived within "
                f"{timeout:.0f}s; is archive_command set to 'pitr wal-push %p' for this source?"
            )
        time.sleep(0.2)


def _owner(root: Path) -> str:
    try:
        return pwd.getpwuid(root.stat().st_uid).pw_name
    except KeyError:
        return str(root.stat().st_uid)
