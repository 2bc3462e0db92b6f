"""The archivers the SQLite benchmark (bench/sqlite_capture.py) compares:
none, `pitr tail` and `litestream replicate`, each started on a database,
asked when a commit is archived, and asked to restore."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import BenchError
from bench.sqlite_writer import (
    DB_NAME,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_MOVED_TO,
    LITESTREAM,
    SOURCE,
    Arrivals,
    Log,
    Written,
    by_count,
    by_seen,
    latency_figures,
    mark,
    percentile,
    rows,
    vm_hwm_kib,
)

# -- the tools -----------------------------------------------------------------


class Tool:
    name = ""

    def __init__(self, base: Path, db: Path, log: Log) -> None:
        self.base = base
        self.db = db
        self.log = log
        self.proc: Any = None

    def start(self) -> None:
        """Start archiving db and return once a warm-up commit is archived."""

    def arrivals_dir(self) -> Path | None:
        return None

    def finish(self, written: Written, arrivals: Arrivals | None) -> dict[str, Any]:
        return {}

    def restore(self, out: Path, target: str) -> None:
        raise NotImplementedError(f"{self.name} does not restore")

    def peak_rss_kib(self) -> int | None:
        return vm_hwm_kib(self.proc.proc.pid) if self.proc is not None else None

    def stop(self) -> None:
        if self.proc is not None:
            code = self.proc.stop(timeout=120)
            if code not in (0, -15, 130):
                self.log(f"{self.name} exited {code}: {self.proc.output()[-1500:]}")
            self.proc = None


class NoArchiver(Tool):
    name = "none"


class Pitr(Tool):
    name = "pitr"

    def __init__(self, base: Path, db: Path, log: Log) -> None:
        super().__init__(base, db, log)
        self.repo = base / "repo"
        self.config = base / "pitr.toml"
        self.config.write_text(
            f'[repository]\nurl = "file://{self.repo}"\n'
            f'catalog = "sqlite:///{base / "catalog.db"}"\n'
            f'\n[sources.{SOURCE}]\nkind = "sqlite"\npath = "{db}"\n'
        )
        self.c0 = 0

    def argv(self, *args: str) -> list[str]:
        from tests.servers import PITR_BIN

        return [os.fspath(PITR_BIN), "--config", os.fspath(self.config), *args]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.base / 'catalog.db'}?mode=ro", uri=True, timeout=30)
        try:
            return list(conn.execute(sql))
        finally:
            conn.close()

    def archived(self) -> int:
        return int(self.query("SELECT coalesce(sum(commits), 0) FROM sqlitedb_batches")[0][0])

    def start(self) -> None:
        from bench.common import Background, run, wait_for

        if not self.repo.exists():
            run(self.argv("init"), "pitr init")
        self.proc = Background(self.argv("tail", "--source", SOURCE), self.base / "tail.log")
        before = self.archived() if (self.base / "catalog.db").exists() else 0
        wait_for(
            lambda: self._alive() and (self.base / "repo" / "records" / SOURCE / "bases").exists(),
            600,
            "pitr tail's base copy",
            interval=0.1,
        )
        mark(self.db)
        wait_for(lambda: self._alive() and self.archived() > before, 60, "pitr: warm-up commit")
        self.c0 = self.archived()

    def _alive(self) -> bool:

        if not self.proc.alive():
            raise BenchError(f"pitr tail exited:\n{self.proc.output()[-2000:]}")
        return True

    def generation_dir(self) -> Path:
        gens = sorted((self.repo / "records" / SOURCE / "sqlite" / DB_NAME).iterdir())
        return gens[-1]

    def arrivals_dir(self) -> Path | None:
        return self.generation_dir()

    def catch_up(self, total: int, timeout: float = 600, stall: float = 5) -> int:
        """Wait until pitr has archived `total` commits, or has stopped
        archiving for `stall` s short of it; the commits archived."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            self._alive()
            now = self.archived()
            if now >= total:
                return now
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > stall:
                return now
            time.sleep(0.1)
        return self.archived()

    def finish(self, written: Written, arrivals: Arrivals | None) -> dict[str, Any]:
        archived = self.catch_up(self.c0 + written.commits)
        batches = self.query(
            "SELECT generation, gfirst, commits, last_seen, archived_at FROM sqlitedb_batches "
            "ORDER BY generation, gfirst"
        )
        gaps = int(self.query("SELECT count(*) FROM sqlitedb_gaps")[0][0])
        gen = self.generation_dir().name
        lost = self.c0 + written.commits - archived
        skip = self.c0
        by_record: list[tuple[int, int, int]] = []  # commits, seen ns, record ns
        by_row: list[tuple[int, int, int]] = []  # commits, seen ns, archived_at ns
        no_record = 0
        for generation, gfirst, commits, last_seen, archived_at in batches:
            take = commits
            if skip:
                drop = min(skip, commits)
                skip -= drop
                take -= drop
            if take <= 0:
                continue
            seen = _ns(last_seen)
            at = arrivals.first(f"{gfirst:012d}", IN_CREATE, IN_MOVED_TO) if arrivals else None
            if generation != gen or at is None:
                no_record += 1
                at = _ns(archived_at)
            by_record.append((take, seen, at))
            by_row.append((take, seen, _ns(archived_at)))
        figures: dict[str, Any] = {"archived": archived - self.c0, "lost": lost, "gaps": gaps}
        figures["batches"] = len(by_record)
        figures["batches_without_record_event"] = no_record
        if lost == 0:
            figures["mapping"] = "cumulative commits"
            lat, missing = by_count(written.stamps, [(c, a) for c, _, a in by_record])
            lat2, _ = by_count(written.stamps, [(c, a) for c, _, a in by_row])
        else:
            figures["mapping"] = "last_seen (commits were lost)"
            lat, missing = by_seen(written.stamps, [(s, a) for _, s, a in by_record])
            lat2, _ = by_seen(written.stamps, [(s, a) for _, s, a in by_row])
        figures.update(latency_figures(lat, missing))
        if lost == 0:  # commit -> pitr read the WAL index that holds it
            wake, _ = by_count(written.stamps, [(c, s) for c, s, _ in by_record])
            figures["seen_p50_ms"] = round(percentile(wake, 50), 1)
            figures["seen_p99_ms"] = round(percentile(wake, 99), 1)
        row = latency_figures(lat2, 0)
        figures["archived_at_p50_ms"] = row["p50_ms"]
        figures["archived_at_p99_ms"] = row["p99_ms"]
        figures["peak_rss_kib"] = self.peak_rss_kib()
        return figures

    def newest_seen(self) -> str:
        top = self.query("SELECT max(last_seen) FROM sqlitedb_batches")[0][0]
        return iso_utc(_ns(top))

    def restore(self, out: Path, target: str) -> None:
        from bench.common import run

        run(
            self.argv("restore", "--source", SOURCE, "--to", target, "--into", str(out)),
            "pitr restore",
            timeout=3600,
        )


