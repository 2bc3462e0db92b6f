"""A moto_server S3 endpoint on loopback."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.harness import (
    VENV_BIN,
    ProcessServer,
    ServerError,
    clean_env,
    free_port,
    wait_until,
)

# -- S3 (moto) -------------------------------------------------------------

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


class S3Server(ProcessServer):
    """moto_server: an S3 endpoint on loopback."""

    what = "moto_server"

    def __init__(self, port: int | None = None) -> None:
        super().__init__("s3-", "moto.log", port)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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


@dataclass(frozen=True)
class S3Bucket:
    """One bucket on the test S3 endpoint."""

    endpoint_url: str
    bucket: str
    server: S3Server

    def client(self) -> Any:
        return self.server.client()
