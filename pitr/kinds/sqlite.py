"""The SQLite source kind: every commit of one or several databases captured
from their WAL as it happens, base copies (archiver/sqlite), and restore of
the databases to one instant (recovery/sqlite)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

import click

from pitr.configfile import ConfigError
from pitr.kinds.base import (
    MODES,
    ExportRequest,
    Log,
    PartialRequest,
    RestoreRequest,
    SourceConfig,
    SourceKind,
    ThreadCapture,
    patterns,
    required_text,
)

if TYPE_CHECKING:
    from catalog.marks import MarkRecord
    from pitr.context import AppContext
    from recovery.reporting import KindReports
    from recovery.sqlite.facts import DbFacts
    from recovery.sqlite.plan import DbPlan


@dataclass(frozen=True)
class SqliteConfig(SourceConfig):
    KIND: ClassVar[str] = "sqlite"
    KEYS: ClassVar[frozenset[str]] = SourceConfig.KEYS | {"path", "paths"}
    paths: tuple[str, ...] = ()  # files or glob patterns

    @property
    def several(self) -> bool:
        """Restores go into a directory (one file per database), not a file."""
        return len(self.paths) > 1 or any(_has_magic(p) for p in self.paths)


def _has_magic(pattern: str) -> bool:
    import glob

    return glob.has_magic(pattern)


class SqliteKind:
    name = "sqlite"
    config = SqliteConfig
    into_option = "into"
    tails = True
    delta_restores = False
    target_forms = frozenset({"time", "mark"})

    @property
    def reports(self) -> KindReports:
        from recovery.sqlite.report import SqliteReports

        return SqliteReports()

    def parse(self, name: str, raw: dict[str, Any], at: str) -> SqliteConfig:
        if ("path" in raw) == ("paths" in raw):
            raise ConfigError(f"{at}: a sqlite source needs path or paths (one of them)")
        if "path" in raw:
            return SqliteConfig(name, paths=(required_text(raw, "path", at, self.name),))
        found = patterns(raw["paths"], f"{at}: paths")
        if not found:
            raise ConfigError(f"{at}: paths is empty")
        return SqliteConfig(name, paths=found)

    def backup(self, app: AppContext, src: SqliteConfig, log: Log, progress: bool) -> None:
        from archiver.sqlite.basecopy import take_base_copy
        from archiver.sqlite.capture import resolve
        from archiver.sqlite.live import LiveDatabase
        from catalog.details import SqliteBaseDetails
        from pitr.timeparse import format_utc
        from pitr.units import human_bytes

        repo = app.repo()
        dbs = resolve(src.paths)
        opened = {name: LiveDatabase(path, need_wal=False) for name, path in dbs.items()}
        try:
            for name, live in opened.items():
                live.hold()
                taken, _ = take_base_copy(repo, src.name, name, live)
                live.release()
                r = taken.record
                pages = SqliteBaseDetails.from_json(r.details).pages
                log(
                    f"base copy {r.id} of {src.name}/{name}: {pages} pages, "
                    f"{human_bytes(r.size_bytes)}, {human_bytes(r.stored_bytes)} new in the "
                    f"store, as of {format_utc(r.started_at)}, {taken.seconds:.1f}s"
                )
        finally:
            for live in opened.values():
                live.close()

    def capture(self, app: AppContext, src: SqliteConfig, log: Log) -> ThreadCapture:
        from archiver.sqlite.capture import SqliteCapture

        capture = SqliteCapture(app.repo(), src.name, src.paths, log)
        log(f"capturing {', '.join(src.paths)}")
        return ThreadCapture(capture.run, f"pitr-sqlite-{src.name}")

    def tail(
        self,
        app: AppContext,
        src: SqliteConfig,
        stop: threading.Event,
        log: Log,
        options: dict[str, Any],
    ) -> str:
        from archiver.sqlite.capture import SqliteCapture

        capture = SqliteCapture(app.repo(), src.name, src.paths, log)
        log(f"tail {src.name}: capturing {', '.join(src.paths)}; stop with SIGINT or SIGTERM")
        stats = capture.run(stop)
        return (
            f"shipped {stats.commits} commits of {stats.databases} databases in "
            f"{stats.batches} batches, {stats.gaps} gaps recorded"
        )

    def plan_restore(
        self, app: AppContext, src: SqliteConfig, request: RestoreRequest
    ) -> SqliteRestoreJob:
        from catalog.queries import get_source
        from recovery.errors import PlanError
        from recovery.sqlite.facts import load_sqlite
        from recovery.sqlite.plan import plan_caught_up
        from recovery.sqlite.restore import exact_plan

        repo = app.repo()

        def load() -> dict[str, DbFacts]:
            with repo.catalog.session() as s:
                source = get_source(s, src.name)
                return {} if source is None else load_sqlite(s, source.id, src.name)

        dbs = load()
        if not dbs:
            raise PlanError(f"{src.name}: nothing archived yet (no base copy)")
        plans = [
            exact_plan(repo, plan_caught_up(partial(_one, load, db), request.target)) for db in dbs
        ]
        into = request.into.get(self.into_option)
        return SqliteRestoreJob(src, plans, into, request.force)

    def restore_rows(
        self, app: AppContext, src: SqliteConfig, request: RestoreRequest, rows: PartialRequest
    ) -> None:
        """Rows of the source as of the target back into one live database
        (recovery/sqlite/partial.py), a line per table."""
        from recovery.sqlite.partial import check_live, restore_rows
        from recovery.sqlite.scratch import restored_copies
        from recovery.sqlite.tables import resolve_tables

        if not rows.tables:
            raise ConfigError("a partial restore needs the tables: name them with --table")
        if rows.mode not in MODES:
            raise ConfigError(f"--mode {rows.mode!r}: one of {', '.join(MODES)}")
        if rows.into_database is not None:
            check_live(Path(rows.into_database).expanduser())
        job = self.plan_restore(app, src, request)
        with restored_copies(app.repo(), job.plans) as copies:
            refs = resolve_tables(rows.tables, _tables_of(copies))
            dbs = sorted({ref.db for ref in refs})
            if len(dbs) > 1:
                raise ConfigError(
                    f"--table names tables of several databases ({', '.join(dbs)}): a partial "
                    "restore writes into one database, run it once per database"
                )
            live = _live_database(job, dbs[0], rows.into_database)
            stamp = request.target.astimezone(UTC).strftime("%Y%m%d%H%M%S")
            names = [ref.name for ref in refs]
            lines = restore_rows(copies[dbs[0]], live, names, rows.where, rows.mode, stamp)
        for line in lines:
            click.echo(f"{src.name}: {line} ({rows.mode}, into {live})")

    def export(
        self,
        app: AppContext,
        src: SqliteConfig,
        request: RestoreRequest,
        what: ExportRequest,
        out: IO[str],
    ) -> None:
        from recovery.sqlite.export import export_tables
        from recovery.sqlite.scratch import restored_copies

        if what.keys is not None:
            raise ConfigError("--keys is for redis sources: choose sqlite tables with --table")
        job = self.plan_restore(app, src, request)
        with restored_copies(app.repo(), job.plans) as copies:
            written = export_tables(copies, what.tables, what.where, what.format, out)
        for ref, count in written:
            click.echo(f"{src.name}: exported {count} rows of {ref}", err=True)

    def mark_refusal(self, src: Any) -> str | None:
        return None

    def mark(
        self, app: AppContext, src: Any, name: str, at: datetime, timeout: float
    ) -> MarkRecord:
        from pitr.marking import archived_mark

        return archived_mark(app, src, name, at, timeout)

    def setup(self, app: AppContext, src: Any) -> list[str]:
        from pitr.kinds.base import run_capture_hint

        return run_capture_hint(app, src)

    def setup_warnings(self, app: AppContext, src: Any) -> list[str]:
        return []

    def live_report(self, app: AppContext, src: Any) -> None:
        return None

    def archive_summary(self, totals: dict[str, Any]) -> str | None:
        from pitr.units import human_bytes

        if not totals:
            return None
        return (
            f"databases: {totals['databases']}, {totals['commits']} commits in "
            f"{totals['batches']} batches, {human_bytes(totals['stored_bytes'])} stored, "
            f"{totals['generations']} generations, {totals['gaps']} recorded gaps"
        )


def _one(load: Callable[[], dict[str, DbFacts]], db: str) -> DbFacts:
    return load()[db]


def _tables_of(copies: dict[str, Path]) -> dict[str, list[str]]:
    from recovery.sqlite.tables import open_read_only, user_tables

    found = {}
    for db, path in copies.items():
        conn = open_read_only(path)
        try:
            found[db] = user_tables(conn)
        finally:
            conn.close()
    return found


def _live_database(job: SqliteRestoreJob, db: str, into: str | None) -> Path:
    """--into-database, else the database's own file on disk."""
    if into is not None:
        return Path(into).expanduser().absolute()
    if db not in job.live:
        raise ConfigError(
            f"{job.src.name}: database {db} is not on disk now: name the file to restore "
            "rows into with --into-database"
        )
    return job.live[db]


