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
from pitr.daemon_client import ask, socket_path

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

    def log(self, text: str) -> None:
        self.echo(f"{datetime.now(UTC).isoformat(timespec='seconds')} {text}")

    def run(self) -> None:
        from archiver.walwatch import WalPusher

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
                    pusher = WalPusher(repo, src.name, src.pgdata)
                    pusher.start()
                    self.pushers[src.name] = pusher
                    self.log(f"{src.name}: pushing WAL ahead from {src.pgdata}/pg_wal")
                else:
                    self._spawn(f"tail-{src.name}", self._tail, src)
            if any(s.backup_every for s in sources):
                self._spawn("scheduler", self._schedule, sources)
            self._spawn("socket", server.serve_forever)
            self.log(f"listening on {self.socket}")
            while not self.stop_event.wait(1.0):
                pass
        finally:
            self.log("stopping")
            server.shutdown()
            server.server_close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket)
            for pusher in self.pushers.values():
                pusher.stop()
            for thread in self.threads:
                thread.join(60)
            self.log("stopped")

    def _spawn(self, name: str, target: Callable[..., Any], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"pitr-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

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
        if request.get("repository") != self.app.config.repository.url:
            return {
                "ok": False,
                "exit_code": 2,
                "error": f"this daemon serves {self.app.config.repository.url}, "
                f"not {request.get('repository')}",
            }
        pusher = self.pushers.get(str(request.get("source")))
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
        from archiver.redis_tailer import StreamTailer

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
            from archiver.pgbackup import take_base_backup

            result = take_base_backup(self.app.repo(), src.name, src.dsn, src.pgdata)
            self.log(f"{src.name}: backup {result.id} done in {time.monotonic() - started:.1f}s")
        else:
            from pitr import redis_ops

            redis_ops.backup(self.app, src)
