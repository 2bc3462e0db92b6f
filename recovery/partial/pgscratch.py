"""A scratch PostgreSQL cluster: the source restored to a target into a
temporary directory of pitr's own, started on its own socket for reading,
and stopped and removed afterwards whatever happens.

It never touches the live server's files: it listens on a Unix socket in
its directory only, archives nothing (archive_mode off: its WAL must never
reach the store as the source's), and ignores the restored configuration's
memory, TLS and authentication settings, which belong to the live machine.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catalog.children import die_with_parent
from catalog.errors import first_line
from catalog.scratchdir import ScratchDir
from pitr.throwaway import free_port, pg_bin
from recovery.errors import RecoveryError

if TYPE_CHECKING:
    import psycopg

    from pitr.kinds.postgres import PgRestoreJob

# Settings that beat both restored config files: the copy is for reading.
OVERRIDES = {
    "listen_addresses": "",
    "archive_mode": "off",
    "hot_standby": "off",  # no connections until replay ends: no parameter checks
    "shared_buffers": "128MB",
    "huge_pages": "off",
    "max_connections": "20",
    "ssl": "off",
    "autovacuum": "off",
    "synchronous_standby_names": "",
    "logging_collector": "off",
    "log_destination": "stderr",
    "cluster_name": "pitr-scratch",
}


class ScratchCluster:
    """A started scratch cluster: connect(dbname) while it lives."""

    def __init__(
        self, workdir: Path, pgdata: Path, port: int, proc: subprocess.Popen[bytes], owner: str
    ) -> None:
        self.workdir, self.pgdata, self.port, self.proc = workdir, pgdata, port, proc
        # Roles likely to exist in the copy: the bootstrap superuser is
        # usually named after the OS user that ran initdb.
        self.roles = [owner, "postgres"]
        self.user: str | None = None  # the role that got in first

    @property
    def log(self) -> Path:
        return self.workdir / "postgres.log"

    def connect(self, dbname: str) -> psycopg.Connection[Any]:
        """A connection as the first of roles that gets in (remembered);
        psycopg.OperationalError when none does."""
        import psycopg

        last: psycopg.OperationalError | None = None
        for role in [self.user] if self.user else self.roles:
            try:
                conn = psycopg.connect(
                    host=str(self.workdir),
                    port=self.port,
                    user=role,
                    dbname=dbname,
                    autocommit=True,
                    connect_timeout=10,
                )
            except psycopg.OperationalError as e:
                last = e
                continue
            self.user = role
            return conn
        assert last is not None
        raise last

    def wait_promoted(self) -> None:
        """Until replay has reached the target and the copy is promoted: no
        time limit, for replay can be long, but not past the server's death."""
        import psycopg

        while True:
            if self.proc.poll() is not None:
                raise RecoveryError(
                    f"scratch cluster: PostgreSQL stopped during recovery: {self.log_tail()}"
                )
            try:
                with self.connect("template1") as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row and not row[0]:
                        return
            except psycopg.OperationalError as e:
                if "does not exist" in str(e):  # no role to get in with
                    raise RecoveryError(f"scratch cluster: {first_line(e)}") from e
            time.sleep(0.2)

    def log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        fatal = [line for line in lines if "FATAL" in line or "PANIC" in line]
        return (fatal or lines or ["(empty log)"])[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def scratch_cluster(
    app: Any, job: PgRestoreJob, parent: str | None, echo: Any, roles: list[str]
) -> Iterator[ScratchCluster]:
    """The restore job carried out into a fresh directory under parent,
    started there and replayed to its target (roles: more to log in as);
    everything is removed on the way out (also on Ctrl-C, SIGTERM or a
    failure)."""
    from dataclasses import replace

    from recovery.postgres.spool import remove as remove_spool

    scratch = ScratchDir("pitr-scratch-", parent)
    workdir = scratch.path
    pgdata = workdir / "pgdata"
    previous = signal.signal(signal.SIGTERM, _interrupt)
    cluster: ScratchCluster | None = None
    try:
        job = replace(job, pgdata=str(pgdata), force=False, delta_system=None)
        echo(f"{job.src.name}: restoring into a scratch cluster in {workdir}")
        job.lay_down(app)
        cluster = _start(workdir, pgdata)
        cluster.roles = list(dict.fromkeys([cluster.roles[0], *roles, *cluster.roles]))
        echo(f"{job.src.name}: replaying WAL to the target in the scratch cluster")
        cluster.wait_promoted()
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        signal.signal(signal.SIGTERM, previous)
        remove_spool(str(workdir / ".pgdata.pitr-spool"))
        scratch.remove()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _start(workdir: Path, pgdata: Path) -> ScratchCluster:
    hba = workdir / "pg_hba.conf"
    hba.write_text("local all all trust\n")
    settings = {**OVERRIDES, "unix_socket_directories": str(workdir), "hba_file": str(hba)}
    if not (pgdata / "postgresql.conf").exists():  # kept outside PGDATA (Debian's /etc)
        (workdir / "postgresql.conf").write_text("")
        settings["config_file"] = str(workdir / "postgresql.conf")
    port = free_port()
    argv = [pg_bin("postgres"), "-D", str(pgdata), "-p", str(port)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    kwargs: dict[str, Any] = {}
    name = pwd.getpwuid(pgdata.stat().st_uid).pw_name
    if os.geteuid() == 0:  # PostgreSQL will not run as root: as the files' owner
        st = pgdata.stat()
        if st.st_uid == 0:
            raise RecoveryError("scratch cluster: the restored files belong to root")
        for path in (workdir, hba, *workdir.glob("postgresql.conf")):
            os.chown(path, st.st_uid, st.st_gid)
        kwargs = {
            "user": st.st_uid,
            "group": st.st_gid,
            "extra_groups": os.getgrouplist(name, st.st_gid),
        }
    with open(workdir / "postgres.log", "ab") as log:
        if os.geteuid() == 0:
            os.chown(workdir / "postgres.log", pgdata.stat().st_uid, pgdata.stat().st_gid)
        # Its own session: the operator's Ctrl-C reaches pitr, which stops it.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=workdir,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGINT),  # a fast shutdown if pitr is killed
            **kwargs,
        )
    return ScratchCluster(workdir, pgdata, port, proc, name)
