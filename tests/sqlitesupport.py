"""Helpers for the SQLite tests: a configured source, writer processes
(tests/sqlite_writer.py), and what a restore should hold at an instant."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from catalog.queries import get_source
from catalog.repository import Repository
from pitr.config import load_config
from recovery.sqlite.facts import load_sqlite
from recovery.sqlite.plan import windows
from tests.redissupport import TailProcess
from tests.servers import clean_env, run_pitr, wait_until

WRITER = Path(__file__).with_name("sqlite_writer.py")
# How late the archiver may see a commit: instants this close to a commit
# are not used as targets (the precision of an instant, docs/sqlite.md).
MARGIN = 0.15


@dataclass(frozen=True)
class Commit:
    name: str
    seq: int
    before: float
    after: float
    waited: float


@dataclass
class SqliteSource:
    dir: Path
    config: Path
    db: Path
    name: str = "app"

    def pitr(self, *args: str, check: bool | int = True) -> subprocess.CompletedProcess[str]:
        return run_pitr(list(args), config=self.config, check=check)

    @contextmanager
    def repo(self) -> Iterator[Repository]:
        rc = load_config(str(self.config)).repository
        repo = Repository.open(rc.url, rc.catalog)
        try:
            yield repo
        finally:
            repo.close()

    def log(self, name: str = "w") -> Path:
        return self.dir / f"{name}.log"

    def writer(self, count: int, *args: str, name: str = "w", db: Path | None = None) -> Writer:
        return Writer(db or self.db, self.log(name), count, ("--name", name, *args))

    def write(self, count: int, *args: str, name: str = "w", db: Path | None = None) -> None:
        self.writer(count, *args, name=name, db=db).wait()

    def restore(
        self, at: float, into: Path | None, *more: str, check: bool | int = True
    ) -> subprocess.CompletedProcess[str]:
        """pitr restore --to the instant `at` (--into `into` unless None)."""
        target = datetime.fromtimestamp(at, UTC).isoformat()
        args = ["restore", "--source", self.name, "--to", target, *more]
        if into is not None:
            args += ["--into", str(into)]
        return self.pitr(*args, check=check)

    def tail(self) -> TailProcess:
        """pitr tail, once it has taken its base copies."""
        proc = TailProcess(self.config, "--source", self.name)
        started = time.time()
        wait_until(lambda: self.based_after(started) or not proc.alive(), 60, "a base copy", 0.1)
        assert proc.alive(), proc.stop()
        return proc

    def based_after(self, t: float) -> bool:
        """A capture has said it is caught up since the instant t."""
        with self.repo() as repo, repo.catalog.session() as s:
            src = get_source(s, self.name)
            dbs = {} if src is None else load_sqlite(s, src.id, self.name)
        beats = [b for f in dbs.values() for b in f.caught_up.values()]
        return bool(beats) and max(beats).timestamp() >= t

    def wait_archived(self, at: float, db: str | None = None, timeout: float = 60) -> None:
        """Until every commit up to `at` is archived."""
        want = datetime.fromtimestamp(at, UTC)

        def reached() -> bool:
            with self.repo() as repo, repo.catalog.session() as s:
                src = get_source(s, self.name)
                dbs = {} if src is None else load_sqlite(s, src.id, self.name)
            facts = dbs.get(db or self.db.name)
            return facts is not None and any(reach >= want for _, reach in windows(facts))

        wait_until(reached, timeout, f"commits up to {want} archived", 0.1)


class Writer:
    """tests/sqlite_writer.py as a child process."""

    def __init__(self, db: Path, log: Path, count: int, args: tuple[str, ...]) -> None:
        argv = [sys.executable, str(WRITER), str(db), str(log), "--count", str(count), *args]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
        )

    def wait(self, timeout: float = 300) -> None:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, f"writer failed: {err}"


def make_source(tmp_path: Path, paths: str | None = None, name: str = "app") -> SqliteSource:
    """A source over tmp_path/app.db (created, in WAL mode, by a writer
    process); paths: the config's paths value instead of one path."""
    db = tmp_path / "app.db"
    config = tmp_path / "pitr.toml"
    where = f"paths = {paths}" if paths else f'path = "{db}"'
    config.write_text(
        f'[repository]\nurl = "{tmp_path / "repo"}"\n'
        f'catalog = "sqlite:///{tmp_path / "catalog.db"}"\n\n'
        f'[sources.{name}]\nkind = "sqlite"\n{where}\n'
    )
    source = SqliteSource(tmp_path, config, db, name)
    source.pitr("init")
    if not paths:
        source.write(0)
    return source


def commits(*logs: Path) -> list[Commit]:
    out = []
    for log in logs:
        if log.exists():
            out += [Commit(**json.loads(line)) for line in log.read_text().splitlines()]
    return sorted(out, key=lambda c: c.before)


def rows(db: Path) -> set[tuple[str, int]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {(n, s) for n, s in conn.execute("SELECT name, seq FROM rows")}
    finally:
        conn.close()


def expected(history: list[Commit], at: float) -> set[tuple[str, int]]:
    """The rows committed by `at` (an instant no commit is near)."""
    return {(c.name, c.seq) for c in history if c.after <= at}


def quiet(history: list[Commit], at: float) -> bool:
    return all(not (c.before - MARGIN <= at <= c.after + MARGIN) for c in history)


def quiet_instants(history: list[Commit], n: int, seed: int) -> list[float]:
    """n instants between the first and the last commit that no commit is near."""
    rng = random.Random(seed)
    lo, hi = history[0].after, history[-1].after
    found: list[float] = []
    for _ in range(10_000):
        if len(found) == n:
            break
        at = rng.uniform(lo, hi)
        if quiet(history, at):
            found.append(at)
    assert len(found) == n, "the history has too few quiet instants"
    return sorted(found)


def midpoints(history: list[Commit], picks: list[int]) -> list[float]:
    """The instants halfway between commit i and the next, for i in picks."""
    out = []
    for i in picks:
        at = (history[i].after + history[i + 1].before) / 2
        assert quiet(history, at), f"commits {i} and {i + 1} are too close"
        out.append(at)
    return out
