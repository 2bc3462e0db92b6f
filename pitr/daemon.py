"""pitr daemon: all continuous work of a configuration in one process.

- for each postgres source, a WAL look-ahead pusher, and a local socket on
  which `pitr wal-push` asks for a segment and gets its answer as soon as
  the segment is durable;
- for each redis source, its stream tailer;
- scheduled base backups and snapshots (`backup_every`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socketserver
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pitr.config import ConfigError, SourceConfig
from pitr.context import AppContext
from pitr.daemon_client import ask, config_identity, config_socket_path, socket_path

Echo = Callable[[str], None]
SCHEDULE_INTERVAL = 30.0


class Daemon:
    def __init__(self, app: AppContext, echo: Echo) -> None:
        self.app = app
        self.echo = echo
        self.stop_event = threading.Event()
        self.pushers: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []
        self.socket = socket_path(app.config.repository.url)
        # wal-push finds us by the config file too, without parsing it.
        path = app.config.path
        self.identity = config_identity(path, os.environ) if path else None
        self.config_link = config_socket_path(self.identity) if self.identity else None

    def log(self, text: str) -> None:
        self.echo(f"{datetime.now(UTC).isoformat(timespec='seconds')} {text}")

    def run(self) -> None:
        from archiver.postgres.walmarks import mark_tag
        from archiver.postgres.walwatch import WalPusher

        repo = self.app.repo()
        sources = list(self.app.config.sources.values())
        if not sources:
            raise ConfigError("the configuration has no sources: nothing for the daemon to do")
        server = self._listen()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        try:
            for src in sources:
                if src.kind == "postgres":
                    tag = mark_tag(self.app.config.repository.url, src.name)
                    pusher = WalPusher(repo, src.name, src.pgdata, tag)
                    pusher.start()
                    self.pushers[src.name] = pusher
                    self.log(f"{src.name}: pushing WAL ahead from {src.pgdata}/pg_wal")
                else:
                    self._spawn(f"tail-{src.name}", self._tail, src)
            if any(s.backup_every for s in sources):
                self._spawn("scheduler", self._schedule, sources)
            self._spawn("socket", server.serve_forever)
            self._link_config_name()
            self.log(f"listening on {self.socket}")
            while not self.stop_event.wait(1.0):
                pass
        finally:
            self.log("stopping")
            server.shutdown()
            server.server_close()
            for name in filter(None, (self.config_link, self.socket)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
            for pusher in self.pushers.values():
                pusher.stop()
            for thread in self.threads:
                thread.join(60)
            self.log("stopped")

    def _spawn(self, name: str, target: Callable[..., Any], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"pitr-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def _link_config_name(self) -> None:
        if self.config_link is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.config_link)  # left by a daemon that died
        os.symlink(self.socket, self.config_link)

    def _listen(self) -> socketserver.ThreadingUnixStreamServer:
        if os.path.exists(self.socket):
            if ask(self.socket, {"op": "ping"}, timeout=5) is not None:
                raise ConfigError(f"a pitr daemon already serves this repository ({self.socket})")
            os.unlink(self.socket)  # left by a daemon that died
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    request = json.loads(self.rfile.readline())
                    answer = daemon.answer(request)
                except Exception as e:  # a bad request must not stop the daemon
                    answer = {"ok": False, "exit_code": 2, "error": f"bad request: {e}"}
                self.wfile.write(json.dumps(answer).encode() + b"\n")

        old = os.umask(0o077)
        try:
            server = socketserver.ThreadingUnixStreamServer(self.socket, Handler)
        finally:
            os.umask(old)
        server.daemon_threads = True
        return server

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        from pitr.exitcodes import exit_code_for

        if request.get("op") == "ping":
            return {"ok": True}
        if request.get("op") != "push":
            return {"ok": False, "exit_code": 2, "error": f"unknown op {request.get('op')!r}"}
        if "config" in request:
            if self.identity is None or request["config"] != self.identity:
                return {"ok": False, "retry_by_url": True}
        elif request.get("repository") != self.app.config.repository.url:
            return {
                "ok": False,
                "exit_code": 2,
                "error": f"this daemon serves {self.app.config.repository.url}, "
                f"not {request.get('repository')}",
            }
        source = request.get("source")
        if source is None:  # `wal-push %p` without --source: the config's only one
            if len(self.pushers) != 1:
                return {"ok": False, "retry_by_url": True}  # the CLI explains
            source = next(iter(self.pushers))
        pusher = self.pushers.get(str(source))
        if pusher is None:
            return {
                "ok": False,
                "exit_code": 2,
                "error": f"the daemon archives no postgres source {request.get('source')!r}",
            }
        try:
            pusher.archive(str(request["path"]))
        except Exception as e:
            return {"ok": False, "exit_code": exit_code_for(e) or 5, "error": str(e)}
        return {"ok": True}

    def _tail(self, src: SourceConfig) -> None:
        from archiver.redis.tailer import StreamTailer

        if not src.streams:
            self.log(f"{src.name}: no streams patterns, nothing to tail")
            return
        self.log(f"{src.name}: tailing streams {', '.join(src.streams)}")
        StreamTailer(
            self.app.repo(),
            src.name,
            src.url,
            src.streams,
            log=lambda line: self.log(f"{src.name}: {line}"),
        ).run(self.stop_event)

    def _schedule(self, sources: list[SourceConfig]) -> None:
        while not self.stop_event.is_set():
            for src in sources:
                if src.backup_every and self._backup_due(src):
                    try:
                        self._backup(src)
                    except Exception as e:  # logged; tried again next round
                        self.log(f"{src.name}: scheduled backup failed: {e}")
            self.stop_event.wait(SCHEDULE_INTERVAL)

    def _backup_due(self, src: SourceConfig) -> bool:
        from sqlalchemy import func, select

        from catalog.db.models import Backup, Source

        with self.app.repo().catalog.session() as s:
            last = s.scalar(
                select(func.max(Backup.finished_at))
                .join(Source, Source.id == Backup.source_id)
                .where(Source.name == src.name)
            )
        if last is None:
            return True
        if last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        assert src.backup_every is not None
        return datetime.now(UTC) - last >= src.backup_every

    def _backup(self, src: SourceConfig) -> None:
        started = time.monotonic()
        if src.kind == "postgres":
            from archiver.postgres.backup import take_base_backup

            result = take_base_backup(self.app.repo(), src.name, src.dsn, src.pgdata)
            self.log(f"{src.name}: backup {result.id} done in {time.monotonic() - started:.1f}s")
        else:
            from pitr import redis_ops

            redis_ops.backup(self.app, src)
