"""A moto_server S3 endpoint on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.harness import (
    VENV_BIN,
    ServerError,
    _live,
    _stop_process,
    clean_env,
    free_port,
    new_dir,
    tail,
    wait_until,
)

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


@dataclass(frozen=True)
class S3Bucket:
    """One bucket on the test S3 endpoint."""

    endpoint_url: str
    bucket: str
    server: S3Server

    def client(self) -> Any:
        return self.server.client()
