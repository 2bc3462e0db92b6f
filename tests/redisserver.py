"""A throwaway redis-server on loopback."""

from __future__ import annotations

import os
import shutil
from typing import Any

from tests.harness import (
    ProcessServer,
    ServerError,
    spawn_logged,
    wait_until,
)

# -- Redis -----------------------------------------------------------------


class RedisServer(ProcessServer):
    """redis-server in the foreground with no persistence of its own."""

    what, prefix, log_name = "redis", "redis-", "redis.log"
    url_form = "redis://127.0.0.1:{port}/0"

    def client(self, **kwargs: Any) -> Any:
        import redis

        return redis.Redis.from_url(self.url, **kwargs)

    def _spawn(self) -> None:
        settings = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "dir": os.fspath(self.workdir),
            "save": "",
            "appendonly": "no",
            "daemonize": "no",
            "logfile": os.fspath(self.log_path),
        }
        argv = [shutil.which("redis-server") or "redis-server"]
        for name, value in settings.items():
            argv += [f"--{name}", value]
        self._proc = spawn_logged(argv, self.log_path, self.workdir)

    def wait_ready(self, timeout: float) -> None:
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