@dataclass
class SqliteRestoreJob:
    src: SqliteConfig
    plans: list[DbPlan]
    into: str | None
    force: bool

    @cached_property
    def live(self) -> dict[str, Path]:
        """The source's databases on disk now (matched once per restore)."""
        from archiver.sqlite.capture import resolve

        return resolve(self.src.paths, strict=False)

    def destination(self, plan: DbPlan) -> Path:
        """Where a database is written: into --into (a file, or a directory
        that gets the database's own name), else where it lives, else
        where it was copied from."""
        if self.into is not None:
            into = Path(self.into).expanduser().absolute()
            return into / plan.db if self.src.several or into.is_dir() else into
        if plan.db in self.live:
            return self.live[plan.db]
        if plan.base.path:
            return Path(plan.base.path)
        first = Path(self.src.paths[0]).expanduser().absolute()
        return first if not self.src.several else first.parent / plan.db

    def describe(self) -> list[str]:
        lines: list[str] = []
        for plan in self.plans:
            lines.extend(f"{self.src.name} (sqlite): {line}" for line in plan.describe())
            lines.append(f"{self.src.name} (sqlite): {plan.db} -> {self.destination(plan)}")
        return lines

    def check_target(self) -> None:
        """TargetNotEmpty (exit 3): a destination exists and --force is not
        given, or the database is restored in place while a process has it open."""
        from catalog.sqlitefiles import opened_by
        from recovery.errors import RestoreInputError, TargetNotEmpty

        if self.into is not None and self.src.several:
            into = Path(self.into)
            if into.exists() and not into.is_dir():
                raise RestoreInputError(f"--into {into}: is not a directory ({self.src.name} "
                                        "has several databases)")  # fmt: skip
        for plan in self.plans:
            path = self.destination(plan)
            if not path.exists():
                continue
            if not self.force:
                raise TargetNotEmpty(
                    f"{path}: exists; restore elsewhere with --into, or replace it with "
                    "--force (the old file is set aside)"
                )
            holders = opened_by(path)
            if holders:
                raise TargetNotEmpty(
                    f"{path}: is open ({', '.join(holders)}); stop the application "
                    "(and pitr daemon) before restoring in place"
                )

    def execute(self, app: AppContext) -> None:
        from recovery.sqlite.restore import write_database

        repo = app.repo()
        for plan in self.plans:
            path = self.destination(plan)
            w = write_database(repo, plan, path)
            aside = f"; the old file is now {w.set_aside[0]}" if w.set_aside else ""
            click.echo(
                f"{self.src.name}: restored {plan.db} to {w.path} ({w.pages} pages, "
                f"{w.commits} commits replayed on base copy {plan.base.id}), "
                f"integrity_check ok{aside}"
            )


KIND: SourceKind = SqliteKind()
