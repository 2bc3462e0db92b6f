"""Throwaway PostgreSQL and Redis servers on loopback, for `pitr demo`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin(name: str) -> str:
    """A PostgreSQL program: from PATH, else Debian's versioned directory."""
    found = shutil.which(name)
    if found:
        return found
    for version in ("17", "16", "15"):
        candidate = Path(f"/usr/lib/postgresql/{version}/bin/{name}")
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError(f"{name}: PostgreSQL is not installed (apt install postgresql-15)")


class ThrowawayPostgres:
    def __init__(self, workdir: Path, name: str = "pg") -> None:
        self.workdir = workdir
        self.pgdata = workdir / name
        self.port = free_port()
        self.log = workdir / f"{name}.log"

    @property
    def dsn(self) -> str:
        return f"host={self.workdir} port={self.port} user=postgres dbname=postgres"

    def init(self, archive_command: str) -> None:
        subprocess.run(
            [
                pg_bin("initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        self.configure(archive_command)

    def configure(self, archive_command: str | None = None) -> None:
        settings = {
            "port": self.port,
            "listen_addresses": "",
            "unix_socket_directories": str(self.workdir),
            "shared_buffers": "32MB",
            "max_connections": 20,
        }
        if archive_command is not None:
            settings |= {
                "wal_level": "replica",
                "archive_mode": "on",
                "archive_command": archive_command,
            }
        with open(self.pgdata / "postgresql.conf", "a") as f:
            for key, value in settings.items():
                text = str(value).replace("'", "''")
                f.write(f"{key} = '{text}'\n")

    def start(self, timeout: int = 120) -> None:
        subprocess.run(
            [
                pg_bin("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(timeout),
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def stop(self, mode: str = "fast") -> None:
        if (self.pgdata / "postmaster.pid").exists():
            subprocess.run(
                [pg_bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"],
                check=False,
                capture_output=True,
            )

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True)

    def wait_promoted(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.connect() as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row and row[0] is False:
                        return
            except Exception:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"PostgreSQL on {self.pgdata} did not finish recovery; see {self.log}")


class ThrowawayRedis:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(exe):
            raise FileNotFoundError("redis-server is not installed (apt install redis-server)")
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",  # pitr's capture gets its full sync at once
                "0",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
