"""A throwaway PostgreSQL 15 cluster owned by the postgres OS user."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.harness import (
    PG_BIN,
    PG_USER,
    PortBound,
    ServerError,
    _live,
    _stop_process,
    alive,
    as_user,
    children,
    clean_env,
    free_port,
    new_dir,
    spawn_logged,
    tail,
    wait_until,
)
from tests.pgsql import ClusterAccess


class PostgresCluster(ClusterAccess, PortBound):
    """A PostgreSQL 15 cluster owned by the postgres OS user.

    The postmaster is a child of this process (started with the postgres
    uid), so that kill9() can kill and reap it like a crash would.
    start() starts it and waits until it accepts connections.
    """

    port_in_use = "already in use"
    start_timeout = 60.0

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
        wal_segsize_mb: int | None = None,
    ) -> PostgresCluster:
        """initdb a new cluster (not started); wal_segsize_mb: initdb --wal-segsize."""
        workdir = new_dir("pg-", 0o755, owner=PG_USER)
        pgdata = workdir / "data"
        merged = _base_settings()
        if archive_timeout is not None:
            merged["archive_timeout"] = archive_timeout
        merged.update(settings or {})
        cluster = cls(workdir, pgdata, settings=merged, env=env)
        argv: list[str | os.PathLike[str]] = [
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
        if wal_segsize_mb is not None:
            argv.append(f"--wal-segsize={wal_segsize_mb}")
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
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def log_tail(self, n: int = 40) -> str:
        return tail(self.log_path, n)

    # lifecycle

    def _port_changed(self) -> None:
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
        self._proc = spawn_logged(argv, self.log_path, self.workdir, env=env, **kwargs)

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the server accepts connections (it may still be recovering)."""

        def ready() -> bool:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise ServerError(
                    f"postgres on port {self.port} exited (code {code}) before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            argv: list[str | os.PathLike[str]] = [
                PG_BIN / "pg_isready",
                "-q",
                "-h",
                self.socket_dir,
                "-p",
                str(self.port),
            ]
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
        postgres_children = children(self._proc.pid)
        self._proc.kill()
        self._proc.wait(timeout=30)
        self._proc = None
        if everything:
            for pid in postgres_children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        try:
            wait_until(
                lambda: not any(alive(p) for p in postgres_children),
                timeout,
                "postgres child processes to exit",
            )
        except TimeoutError:
            for pid in postgres_children:
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
