"""Helpers for the `pitr serve` tests: the server as a child process run by
the postgres user, plain HTTP requests to it, and a headless Chromium."""

from __future__ import annotations

import base64
import os
import pwd
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.servers import PITR_BIN, clean_env, free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class Served:
    """`pitr <command>` (serve or daemon) answering on a loopback port."""

    def __init__(self, config: Path, log: Path, command: list[str], port: int, env: Any) -> None:
        pw = pwd.getpwnam("postgres")
        self.port = port
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(PITR_BIN), "--config", str(config), *command],
                user=pw.pw_uid,
                group=pw.pw_gid,
                extra_groups=[],
                env=clean_env({"HOME": pw.pw_dir, **(env or {})}),
                stdout=out,
                stderr=out,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        wait_until(
            lambda: self.proc.poll() is not None or self.get("/healthz")[0] in (200, 503),
            60,
            "the server to answer",
            detail=lambda: self.log.read_text(),
        )
        assert self.proc.poll() is None, self.log.read_text()

    def get(
        self, path: str, headers: Mapping[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, str, Mapping[str, str]]:
        """(status, body, headers); status 0 while nothing listens."""
        request = urllib.request.Request(self.url + path, headers=dict(headers or {}))
        request.method = method
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, r.read().decode(), r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), e.headers
        except (ConnectionError, urllib.error.URLError):
            return 0, "", {}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


@contextmanager
def serving(
    config: Path, base: Path, command: str = "serve", env: Mapping[str, str] | None = None
) -> Iterator[Served]:
    """`pitr serve --listen` on a free port (command="daemon": the daemon,
    whose config must name the port in [serve] listen: see served_port)."""
    port = free_port() if command == "serve" else served_port(config)
    argv = ["serve", "--listen", f"127.0.0.1:{port}"] if command == "serve" else [command]
    server = Served(config, base / f"{command}.log", argv, port, env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def served_port(config: Path) -> int:
    import tomllib

    listen = tomllib.loads(config.read_text())["serve"]["listen"]
    return int(listen.rpartition(":")[2])


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium driven through Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    service = Service(executable_path=CHROMEDRIVER, env=dict(os.environ))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