class Litestream(Tool):
    name = "litestream"

    def __init__(self, base: Path, db: Path, log: Log) -> None:
        super().__init__(base, db, log)
        self.replica = base / "replica"
        self.config = base / "litestream.yml"
        self.config.write_text(
            f"dbs:\n  - path: {db}\n    replica:\n      type: file\n      path: {self.replica}\n"
        )
        self.l0 = self.replica / "ltx" / "0"

    def l0_files(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.l0) if n.endswith(".ltx"))
        except FileNotFoundError:
            return []

    def start(self) -> None:
        from bench.common import Background, wait_for

        self.proc = Background(
            [LITESTREAM, "replicate", "-config", self.config], self.base / "litestream.log"
        )
        wait_for(
            lambda: self._alive() and "snapshot complete" in self.proc.output(),
            600,
            "litestream's snapshot",
            interval=0.1,
        )
        before = len(self.l0_files())
        mark(self.db)
        wait_for(lambda: self._alive() and len(self.l0_files()) > before, 60, "litestream: warm-up")
        self.first_new = self.l0_files()[-1]

    def _alive(self) -> bool:

        if not self.proc.alive():
            raise BenchError(f"litestream exited:\n{self.proc.output()[-2000:]}")
        return True

    def arrivals_dir(self) -> Path | None:
        return self.l0

    def finish(self, written: Written, arrivals: Arrivals | None) -> dict[str, Any]:
        time.sleep(3)  # three sync intervals
        self.stop()
        assert arrivals is not None
        probe = self.base / "probe.db"
        groups: list[tuple[int, int]] = []
        done = 0
        no_event = 0
        for name in self.l0_files():
            if name <= self.first_new:
                continue
            at = arrivals.first(name, IN_MOVED_TO, IN_CLOSE_WRITE)
            if at is None:
                no_event += 1
                continue
            txid = name.split("-")[1].split(".")[0]
            remove_db(probe)
            argv = [LITESTREAM, "restore", "-config", self.config, "-txid", txid]
            subprocess.run(
                [*map(str, argv), "-o", str(probe), str(self.db)],
                capture_output=True,
                check=True,
                timeout=600,
            )
            _count, top = rows(probe)
            if top > done:
                groups.append((top - done, at))
                done = top
        remove_db(probe)
        lat, missing = by_count(written.stamps, groups)
        figures: dict[str, Any] = {"archived": done, "lost": written.commits - done}
        figures["l0_files"] = len(groups)
        figures["l0_files_without_event"] = no_event
        figures["mapping"] = "restore -txid of each L0 file, max(id)"
        figures.update(latency_figures(lat, missing))
        return figures

    def restore(self, out: Path, target: str) -> None:
        from bench.common import run

        argv: list[str | os.PathLike[str]] = [LITESTREAM, "restore", "-config", self.config]
        argv += ["-o", out]
        argv += ["-timestamp", target, "-integrity-check", "full", self.db]
        run(argv, "litestream restore", timeout=3600)


def _ns(text: str) -> int:
    """A catalog timestamp (naive UTC text) in ns."""
    t = datetime.fromisoformat(str(text))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1e6) * 1000


def iso_utc(ns: int) -> str:
    t = datetime.fromtimestamp(ns / 1e9, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


TOOLS: dict[str, type[Tool]] = {"none": NoArchiver, "pitr": Pitr, "litestream": Litestream}
