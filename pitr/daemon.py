"""pitr daemon: all continuous work of a configuration in one process.

- for each source, its kind's continuous capture (a WAL look-ahead pusher
  for PostgreSQL, the stream tailer for Redis);
- a local socket on which `pitr wal-push` asks for a segment and gets its
  answer as soon as the segment is durable (served by the captures that
  archive WAL files);
- scheduled base backups and snapshots (`backup_every`);
- the status page and /metrics with the daemon's counters, when [serve]
  listen is configured (pitr.serve).
"""

from __future__ import annotations

import collections
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
from pitr.kinds.base import Capture

Echo = Callable[[str], None]
SCHEDULE_INTERVAL = 30.0
CATCH_UP_INTERVAL = 15.0  # seconds between the daemon's catalog catch-ups
# name (pitr_daemon_<name>_total), help
DAEMON_COUNTERS = (
    ("segments_pushed", "WAL files the daemon archived (look-ahead and wal-push)."),
    ("bytes_stored", "Stored bytes of the WAL the daemon archived, content new to the store."),
    ("wal_push_requests", "wal-push requests the daemon answered as archived."),
    ("backups", "Scheduled backups and snapshots the daemon took."),
    ("failures", "Failed WAL pushes and failed scheduled backups."),
)


class Daemon:
    def __init__(self, app: AppContext, echo: Echo) -> None:
        self.app = app
        self.echo = echo
        self.stop_event = threading.Event()
        self.captures: list[Capture] = []
        self.pushers: dict[str, Any] = {}  # source -> the capture that archives its WAL
        self.threads: list[threading.Thread] = []
        # (counter, source) -> value, for /metrics when the daemon serves it
        self.tally: collections.Counter[tuple[str, str]] = collections.Counter()
        self.socket = socket_path(app.config.repository.url)
        # wal-push finds us by the config file too, without parsing it.
        path = app.config.path
        self.identity = config_identity(path, os.environ) if path else None
        self.config_link = config_socket_path(self.identity) if self.identity else None

    def log(self, text: str) -> None:
        self.echo(f"{datetime.now(UTC).isoformat(timespec='seconds')} {text}")

    def run(self) -> None:
        self.app.repo()
        sources = list(self.app.config.sources.values())
        if not sources:
            raise ConfigError("the configuration has no sources: nothing for the daemon to do")
        server = self._listen()
        serving, page = False, None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        try:
            page = self._serve_page()  # first: a bad [serve] listen stops the daemon at once
            self._start_captures(sources)
            if any(s.backup_every for s in sources):
                self._spawn("scheduler", self._schedule, sources)
            self._spawn("socket", server.serve_forever)
            serving = True
            self._link_config_name()
            self.log(f"listening on {self.socket}")
            caught_up = time.monotonic()
            while not self.stop_event.wait(1.0):
                if time.monotonic() - caught_up >= CATCH_UP_INTERVAL:
                    self._catch_up()
                    caught_up = time.monotonic()
        finally:
            self.log("stopping")
            if page is not None:
                page.stop()
            if serving:  # shutdown() waits for serve_forever(), which may never have run
                server.shutdown()
            server.server_close()
            for name in filter(None, (self.config_link, self.socket)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
            for capture in self.captures:
                capture.stop()
            for thread in self.threads:
                thread.join(60)
            self.log("stopped")

    def _start_captures(self, sources: list[SourceConfig]) -> None:
        from pitr import kinds

        for src in sources:
            capture = kinds.get(src.kind).capture(self.app, src, self._source_log(src))
            if capture is None:
                continue
            capture.start()
            self.captures.append(capture)
            if callable(getattr(capture, "archive", None)):
                self.pushers[src.name] = capture

    def _serve_page(self) -> Any:
        """The status page in a thread, when [serve] listen is configured."""
        settings = self.app.config.serve
        if settings.listen is None:
            return None
        from pitr.serve.app import build
        from pitr.serve.server import BackgroundServer, parse_listen

        where = parse_listen(settings.listen, settings.token)
        page = BackgroundServer(build(self.app, settings.token, self.counters), where)
        page.start()
        self.log(f"serving the status page on {where.url}")
        return page

    def counters(self) -> list[tuple[str, str, dict[str, float]]]:
        """The daemon's counters by source, for /metrics."""
        tallies: dict[str, dict[str, float]] = collections.defaultdict(dict)
        for (name, source), value in self.tally.items():
            tallies[name][source] = value
        for source, pusher in self.pushers.items():
            tallies["segments_pushed"][source] = pusher.segments_pushed
            tallies["bytes_stored"][source] = pusher.bytes_stored
            tallies["failures"][source] = tallies["failures"].get(source, 0) + pusher.errors
        return [
            (f"pitr_daemon_{name}", help_text, dict(tallies.get(name, {})))
            for name, help_text in DAEMON_COUNTERS
        ]

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
            self.tally["failures", str(source)] += 1
            return {"ok": False, "exit_code": exit_code_for(e) or 5, "error": str(e)}
        self.tally["wal_push_requests", str(source)] += 1
        return {"ok": True}

    def _catch_up(self) -> None:
        """Apply what other writers recorded meanwhile (a plain wal-push, a
        host with its own catalog), so that the page and metrics show it."""
        from catalog.catchup import catch_up

        try:
            catch_up(self.app.repo())
        except Exception as e:  # logged; tried again next time
            self.log(f"catalog catch-up failed: {e}")

    def _source_log(self, src: SourceConfig) -> Callable[[str], None]:
        return lambda line: self.log(f"{src.name}: {line}")

    def _schedule(self, sources: list[SourceConfig]) -> None:
        while not self.stop_event.is_set():
            for src in sources:
                if src.backup_every and self._backup_due(src):
                    try:
                        self._backup(src)
                        self.tally["backups", src.name] += 1
                    except Exception as e:  # logged; tried again next round
                        self.tally["failures", src.name] += 1
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
        from pitr import kinds

        kinds.get(src.kind).backup(self.app, src, self.log, progress=False)
