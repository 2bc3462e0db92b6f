"""Lay down a base backup and the recovery settings, so that starting
PostgreSQL on the directory replays archived WAL to the target and promotes.

The backup is written into a staging directory beside the target and renamed
into place only when complete; an existing target is set aside, never deleted.
A delta restore (recovery.postgres.delta) rewrites an existing data
directory of the same cluster in place instead, chunk by differing chunk.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from sqlalchemy import select

from catalog.db.models import Backup, WalFile
from catalog.durable import sync_filesystem
from catalog.errors import IntegrityError
from catalog.manifests import FileEntry, PgBackupManifest, read_manifest
from catalog.records import wal_folder
from catalog.repository import Repository
from catalog.wal import transaction_times
from recovery.postgres.chunkio import check_chunk, pwrite_all
from recovery.postgres.delta import can_delta, delta_restore
from recovery.postgres.delta import finish as delta_finish
from recovery.postgres.facts import newest_segment_files
from recovery.postgres.planner import PgPlan
from recovery.postgres.target import check_target
from recovery.postgres.targets import target_settings
from recovery.preflight import require_objects

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PgRestoreResult:
    pgdata: str
    files: int
    bytes: int
    set_aside: str | None
    stop_at_target: bool
    checked: int | None = None  # a delta restore: bytes compared (bytes: those rewritten)


def stops_at_target(repo: Repository, source_id: int, plan: PgPlan) -> bool:
    """Whether the archive holds a transaction after the target. PostgreSQL
    stops a time-targeted recovery at the first one; without one it would
    fail at the end of WAL, so then all archived WAL is replayed instead
    (the same state: nothing archived happened after the target)."""
    names = [name for name, end in plan.chain if end >= plan.target]
    oids = segment_oids(repo, source_id)
    for name in reversed(names):
        times = transaction_times(repo.get_chunk(oids[name]))
        if any(t > plan.target for t in times):
            return True
        if times:
            return False  # the newest transaction in the archive is not after the target
    return False


def spool_entries(repo: Repository, source_id: int, plan: PgPlan) -> list[tuple[str, str]]:
    """What recovery will ask for, in order: history files, then the chain."""
    with repo.catalog.session() as s:
        rows = s.execute(
            select(WalFile.name, WalFile.oid).where(
                WalFile.source_id == source_id, WalFile.kind == "history"
            )
        ).all()
    history = sorted((name, oid) for name, oid in rows)
    oids = segment_oids(repo, source_id)
    return history + [(name, oids[name]) for name, _ in plan.chain]


def segment_oids(repo: Repository, source_id: int) -> dict[str, str]:
    """Segment name -> the object a restore hands PostgreSQL for it: the
    completed segment, else its newest streamed piece (full-size, zeros past
    what was received: replay ends there)."""
    return {w.name.split(".")[0]: w.oid for w in _segment_files(repo, source_id)}


def streamed_segments(repo: Repository, source_id: int, plan: PgPlan) -> tuple[str, ...]:
    """The plan's segments that only a streamed piece stands for (not completed yet)."""
    chain = {name for name, _ in plan.chain}
    files = _segment_files(repo, source_id)
    return tuple(
        sorted(n for w in files if w.kind == "stream" and (n := w.name.split(".")[0]) in chain)
    )


def _segment_files(repo: Repository, source_id: int) -> list[WalFile]:
    with repo.catalog.session() as s:
        rows = list(
            s.scalars(
                select(WalFile).where(
                    WalFile.source_id == source_id, WalFile.kind.in_(("segment", "stream"))
                )
            )
        )
    return list(newest_segment_files(rows).values())


def local_records_dir(repo: Repository, source: str) -> str | None:
    """Where a local repository keeps the source's WAL records (None for S3)."""
    from catalog.store.local import LocalStore

    if not isinstance(repo.store, LocalStore):
        return None
    return str((repo.store.root / wal_folder(source)).absolute())


def load_manifest(repo: Repository, backup_id: str) -> PgBackupManifest:
    with repo.catalog.session() as s:
        oid = s.scalars(select(Backup.manifest_oid).where(Backup.id == backup_id)).one()
    require_objects(repo, {oid: f"the manifest of base backup {backup_id}"}, "restore")
    return read_manifest(repo, oid, PgBackupManifest)


