"""Real servers for tests: PostgreSQL 15, redis-server and moto_server.

Each server runs on 127.0.0.1 with a free port and keeps its files in its
own directory under one per-process base directory (/tmp/pitr-tests-XXXX,
mode 0755, so that the postgres OS user can reach it). Everything started
here is registered and stopped at interpreter exit as a last resort; the
fixtures in conftest.py stop servers as soon as a test ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG_BIN = Path(os.environ.get("PITR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
VENV_BIN = Path(sys.executable).parent
PITR_BIN = VENV_BIN / "pitr"

_base_dir: Path | None = None
_live: list[Any] = []  # servers not yet stopped, for the atexit sweep


class ServerError(RuntimeError):
    """A test server failed to start, stop or answer."""


class PitrFailed(AssertionError):
    """`pitr` exited with another code than the test expected."""


# -- small helpers ---------------------------------------------------------


def base_dir() -> Path:
    """This process's directory for test servers, created on first use."""
    global _base_dir
    if _base_dir is None:
        root = os.environ.get("PITR_TEST_BASE", "/tmp")
        _base_dir = Path(tempfile.mkdtemp(prefix="pitr-tests-", dir=root))
        _base_dir.chmod(0o755)
    return _base_dir


def remove_base_dir() -> None:
    global _base_dir
    if _base_dir is not None:
        shutil.rmtree(_base_dir, ignore_errors=True)
        _base_dir = None


def new_dir(prefix: str, mode: int = 0o755, owner: str | None = None) -> Path:
    """A fresh directory under base_dir(), optionally owned by `owner`."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir()))
    path.chmod(mode)
    if owner is not None and os.geteuid() == 0:
        pw = pwd.getpwnam(owner)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.1,
    detail: Callable[[], str] | None = None,
) -> Any:
    """Poll until predicate() is truthy and return its value; raise on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)


def tail(path: Path, n: int) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(lines[-n:])


