"""Helpers for the PostgreSQL end-to-end tests: an archiving cluster with a
pitr repository, marker rows, and restoring into a second cluster."""

from __future__ import annotations

import pwd
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pitr.daemon_client import ask, socket_path
from tests.servers import PITR_BIN, PostgresCluster, clean_env, run_pitr, wait_until


@dataclass
class Archived:
    cluster: PostgresCluster
    config: Path
    repo: Path
    base: Path
    factory: Any  # the pg_cluster_factory fixture, to adopt restored directories

    def restored(self, pgdata: Path) -> PostgresCluster:
        """Start PostgreSQL on a restored directory and wait for promotion."""
        cluster: PostgresCluster = self.factory.from_pgdata(pgdata)
        cluster.start_recovered()
        return cluster

    def pitr(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> Any:
        """Run pitr as the postgres user, as an operator on the database host would."""
        return run_pitr(list(args), config=self.config, user="postgres", check=check, env=env)

    def catalog_db(self) -> sqlite3.Connection:
        """The SQLite catalog once it has caught up with the store (a plain
        `wal-push` acknowledges from the store alone; any command catches up)."""
        self.pitr("info")
        return sqlite3.connect(self.repo / "catalog.db")

    def marker(self, n: int) -> datetime:
        """Commit marker n; return the instant it was written."""
        out = self.cluster.psql(f"INSERT INTO markers(n) VALUES ({n}) RETURNING t")
        return datetime.fromisoformat(out.strip()).astimezone(UTC)

    def instant_between_markers(self, pause: float) -> str:
        """Markers 1 and 2 `pause` seconds apart, archived; the ISO instant
        halfway between them (a restore there holds marker 1 only)."""
        t1 = self.marker(1)
        time.sleep(pause)
        self.marker(2)
        self.switch_and_wait()
        return midpoint(t1, t1 + timedelta(seconds=pause)).isoformat()

    def switch_and_wait(self, timeout: float = 60) -> None:
        """Close the current segment and wait until PostgreSQL has archived it."""
        name = self.cluster.psql("SELECT pg_walfile_name(pg_switch_wal())").strip()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.cluster.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
            if last.strip() >= name:
                return
            time.sleep(0.1)
        raise TimeoutError(f"segment {name} was not archived; log: {self.cluster.log_tail(20)}")


def write_config(
    path: Path, repo: Path, cluster: PostgresCluster, name: str = "db", section: str | None = None
) -> Path:
    """section: the [repository] table (default: a local directory at repo)."""
    path.write_text(
        (section or f'[repository]\nurl = "{repo}"\n')
        + f'\n[sources.{name}]\nkind = "postgres"\ndsn = "{cluster.dsn}"\n'
        + f'pgdata = "{cluster.pgdata}"\n'
    )
    path.chmod(0o644)
    return path


def start_archiving(
    cluster: PostgresCluster, base: Path, factory: Any, repository: Any = None
) -> Archived:
    """Point archive_command at pitr, create the repository, make the marker
    table. repository: a RepositorySpec fixture value (default: local)."""
    repo = base / "repo"
    section = repository.section(base) if repository is not None else None
    config = write_config(base / "pitr.toml", repo, cluster, section=section)
    archived = Archived(cluster, config, repo, base, factory)
    archived.pitr("init")
    cluster.set_archive_command(f"{PITR_BIN} --config {config} wal-push %p")
    cluster.psql(
        "CREATE TABLE markers (n int PRIMARY KEY, t timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    return archived


def open_dir(path: Path) -> Path:
    """A directory both root and the postgres user can write (umask aside)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def midpoint(a: datetime, b: datetime) -> datetime:
    return a + (b - a) / 2


def markers_in(cluster: PostgresCluster) -> list[int]:
    out = cluster.psql("SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '') FROM markers")
    return [int(x) for x in out.strip().split(",") if x]


def start_daemon(archived: Archived) -> subprocess.Popen[bytes]:
    """`pitr daemon` as the postgres user, its log in the test's directory."""
    pw = pwd.getpwnam("postgres")
    log = open(archived.base / "daemon.log", "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [str(PITR_BIN), "--config", str(archived.config), "daemon"],
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        env=clean_env({"HOME": pw.pw_dir}),
        stdout=log,
        stderr=log,
    )
    log.close()
    sock = socket_path(archived.repo.absolute().as_uri())
    wait_until(
        lambda: ask(sock, {"op": "ping"}, timeout=2) is not None,
        30,
        "the daemon's socket",
        detail=lambda: daemon_log(archived),
    )
    return proc


def daemon_log(archived: Archived) -> str:
    return (archived.base / "daemon.log").read_text(errors="replace")