def require_plan_objects(repo: Repository, source: str, source_id: int, plan: PgPlan) -> None:
    """Refuse (exit 4) before anything is written unless the backup's
    chunks and the WAL the plan replays are all in the store."""
    manifest = load_manifest(repo, plan.backup.id)
    needed = {oid: f"WAL file {name}" for name, oid in spool_entries(repo, source_id, plan)}
    for entry in manifest.entries:
        for oid in entry.chunks:
            needed.setdefault(oid, f"{entry.path} of base backup {plan.backup.id}")
    require_objects(repo, needed, f"restore {source}")


def recovery_settings(
    plan: PgPlan, restore_command: str, stop_at_target: bool, end_command: str | None = None
) -> str:
    lines = [
        "",
        f"# written by pitr restore at {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"restore_command = {_quote(restore_command)}",
        f"recovery_target_timeline = '{plan.timeline}'",
    ]
    if end_command:
        lines.append(f"recovery_end_command = {_quote(end_command)}")
    lines += target_settings(plan, stop_at_target)
    return "\n".join(lines) + "\n"


def restore_postgres(
    repo: Repository,
    plan: PgPlan,
    pgdata: str | Path,
    *,
    restore_command: str,
    stop_at_target: bool,
    end_command: str | None = None,
    force: bool = False,
    delta: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
) -> PgRestoreResult:
    target = Path(pgdata).absolute()
    manifest = load_manifest(repo, plan.backup.id)
    entries = manifest.entries
    for entry in entries:
        _check_path(entry.path)
    if delta and can_delta(target, manifest.system_identifier):
        settings = recovery_settings(plan, restore_command, stop_at_target, end_command)
        return _restore_delta(repo, manifest, target, settings, workers, stop_at_target)
    occupied = check_target(target, force)
    # A restore killed earlier leaves its staging directory: never used, removed.
    for stale in target.parent.glob(f".{target.name}.pitr-restoring-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = target.with_name(f".{target.name}.pitr-restoring-{uuid.uuid4().hex[:8]}")
    staging.mkdir(mode=0o700, parents=True)
    try:
        written = _lay_down(repo, staging, entries, workers, progress, manifest.chunk_size)
        settings = recovery_settings(plan, restore_command, stop_at_target, end_command)
        _prepare_recovery(staging, manifest, settings)
        aside = None
        if occupied:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            aside = target.with_name(f"{target.name}.pitr-aside-{stamp}")
            target.rename(aside)
        elif target.exists():
            target.rmdir()  # empty directory: replace it
        staging.rename(target)
        _fsync(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = len(manifest.files)
    return PgRestoreResult(
        str(target), files, written, str(aside) if aside else None, stop_at_target
    )


def _prepare_recovery(
    root: Path, manifest: PgBackupManifest, settings: str, delta: bool = False
) -> None:
    """The files that make PostgreSQL recover from the backup, then the
    owner and durability of the whole tree (after a delta, of what changed:
    one syncfs, not an fsync of every file it left alone)."""
    (root / "backup_label").write_text(manifest.backup_label)
    if manifest.tablespace_map:
        (root / "tablespace_map").write_text(manifest.tablespace_map)
    (root / "recovery.signal").write_text("")
    with open(root / "postgresql.auto.conf", "a") as f:
        f.write(settings)
    _chown_tree(root, manifest.owner)
    for name in ("backup_label", "tablespace_map", "recovery.signal", "postgresql.auto.conf"):
        if (root / name).exists():
            os.chmod(root / name, 0o600)
    if not (delta and sync_filesystem(root)):
        _fsync_tree(root)


def _restore_delta(
    repo: Repository,
    manifest: PgBackupManifest,
    target: Path,
    settings: str,
    workers: int | None,
    stop_at_target: bool,
) -> PgRestoreResult:
    result = delta_restore(repo, manifest, target, workers)
    _prepare_recovery(target, manifest, settings, delta=True)
    delta_finish(target)
    return PgRestoreResult(
        str(target),
        len(manifest.files),
        result.rewritten,
        result.set_aside,
        stop_at_target,
        checked=result.checked,
    )


def _lay_down(
    repo: Repository,
    root: Path,
    entries: Sequence[FileEntry],
    workers: int | None,
    progress: Progress | None,
    chunk_size: int | None = None,
) -> int:
    """Write every file of the manifest under root; the bytes written.

    With the manifest's chunk size known, a large file is cut into pieces of
    PIECE_CHUNKS chunks written in parallel at their offsets: one big
    relation file would otherwise keep a single thread busy while the others
    idle. Older manifests are written a file per thread.
    """
    total = sum(e.size or 0 for e in entries)
    files = [e for e in entries if e.is_file]
    for entry in entries:
        if entry.kind in ("dir", "link"):
            # Tablespaces come back as directories inside pg_tblspc.
            (root / entry.path).mkdir(mode=0o700, parents=True, exist_ok=True)
    pieces: list[tuple[FileEntry, int, int, bool]] = []  # entry, chunks first..end, create
    for entry in files:
        n = len(entry.chunks)
        step = PIECE_CHUNKS if chunk_size else max(n, 1)
        path = root / entry.path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        split = n > step
        if split:  # written by several threads: exists before any of them
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        pieces += [(entry, i, min(i + step, n), not split) for i in range(0, max(n, 1), step)]

    def write(piece: tuple[FileEntry, int, int, bool]) -> tuple[str, int]:
        entry, first, end, create = piece
        path = root / entry.path
        return entry.path, _write_piece(repo, path, entry, first, end, chunk_size, create)

    written: dict[str, int] = {}
    done = 0
    with ThreadPoolExecutor(workers or max(2, os.cpu_count() or 2)) as pool:
        for name, size in pool.map(write, pieces):
            written[name] = written.get(name, 0) + size
            done += size
            if progress:
                progress(done, total)
    for entry in files:
        size = written.get(entry.path, 0)
        if entry.size is not None and size != entry.size:
            raise IntegrityError(
                f"restore {entry.path}: {size} bytes restored, manifest says {entry.size}"
            )
        os.chmod(root / entry.path, entry.mode & 0o7777 or 0o600)
    for entry in entries:
        if entry.kind == "dir":
            os.chmod(root / entry.path, entry.mode & 0o7777 or 0o700)
    return done


PIECE_CHUNKS = 8  # chunks a thread writes at a time when a large file is split
DIRECT_MIN = 1 << 20  # files this large whose size is whole pages skip the page cache


def _write_piece(
    repo: Repository,
    path: Path,
    entry: FileEntry,
    first: int,
    end: int,
    chunk_size: int | None,
    create: bool,
) -> int:
    """Write chunks first..end-1 of a file at their offsets; the bytes written.

    Large data files go through O_DIRECT: they are the bulk of a restore, and
    filling the page cache with them costs more than the disk write itself
    (and evicts what the host had cached). A filesystem that refuses
    O_DIRECT (tmpfs) gets ordinary writes.
    """
    oids = entry.chunks
    expected = -1 if entry.size is None else entry.size
    direct = getattr(os, "O_DIRECT", 0)
    if direct and expected >= DIRECT_MIN and expected % 4096 == 0:
        try:
            return _write_chunks(repo, path, oids, first, end, chunk_size, create, direct)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
    return _write_chunks(repo, path, oids, first, end, chunk_size, create, 0)


def _write_chunks(
    repo: Repository,
    path: Path,
    oids: Sequence[str],
    first: int,
    end: int,
    chunk_size: int | None,
    create: bool,
    flags: int,
) -> int:
    flags |= os.O_WRONLY | (os.O_CREAT | os.O_TRUNC if create else 0)
    fd = os.open(path, flags, 0o600)
    offset = first * chunk_size if chunk_size else 0
    start = offset
    try:
        for i in range(first, end):
            data = repo.get_chunk_view(oids[i])
            check_chunk(path.name, i, len(data), len(oids), chunk_size)
            offset += pwrite_all(fd, data, offset)
    finally:
        os.close(fd)
    return offset - start


def _fsync_tree(root: Path) -> None:
    """Make the restored tree durable. Done once everything is written: a
    file's fsync forces a journal commit, and commits interleaved with the
    creation of the next files make both wait."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync(os.path.join(dirpath, name))
        _fsync(dirpath)


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_path(path: str) -> None:
    """A manifest path must stay inside the target directory."""
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not p.parts or "\\" in path:
        raise IntegrityError(f"restore: manifest path {path!r} leaves the target directory")


def _chown_tree(root: Path, owner: str | None) -> None:
    """Running as root, give the files to the user who owned PGDATA."""
    if os.geteuid() != 0 or not owner:
        return
    try:
        pw = pwd.getpwnam(owner)
    except KeyError:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
