"""Shared pieces of the benchmark: running commands (as the postgres OS user
when needed), background processes that are always stopped, bounded waits,
config files for pitr and pgBackRest, and reading results back from disk."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.harness import wait_until
from tests.servers import PG_BIN, PG_USER, PITR_BIN, as_user, clean_env, new_dir

PGBACKREST = "pgbackrest"
STANZA = "bench"
# Settings every benchmark cluster gets on top of the test defaults: enough
# shared memory for pgbench -i, and no checkpoint storm while it runs.
PG_SETTINGS: dict[str, object] = {
    "shared_buffers": "128MB",
    "max_wal_size": "2GB",
    "max_connections": 20,
}


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


# -- commands ----------------------------------------------------------------


def run(
    argv: Sequence[str | os.PathLike[str]],
    what: str,
    *,
    user: str | None = None,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 600,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv (as `user`), raise BenchError with its output when it fails.

    The command gets its own process group, so that a timeout or Ctrl-C
    stops it and whatever runuser started, not runuser alone."""
    proc = subprocess.Popen(
        as_user(user, argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(env),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException as e:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if isinstance(e, subprocess.TimeoutExpired):
            raise BenchError(f"{what}: no answer within {timeout:g}s") from None
        raise
    if proc.returncode != 0:
        out = (stderr.strip() or stdout.strip()).splitlines()[-15:]
        raise BenchError(f"{what}: exit {proc.returncode}\n" + "\n".join(out))
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.monotonic()
    value = fn()
    return time.monotonic() - t0, value


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """tests.harness.wait_until, failing as a step of the benchmark."""
    try:
        return wait_until(predicate, timeout, what, interval)
    except TimeoutError as e:
        raise BenchError(str(e)) from None


def postgres_ids() -> tuple[int, int]:
    pw = pwd.getpwnam(PG_USER)
    return pw.pw_uid, pw.pw_gid


def chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        uid, gid = postgres_ids()
        os.chown(path, uid, gid)


def pg_dir(prefix: str, mode: int = 0o755) -> Path:
    """A fresh directory owned by postgres under the benchmark's base directory."""
    return new_dir(prefix, mode, owner=PG_USER)


def write_pg_file(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    chown_postgres(path)
    return path


class Background:
    """A long-running process (pitr daemon, pitr tail) with its output in a
    file; stop() sends SIGTERM, waits, and kills it if it does not exit."""

    live: list[Background] = []

    def __init__(
        self, argv: Sequence[str | os.PathLike[str]], log: Path, user: str | None = None
    ) -> None:
        self.log = log
        kwargs: dict[str, Any] = {}
        if user is not None and os.geteuid() == 0:
            pw = pwd.getpwnam(user)
            kwargs.update(
                user=pw.pw_uid, group=pw.pw_gid, extra_groups=os.getgrouplist(user, pw.pw_gid)
            )
        env = clean_env()
        if user is not None:
            env.update(HOME=pwd.getpwnam(user).pw_dir, USER=user, LOGNAME=user)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [os.fspath(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                **kwargs,
            )
        Background.live.append(self)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int:
        if self in Background.live:
            Background.live.remove(self)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode

    @classmethod
    def stop_all(cls) -> None:
        for bg in list(cls.live):
            with contextlib.suppress(Exception):
                bg.stop(timeout=10)


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains text (our unique config paths)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def wait_gone(text: str, timeout: float) -> None:
    """Wait for processes started with our config (pgBackRest's async
    archiver detaches itself); kill them, by pid, after the timeout."""
    deadline = time.monotonic() + timeout
    while pids_mentioning(text) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids_mentioning(text):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- PostgreSQL ---------------------------------------------------------------


def pg_tool(name: str) -> str:
    return os.fspath(PG_BIN / name)


def ready_count(pgdata: Path) -> int:
    status = pgdata / "pg_wal" / "archive_status"
    with os.scandir(status) as it:
        return sum(1 for e in it if e.name.endswith(".ready"))


def du(path: Path) -> int:
    """Bytes on disk under path (allocated blocks, as du reports)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def dir_bytes(path: Path) -> int:
    """Apparent size of the files under path."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


# -- pitr ---------------------------------------------------------------------


def pitr_config(
    path: Path, repo: Path, *, dsn: str = "", pgdata: Path | None = None, redis_url: str = ""
) -> Path:
    text = f'[repository]\nurl = "{repo}"\n'
    if pgdata is not None:
        text += f'\n[sources.db]\nkind = "postgres"\ndsn = "{dsn}"\npgdata = "{pgdata}"\n'
    if redis_url:
        text += f'\n[sources.cache]\nkind = "redis"\nurl = "{redis_url}"\nstreams = ["bench:*"]\n'
        text += 'capture = "streams"\n'
    return write_pg_file(path, text)


def pitr_init(cluster: Any, path: Path, repo: Path) -> Path:
    """The config of a pitr repository archiving a PostgresCluster, initialised."""
    config = pitr_config(path, repo, dsn=cluster.dsn, pgdata=cluster.pgdata)
    run(pitr_argv(config, "init"), "pitr init", user=PG_USER)
    return config


def pitr_argv(config: Path, *args: str) -> list[str]:
    return [os.fspath(PITR_BIN), "--config", os.fspath(config), *args]


def pitr_archive_command(config: Path) -> str:
    """What `pitr archive-command` tells an operator to configure."""
    argv = pitr_argv(config, "archive-command", "--source", "db")
    return run(argv, "pitr archive-command").stdout.strip()


def pitr_has(command: str) -> bool:
    """Whether this pitr has `command` (older trees listed planned commands as stubs)."""
    proc = subprocess.run(
        [os.fspath(PITR_BIN), command, "--help"], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and "not built yet" not in proc.stdout


def catalog_query(repo: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the SQLite catalog of a local pitr repository (read-only)."""
    uri = f"file:{repo / 'catalog.db'}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def pitr_segments(repo: Path) -> int:
    """WAL segments a local pitr repository holds records of: what wal-push
    acknowledged (the catalog catches up only when a command reads it)."""
    folder = repo / "records" / "db" / "wal"
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir() if re.fullmatch(r"[0-9A-F]{24}", p.name))


# -- pgBackRest ---------------------------------------------------------------

SEGMENT_IN_REPO = re.compile(r"^[0-9A-F]{24}-[0-9a-f]{40}(\.[a-z0-9]+)?$")


def pgbackrest_config(
    path: Path,
    base: Path,
    pgdata: Path,
    port: int,
    socket_dir: Path,
    *,
    archive_async: bool = False,
    process_max: int = 2,
) -> Path:
    """A stanza whose repository, logs, locks and spool all live under base."""
    for name in ("repo", "log", "lock", "spool"):
        (base / name).mkdir(mode=0o750, exist_ok=True)
        chown_postgres(base / name)
    lines = [
        "[global]",
        f"repo1-path={base / 'repo'}",
        f"log-path={base / 'log'}",
        f"lock-path={base / 'lock'}",
        f"spool-path={base / 'spool'}",
        "compress-type=zst",
        "compress-level=3",
        "start-fast=y",
        f"process-max={process_max}",
        f"archive-async={'y' if archive_async else 'n'}",
        "log-level-console=warn",
        "",
        f"[{STANZA}]",
        f"pg1-path={pgdata}",
        f"pg1-port={port}",
        f"pg1-socket-path={socket_dir}",
        f"pg1-user={PG_USER}",
        "",
    ]
    return write_pg_file(path, "\n".join(lines))


def pgbackrest_stanza(cluster: Any, base: Path, *, archive_async: bool = False) -> Path:
    """The config of a pgBackRest stanza under base for a PostgresCluster, created."""
    config = pgbackrest_config(
        base / "pgbackrest.conf",
        base,
        cluster.pgdata,
        cluster.port,
        cluster.socket_dir,
        archive_async=archive_async,
    )
    run(pgbackrest_argv(config, "stanza-create"), "pgbackrest stanza-create", user=PG_USER)
    return config


def pgbackrest_argv(config: Path, *args: str) -> list[str]:
    return [PGBACKREST, f"--config={config}", f"--stanza={STANZA}", *args]


def pgbackrest_archive_command(config: Path) -> str:
    return f"{PGBACKREST} --config={config} --stanza={STANZA} archive-push %p"


def pgbackrest_segments(repo: Path) -> int:
    archive = repo / "archive" / STANZA
    count = 0
    for _root, _dirs, files in os.walk(archive):
        count += sum(1 for f in files if SEGMENT_IN_REPO.match(f))
    return count
