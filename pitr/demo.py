"""The whole story on throwaway servers: archive, back up, damage, restore
PostgreSQL, Redis and a SQLite database to the instant before the damage,
and verify."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pitr.throwaway import ThrowawayPostgres, ThrowawayRedis

STREAM = "demo:stream:orders"


class DemoFailed(Exception):
    exit_code = 4  # the restored data is not what it should be


class Story:
    def __init__(self, workdir: Path, echo: Any) -> None:
        self.workdir = workdir
        self.echo = echo
        self.t0 = time.monotonic()
        self.pitr_exe = os.path.join(os.path.dirname(sys.executable), "pitr")
        self.config = workdir / "pitr.toml"
        self.pg = ThrowawayPostgres(workdir)
        self.redis = ThrowawayRedis(workdir)
        self.app_db = workdir / "app" / "events.db"
        self.tailers: list[subprocess.Popen[bytes]] = []
        self.lite: sqlite3.Connection  # the SQLite application, opened in run()
        self.restored: ThrowawayPostgres | None = None

    def step(self, text: str) -> None:
        self.echo(f"[{time.monotonic() - self.t0:6.1f}s] {text}")

    def pitr(self, *args: str) -> str:
        proc = subprocess.run(
            [self.pitr_exe, "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise DemoFailed(f"pitr {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def run(self) -> None:
        archive = f"{self.pitr_exe} --config {self.config} wal-push --source db %p"
        self.pg.init(archive)
        self.pg.start()
        self.redis.start()
        self.step(f"started PostgreSQL on port {self.pg.port} and Redis on port {self.redis.port}")
        self.config.write_text(
            f'[repository]\nurl = "{self.workdir / "repo"}"\n\n'
            f'[sources.db]\nkind = "postgres"\ndsn = "{self.pg.dsn}"\n'
            f'pgdata = "{self.pg.pgdata}"\n\n'
            f'[sources.cache]\nkind = "redis"\nurl = "{self.redis.url}"\n'
            f'streams = ["demo:stream:*"]\nkeys = ["demo:*"]\n\n'
            f'[sources.events]\nkind = "sqlite"\npath = "{self.app_db}"\n'
        )
        self.pitr("init")
        self.app_db.parent.mkdir()
        lite = sqlite3.connect(self.app_db, isolation_level=None)
        lite.execute("PRAGMA journal_mode=WAL")
        lite.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, at REAL)")
        self.tailers = [
            subprocess.Popen(
                [self.pitr_exe, "--config", str(self.config), "tail", "--source", source],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for source in ("cache", "events")
        ]
        self.wait_for_base()
        self.step(
            "repository ready; archive_command is pitr wal-push; "
            "every Redis write (replication) and SQLite commit captured as it happens"
        )

        pg, r = self.pg.connect(), self.redis_client()
        pg.execute("CREATE TABLE orders (id int PRIMARY KEY, item text, at timestamptz)")
        self.lite = lite
        self.workload(pg, r, 1, 200)
        self.step(
            "workload: 200 orders, 200 stream events, sessions with TTLs, counters, "
            "200 SQLite commits"
        )
        for source in ("db", "cache", "events"):
            self.step(self.pitr("backup", "--source", source).strip())
        self.workload(pg, r, 201, 400)
        self.step(
            self.pitr("backup", "--source", "cache").strip() + " (unchanged keys cost nothing)"
        )
        # Until the mark, only rows and stream events (the counts the test knows).
        self.workload(pg, r, 401, 450, keys=False)
        time.sleep(1.2)
        mark = datetime.now(UTC)
        expected = self.snapshot(pg, r)
        time.sleep(1.2)
        self.step(
            f"marked {mark.isoformat(timespec='milliseconds')}: {expected['orders']} orders, "
            f"{expected['events']} events, {expected['keys']} keys"
        )

        self.workload(pg, r, 451, 500, keys=False)
        pg.execute("DROP TABLE orders")
        self.lite.execute("DELETE FROM events")
        r.delete(*r.keys("demo:session:*"))
        r.set("demo:config", "broken")
        self.step(
            "damage: 50 more orders and events, DROP TABLE orders, sessions deleted, "
            "config broken, every SQLite event deleted"
        )
        self.flush_archives(pg)
        self.one_table_back(pg, mark, expected["orders"])
        self.lite.close()
        pg.close()
        self.pg.stop()
        self.step("archives flushed: WAL switched and archived, tailers stopped")

        restored_dir = self.workdir / "pg-restored"
        out = self.pitr(
            "restore",
            "--to",
            mark.isoformat(),
            "--pgdata",
            str(restored_dir),
            "--redis-url",
            self.redis.url,
            "--force",
        )
        for line in out.strip().splitlines():
            self.step(line)
        self.restored = ThrowawayPostgres(self.workdir, "pg-restored")
        self.restored.configure()
        self.restored.start()
        self.restored.wait_promoted()
        self.step("PostgreSQL replayed WAL to the mark and promoted")
        with self.restored.connect() as conn:
            got = self.snapshot(conn, r)
        self.verify(expected, got)
        self.step(
            f"verified: {got['orders']} orders, {got['events']} events, {got['keys']} keys, "
            f"{got['sqlite_events']} SQLite rows as at the mark; the damage is gone"
        )

    def one_table_back(self, pg: Any, mark: datetime, orders: int) -> None:
        """The dropped table's rows as at the mark, beside the live tables of
        the running server (a scratch cluster of pitr's own does the replay)."""
        out = self.pitr(
            "restore",
            "--source",
            "db",
            "--to",
            mark.isoformat(),
            "--table",
            "orders",
            "--mode",
            "side-table",
            "--scratch-dir",
            str(self.workdir),
        )
        self.step(out.strip().splitlines()[-1])
        row = pg.execute("SELECT relname FROM pg_class WHERE relname LIKE 'orders_restored_%'")
        side = row.fetchone()[0]
        got = pg.execute(f'SELECT count(*) FROM "{side}"').fetchone()[0]
        if got != orders:
            raise DemoFailed(f"partial restore: {side} holds {got} orders, not {orders}")
        self.step(f"one table back while PostgreSQL ran: {side} holds the {got} orders of the mark")

    def wait_for_base(self) -> None:
        """Until the Redis capture holds its first base (the full sync):
        only writes after it can be restored."""
        import json

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for tailer in self.tailers:
                if tailer.poll() is not None:
                    said = tailer.stderr.read().decode() if tailer.stderr else ""
                    raise DemoFailed(f"pitr tail stopped: {said.strip()}")
            info = json.loads(self.pitr("info", "--source", "cache", "--output", "json"))
            if any(s.get("archive", {}).get("repl_epochs") for s in info["sources"]):
                return
            time.sleep(0.2)
        raise DemoFailed("the Redis replication capture stored no base within 60s")

    def redis_client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis.url)

    def workload(self, pg: Any, r: Any, first: int, last: int, keys: bool = True) -> None:
        for i in range(first, last + 1):
            pg.execute("INSERT INTO orders VALUES (%s, %s, now())", (i, f"item-{i % 17}"))
            self.lite.execute("INSERT INTO events VALUES (?, ?, ?)", (i, "order", time.time()))
            r.xadd(STREAM, {"order": i, "item": f"item-{i % 17}"})
            if keys and i % 10 == 0:
                r.set(f"demo:session:{i}", f"user-{i}", ex=3600)
            if keys:
                r.hincrby("demo:counters", f"item-{i % 17}", 1)
        if keys:
            r.set("demo:config", "good")

    def snapshot(self, pg: Any, r: Any) -> dict[str, Any]:
        row = pg.execute("SELECT count(*), coalesce(max(id), 0) FROM orders").fetchone()
        lite = sqlite3.connect(self.app_db)
        try:
            commits = lite.execute("SELECT count(*), coalesce(max(id), 0) FROM events").fetchone()
        finally:
            lite.close()
        return {
            "sqlite_events": commits[0],
            "sqlite_max_event": commits[1],
            "orders": row[0],
            "max_order": row[1],
            "events": r.xlen(STREAM),
            "last_event": r.xrevrange(STREAM, count=1)[0][0] if r.xlen(STREAM) else None,
            "keys": len(r.keys("demo:*")),
            "config": r.get("demo:config"),
            "counters": r.hgetall("demo:counters"),
            "sessions_with_ttl": sum(1 for k in r.keys("demo:session:*") if 0 < r.ttl(k) <= 3600),
        }

    def flush_archives(self, pg: Any) -> None:
        name = pg.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            last = pg.execute("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
            if last.fetchone()[0] >= name:
                break
            time.sleep(0.1)
        else:
            raise DemoFailed(f"segment {name} was not archived in time")
        time.sleep(1.5)  # one tailer batch interval
        for tailer in self.tailers:
            tailer.send_signal(signal.SIGTERM)
            tailer.wait(30)

    @staticmethod
    def verify(expected: dict[str, Any], got: dict[str, Any]) -> None:
        wrong = [
            f"{k}: expected {expected[k]!r}, got {got[k]!r}"
            for k in expected
            if expected[k] != got[k]
        ]
        if wrong:
            raise DemoFailed("restored data differs from the mark: " + "; ".join(wrong))

    def cleanup(self) -> None:
        for tailer in self.tailers:
            if tailer.poll() is None:
                tailer.kill()
        for server in (self.restored, self.pg):
            if server is not None:
                server.stop("immediate")
        self.redis.stop()


def run_demo(workdir: str | None, keep: bool, echo: Any) -> None:
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="pitr-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    story = Story(base.absolute(), echo)
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        story.run()
        echo(f"done in {time.monotonic() - story.t0:.1f}s")
    finally:
        signal.signal(signal.SIGTERM, previous)
        story.cleanup()
        if keep:
            echo(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