def as_user(user: str | None, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
    """argv run as `user` through runuser (only needed, and only possible, as root)."""
    args = [os.fspath(a) for a in argv]
    if user is None or os.geteuid() != 0 or pwd.getpwuid(os.geteuid()).pw_name == user:
        return args
    return ["runuser", "-u", user, "--", *args]


def clean_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """os.environ without libpq's PG* variables, plus `extra` (None removes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def _stop_process(proc: subprocess.Popen[Any], sig: int, timeout: float, what: str) -> None:
    """Send sig and wait; SIGKILL and raise when it does not exit in time."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        raise ServerError(f"{what} did not stop within {timeout:g}s; killed it") from None


@atexit.register
def _sweep() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.cleanup()
    remove_base_dir()


# -- PostgreSQL ------------------------------------------------------------

CONF_BEGIN = "# --- pitr test settings (managed by tests/servers.py) ---"
CONF_END = "# --- end of pitr test settings ---"


def _conf_quote(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace("'", "''")
    return f"'{text}'"


def _sql_quote(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


class PostgresCluster:
    """A PostgreSQL 15 cluster owned by the postgres OS user.

    The postmaster is a child of this process (started with the postgres
    uid), so that kill9() can kill and reap it like a crash would.
    """

    def __init__(
        self,
        workdir: Path,
        pgdata: Path,
        port: int | None = None,
        settings: Mapping[str, object] | None = None,
        env: Mapping[str, str | None] | None = None,
    ) -> None:
        self.workdir = workdir
        self.pgdata = pgdata
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.settings: dict[str, object] = dict(settings or {})
        self.env: dict[str, str | None] = dict(env or {})
        self.log_path = workdir / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._cleaned = False
        _live.append(self)

    # construction

    @classmethod
    def create(
        cls,
        archive_command: str = "/bin/true",
        archive_timeout: int | str | None = None,
        settings: Mapping[str, object] | None = None,
        env: Mapping[str, str | None] | None = None,
    ) -> PostgresCluster:
        """initdb a new cluster (not started)."""
        workdir = new_dir("pg-", 0o755, owner=PG_USER)
        pgdata = workdir / "data"
        merged = _base_settings()
        if archive_timeout is not None:
            merged["archive_timeout"] = archive_timeout
        merged.update(settings or {})
        cluster = cls(workdir, pgdata, settings=merged, env=env)
        argv = [
            PG_BIN / "initdb",
            "-D",
            pgdata,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-U",
            PG_USER,
            # Syncing the fresh template files buys nothing in a throwaway test
            # cluster; the server itself keeps fsync on.
            "--no-sync",
            "--no-instructions",
        ]
        cluster._run_as_postgres(argv, "initdb")
        cluster._write_conf()
        cluster.set_setting("archive_command", archive_command)
        return cluster

    @classmethod
    def from_pgdata(
        cls,
        path: str | os.PathLike[str],
        archive_command: str | None = None,
        settings: Mapping[str, object] | None = None,
        env: Mapping[str, str | None] | None = None,
    ) -> PostgresCluster:
        """Adopt an existing data directory (a restore) with a fresh port.

        The directory is chowned to postgres and its test settings block is
        rewritten for the new port and socket; archive_command and anything a
        restore wrote to postgresql.auto.conf is kept unless archive_command
        is given.
        """
        pgdata = Path(path).resolve()
        if not (pgdata / "PG_VERSION").is_file():
            raise ServerError(f"adopt {pgdata}: not a PostgreSQL data directory (no PG_VERSION)")
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            for root, dirs, files in os.walk(pgdata):
                for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.lchown(name, pw.pw_uid, pw.pw_gid)
        pgdata.chmod(0o700)
        check = subprocess.run(
            as_user(PG_USER, ["test", "-w", pgdata, "-a", "-x", pgdata]), check=False
        )
        if check.returncode != 0:
            raise ServerError(
                f"adopt {pgdata}: the postgres user cannot reach it; "
                "put it under shared_tmp or servers.base_dir(), not pytest's tmp_path"
            )
        workdir = new_dir("pg-", 0o755, owner=PG_USER)
        merged = _base_settings()
        merged.update(settings or {})
        cluster = cls(workdir, pgdata, settings=merged, env=env)
        cluster._write_conf()
        if archive_command is not None:
            cluster.set_setting("archive_command", archive_command)
        return cluster

    # properties

    @property
    def socket_dir(self) -> Path:
        return self.workdir

    @property
    def dsn(self) -> str:
        return f"host={self.socket_dir} port={self.port} user={PG_USER} dbname=postgres"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def log_tail(self, n: int = 40) -> str:
        return tail(self.log_path, n)

    # lifecycle

    def start(self, timeout: float = 60) -> None:
        """Start the postmaster and wait until it accepts connections."""
        if self.running:
            return
        for attempt in range(3):
            self._spawn()
            try:
                self.wait_ready(timeout)
                return
            except ServerError:
                # Another test grabbed the port between free_port() and bind.
                if self._fixed_port or attempt == 2 or "already in use" not in self.log_tail(20):
                    raise
                self.port = free_port()
                self._write_conf()

    def _spawn(self) -> None:
        env = clean_env({"HOME": pwd.getpwnam(PG_USER).pw_dir, "USER": PG_USER, **self.env})
        env["LOGNAME"] = PG_USER
        argv = [
            os.fspath(PG_BIN / "postgres"),
            "-D",
            os.fspath(self.pgdata),
            # The command line beats both config files, so a restored
            # PGDATA's old port or socket settings cannot get in the way.
            "-p",
            str(self.port),
            "-k",
            os.fspath(self.socket_dir),
        ]
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            kwargs.update(
                user=pw.pw_uid,
                group=pw.pw_gid,
                extra_groups=os.getgrouplist(PG_USER, pw.pw_gid),
            )
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
                **kwargs,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the server accepts connections (it may still be recovering)."""

        def ready() -> bool:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise ServerError(
                    f"postgres on port {self.port} exited (code {code}) before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            argv = [PG_BIN / "pg_isready", "-q", "-h", self.socket_dir, "-p", str(self.port)]
            return subprocess.run([os.fspath(a) for a in argv], check=False).returncode == 0

        try:
            wait_until(ready, timeout, f"postgres on port {self.port}", interval=0.1)
        except TimeoutError as e:
            raise ServerError(f"{e}; log {self.log_path}:\n{self.log_tail()}") from None
        # pg_isready answers yes while a standby is not yet consistent; make
        # sure a real connection works.
        try:
            wait_until(self._can_connect, timeout, f"a connection on port {self.port}")
        except TimeoutError as e:
            raise ServerError(f"{e}; log {self.log_path}:\n{self.log_tail()}") from None

    def _can_connect(self) -> bool:
        if not self.running:
            raise ServerError(
                f"postgres on port {self.port} exited; log {self.log_path}:\n{self.log_tail()}"
            )
        proc = subprocess.run(
            self._psql_argv("postgres"),
            input="SELECT 1",
            capture_output=True,
            text=True,
            check=False,
            env=clean_env(),
        )
        return proc.returncode == 0

    def wait_recovered(self, timeout: float = 120) -> None:
        """Wait until recovery has finished: pg_is_in_recovery() is false."""

        def done() -> bool:
            if not self.running:
                code = None if self._proc is None else self._proc.returncode
                raise ServerError(
                    f"postgres on port {self.port} exited (code {code}) during recovery; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                return self.psql("SELECT pg_is_in_recovery()") == "f"
            except ServerError:
                return False  # still starting up or shutting down for a restart

        try:
            wait_until(done, timeout, f"the end of recovery on port {self.port}", interval=0.2)
        except TimeoutError as e:
            raise ServerError(f"{e}; log {self.log_path}:\n{self.log_tail()}") from None

    wait_promoted = wait_recovered

    def start_recovered(self, timeout: float = 120) -> None:
        """start() and wait_recovered(): for a restored PGDATA."""
        self.start(timeout)
        self.wait_recovered(timeout)

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        signals = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
        if mode not in signals:
            raise ValueError(f"unknown shutdown mode {mode!r}")
        if self._proc is None:
            return
        _stop_process(self._proc, signals[mode], timeout, f"postgres on port {self.port}")
        self._proc = None

    def kill9(self, everything: bool = False, timeout: float = 30) -> None:
        """SIGKILL the postmaster, as a crash would, and reap it.

        Its children then exit on their own when they notice; they are
        waited for (and killed after `timeout`) so that a restart finds no
        process attached to the old shared memory. everything=True kills
        them at once too.
        """
        if self._proc is None or self._proc.poll() is not None:
            self._proc = None
            return
        children = _children(self._proc.pid)
        self._proc.kill()
        self._proc.wait(timeout=30)
        self._proc = None
        if everything:
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        try:
            wait_until(
                lambda: not any(_alive(p) for p in children),
                timeout,
                "postgres child processes to exit",
            )
        except TimeoutError:
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def restart(self, mode: str = "fast", timeout: float = 60) -> None:
        self.stop(mode)
        self.start(timeout)

    def cleanup(self) -> None:
        """Stop the server however necessary and remove its directory."""
        if self._cleaned:
            return
        try:
            if self.running:
                try:
                    self.stop("fast", timeout=30)
                except ServerError:
                    self.kill9(everything=True)
        finally:
            self._cleaned = True
            if self in _live:
                _live.remove(self)
            shutil.rmtree(self.workdir, ignore_errors=True)

    # SQL

    def _psql_argv(self, dbname: str) -> list[str]:
        argv = [
            PG_BIN / "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.socket_dir,
            "-p",
            str(self.port),
            "-U",
            PG_USER,
            "-d",
            dbname,
            "-f",
            "-",
        ]
        return as_user(PG_USER, argv)

    def psql(self, sql: str, dbname: str = "postgres", timeout: float = 120) -> str:
        """Run sql through psql as postgres; unaligned tuples-only output, '|' separated."""
        proc = subprocess.run(
            self._psql_argv(dbname),
            input=sql,
            capture_output=True,
            text=True,
            check=False,
            env=clean_env(),
            cwd=self.workdir,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise ServerError(
                f"psql on port {self.port} failed (exit {proc.returncode}): {proc.stderr.strip()}"
            )
        return proc.stdout.rstrip("\n")

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        self.psql(sql, dbname)

    def connect(self, **kwargs: Any) -> Any:
        """A psycopg connection (autocommit unless told otherwise)."""
        import psycopg

        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn, **kwargs)

    # settings

    def set_setting(self, name: str, value: object) -> None:
        """Set a parameter in postgresql.auto.conf: ALTER SYSTEM + reload when
        running, a direct edit of the file when stopped."""
        if self.running:
            self.execute(f"ALTER SYSTEM SET {name} = {_sql_quote(value)}; SELECT pg_reload_conf();")
            return
        auto = self.pgdata / "postgresql.auto.conf"
        try:
            lines = auto.read_text().splitlines()
        except FileNotFoundError:
            lines = ["# Do not edit this file manually!"]
        kept = [ln for ln in lines if ln.split("=", 1)[0].strip() != name]
        kept.append(f"{name} = {_conf_quote(value)}")
        self._write_as_postgres(auto, "\n".join(kept) + "\n")

    def set_archive_command(self, command: str) -> None:
        self.set_setting("archive_command", command)

    def _write_conf(self) -> None:
        """(Re)write the managed block at the end of postgresql.conf."""
        conf = self.pgdata / "postgresql.conf"
        text = conf.read_text()
        if CONF_BEGIN in text:
            head, rest = text.split(CONF_BEGIN, 1)
            text = head + rest.split(CONF_END, 1)[1].lstrip("\n")
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            "unix_socket_directories": os.fspath(self.socket_dir),
            **self.settings,
        }
        block = [CONF_BEGIN, *(f"{k} = {_conf_quote(v)}" for k, v in settings.items()), CONF_END]
        self._write_as_postgres(conf, text.rstrip("\n") + "\n\n" + "\n".join(block) + "\n")

    def _write_as_postgres(self, path: Path, text: str) -> None:
        path.write_text(text)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        path.chmod(0o600)

    def _run_as_postgres(self, argv: Sequence[str | os.PathLike[str]], what: str) -> str:
        proc = subprocess.run(
            as_user(PG_USER, argv),
            capture_output=True,
            text=True,
            check=False,
            cwd=self.workdir,
            env=clean_env(),
            timeout=300,
        )
        if proc.returncode != 0:
            raise ServerError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def __repr__(self) -> str:
        return f"PostgresCluster(port={self.port}, pgdata={self.pgdata})"


def _base_settings() -> dict[str, object]:
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "max_wal_senders": 4,
        "shared_buffers": "16MB",
        "max_connections": 20,
        "logging_collector": "off",
    }


# -- Redis -----------------------------------------------------------------


class RedisServer:
    """redis-server in the foreground with no persistence of its own."""

    def __init__(self, port: int | None = None) -> None:
        self.workdir = new_dir("redis-")
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.log_path = self.workdir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._cleaned = False
        _live.append(self)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        return tail(self.log_path, n)

    def client(self, **kwargs: Any) -> Any:
        import redis

        return redis.Redis.from_url(self.url, **kwargs)

    def start(self, timeout: float = 30) -> None:
        if self.running:
            return
        for attempt in range(3):
            self._spawn()
            try:
                self._wait_ready(timeout)
                return
            except ServerError:
                if self._fixed_port or attempt == 2 or "in use" not in self.log_tail(20):
                    raise
                self.port = free_port()

    def _spawn(self) -> None:
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            os.fspath(self.workdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            os.fspath(self.log_path),
        ]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
            start_new_session=True,
        )

    def _wait_ready(self, timeout: float) -> None:
        import redis

        def ready() -> bool:
            if not self.running:
                raise ServerError(
                    f"redis-server on port {self.port} exited; log:\n{self.log_tail()}"
                )
            try:
                with self.client(socket_timeout=2) as c:
                    return bool(c.ping())
            except redis.exceptions.RedisError:
                return False

        try:
            wait_until(ready, timeout, f"redis-server on port {self.port}", interval=0.05)
        except TimeoutError as e:
            raise ServerError(f"{e}; log:\n{self.log_tail()}") from None

    def stop(self, timeout: float = 30) -> None:
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGTERM, timeout, f"redis on port {self.port}")
            self._proc = None

    def kill9(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=30)
            self._proc = None

    def restart(self, keep_data: bool = False, timeout: float = 30) -> None:
        """Stop and start on the same port: empty, or with the data when keep_data."""
        dump = self.workdir / "dump.rdb"
        if keep_data and self.running:
            with self.client() as c:
                c.save()
        self.stop()
        if not keep_data:
            dump.unlink(missing_ok=True)
        self.start(timeout)

    def cleanup(self) -> None:
        if self._cleaned:
            return
        try:
            if self.running:
                with contextlib.suppress(ServerError):
                    self.stop(timeout=10)
        finally:
            self._cleaned = True
            if self in _live:
                _live.remove(self)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port})"


# -- S3 (moto) -------------------------------------------------------------

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


class S3Server:
    """moto_server: an S3 endpoint on loopback."""

    def __init__(self, port: int | None = None) -> None:
        self.workdir = new_dir("s3-")
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.log_path = self.workdir / "moto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._cleaned = False
        _live.append(self)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        return tail(self.log_path, n)

    def start(self, timeout: float = 60) -> None:
        if self.running:
            return
        for attempt in range(3):
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    [os.fspath(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=clean_env(AWS_TEST_ENV),
                    start_new_session=True,
                )
            try:
                wait_until(self._answers, timeout, f"moto_server on port {self.port}", 0.1)
                return
            except (ServerError, TimeoutError) as e:
                in_use = "in use" in self.log_tail(20)
                if self._fixed_port or attempt == 2 or not in_use:
                    self.stop()
                    raise ServerError(f"{e}; log:\n{self.log_tail()}") from None
                self.port = free_port()

    def _answers(self) -> bool:
        if not self.running:
            raise ServerError(f"moto_server on port {self.port} exited")
        try:
            with urllib.request.urlopen(self.endpoint_url + "/", timeout=2) as r:
                return bool(r.status < 500)
        except urllib.error.HTTPError as e:
            return e.code < 500
        except OSError:
            return False

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=AWS_TEST_ENV["AWS_DEFAULT_REGION"],
        )

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def stop(self, timeout: float = 30) -> None:
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGTERM, timeout, f"moto_server on {self.port}")
            self._proc = None

    def cleanup(self) -> None:
        if self._cleaned:
            return
        try:
            with contextlib.suppress(ServerError):
                self.stop(timeout=10)
        finally:
            self._cleaned = True
            if self in _live:
                _live.remove(self)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"S3Server(port={self.port})"


# -- per-test collections (the fixtures hand these out) ---------------------


class ClusterFactory:
    """Makes PostgreSQL clusters for one test and cleans them all up."""

    def __init__(self) -> None:
        self.clusters: list[PostgresCluster] = []

    def __call__(self, start: bool = True, **kwargs: Any) -> PostgresCluster:
        """A new initdb'd cluster; kwargs go to PostgresCluster.create."""
        cluster = PostgresCluster.create(**kwargs)
        self.clusters.append(cluster)
        if start:
            cluster.start()
        return cluster

    def from_pgdata(self, path: str | os.PathLike[str], **kwargs: Any) -> PostgresCluster:
        """Adopt a (restored) data directory, not started: call start_recovered()."""
        cluster = PostgresCluster.from_pgdata(path, **kwargs)
        self.clusters.append(cluster)
        return cluster

    def cleanup(self) -> None:
        errors = []
        for cluster in reversed(self.clusters):
            try:
                cluster.cleanup()
            except Exception as e:  # keep cleaning the others
                errors.append(e)
        self.clusters.clear()
        if errors:
            raise errors[0]


class RedisFactory:
    """Makes Redis servers for one test and cleans them all up."""

    def __init__(self) -> None:
        self.servers: list[RedisServer] = []

    def __call__(self, start: bool = True) -> RedisServer:
        server = RedisServer()
        self.servers.append(server)
        if start:
            server.start()
        return server

    def cleanup(self) -> None:
        for server in reversed(self.servers):
            server.cleanup()
        self.servers.clear()


@dataclass(frozen=True)
class S3Bucket:
    """One bucket on the test S3 endpoint."""

    endpoint_url: str
    bucket: str
    server: S3Server

    def client(self) -> Any:
        return self.server.client()


def postgres_ids() -> tuple[int, int]:
    """uid and gid of the postgres OS user."""
    pw = pwd.getpwnam(PG_USER)
    return pw.pw_uid, pw.pw_gid


# -- the pitr command -------------------------------------------------------


def run_pitr(
    args: Sequence[str | os.PathLike[str]],
    config: str | os.PathLike[str] | None = None,
    env: Mapping[str, str | None] | None = None,
    user: str | None = None,
    check: bool | int = True,
    input: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `pitr [--config FILE] ARGS...` and return its text output.

    env adds to (None removes from) this process's environment; user runs it
    as that OS user through runuser (e.g. "postgres", as archive_command
    would). check=True wants exit 0, an int wants that exact code, False
    accepts anything; a mismatch raises with the command's output.
    """
    argv: list[str | os.PathLike[str]] = [PITR_BIN]
    if config is not None:
        argv += ["--config", config]
    argv += list(args)
    proc = subprocess.run(
        as_user(user, argv),
        input=input,
        capture_output=True,
        text=True,
        check=False,
        env=clean_env(env),
        cwd=cwd,
        timeout=timeout,
    )
    want = 0 if check is True else check
    if check is not False and proc.returncode != want:
        raise PitrFailed(
            f"pitr {' '.join(map(str, args))}: exit {proc.returncode}, wanted {want}\n"
            f"--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}"
        )
    return proc


# Where the command lives, for tests that build an archive_command line.
run_pitr.executable = PITR_BIN  # type: ignore[attr-defined]
