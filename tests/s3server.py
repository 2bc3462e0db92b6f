"""A moto_server S3 endpoint on loopback."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.harness import (
    VENV_BIN,
    ProcessServer,
    ServerError,
    clean_env,
    spawn_logged,
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

    what, prefix, log_name = "moto_server", "s3-", "moto.log"
    start_timeout = 60.0
    endpoint_url = ProcessServer.url  # where boto3 and pitr's config point

    def _spawn(self) -> None:
        argv: list[str | os.PathLike[str]] = [
            VENV_BIN / "moto_server",
            "-H",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        self._proc = spawn_logged(argv, self.log_path, self.workdir, env=clean_env(AWS_TEST_ENV))

    def wait_ready(self, timeout: float) -> None:
        try:
            wait_until(self._answers, timeout, f"moto_server on port {self.port}", 0.1)
        except (ServerError, TimeoutError) as e:
            self.stop()
            raise ServerError(f"{e}; log:\n{self.log_tail()}") from None

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
