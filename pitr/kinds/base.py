"""The source-kind seam: what a kind of source (PostgreSQL, Redis, ...)
implements so that every command can serve it without knowing its name.

A kind parses its own [sources.NAME] table into a typed config, takes
backups, runs its continuous capture in the daemon, plans and carries out a
restore to an instant, and tells the reports about itself. Commands look the
kind up in the registry (pitr.kinds) and call these; they never branch on
a kind's name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, ClassVar, Protocol

from pitr.configfile import ConfigError

if TYPE_CHECKING:
    from catalog.marks import MarkRecord
    from pitr.context import AppContext
    from recovery.reporting import KindReports

Log = Callable[[str], None]


def echo(line: str, err: bool = False) -> None:
    """click.echo, with click loaded only when a kind speaks: parsing a
    config imports every configured kind, `pitr wal-push` too."""
    import click

    click.echo(line, err=err)


@dataclass(frozen=True)
class SourceConfig:
    """The keys every source has; each kind extends it with its own."""

    KIND: ClassVar[str] = ""
    KEYS: ClassVar[frozenset[str]] = frozenset(
        {"kind", "backup_every", "max_lag", "max_backup_age"}
    )
    name: str
    backup_every: timedelta | None = None
    # None: the [report] table's, else no limit
    max_lag: timedelta | None = None
    max_backup_age: timedelta | None = None

    @property
    def kind(self) -> str:
        return self.KIND


@dataclass(frozen=True)
class Goal:
    """Where a restore stops, beyond an instant (pitr.targets parses it).

    form: time | mark | lsn | xid | latest | end-of-backup; a kind says in
    target_forms which it takes. For a mark, the request's target is the
    instant of this source's side of it."""

    form: str = "time"
    mark: str | None = None
    lsn: str | None = None
    xid: int | None = None
    inclusive: bool = True  # False: stop just before the target (--exclusive)
    action: str = "promote"  # PostgreSQL's recovery_target_action


@dataclass(frozen=True)
class RestoreRequest:
    """What `pitr restore` was asked, for every kind alike."""

    target: datetime
    force: bool
    # per-kind destination options by name (pgdata, redis_url); None: the source's own
    into: dict[str, str | None]
    goal: Goal = Goal()
    delta: bool = False  # rewrite only what differs in an existing destination


MODES = ("insert-missing", "replace", "side-table")
FORMATS = ("sql", "csv", "jsonl")


@dataclass(frozen=True)
class RowsRequest:
    """Which rows of a source as it was at the target (--table, --where):
    what a partial restore brings back and what an export writes."""

    tables: tuple[str, ...]
    where: str | None = None  # an SQL condition, evaluated on the restored copy
    scratch_dir: str | None = None  # where the restored copy goes (default: the temp dir)


@dataclass(frozen=True)
class PartialRequest(RowsRequest):
    """`pitr restore --table`: rows brought back into a live database."""

    into_database: str | None = None  # its DSN or file; None: the source's own
    mode: str = "insert-missing"  # one of MODES


@dataclass(frozen=True)
class ExportRequest(RowsRequest):
    """`pitr export`: data as it was at the target, written as format."""

    format: str = "jsonl"  # one of FORMATS
    keys: str | None = None  # Redis: the key pattern to export
    database: str | None = None  # PostgreSQL: the database to read; None: the source dsn's


@dataclass(frozen=True)
class LiveReport:
    """What a source's live server says beside the catalog (`report rpo`):
    fields added to the source's JSON object, lines of text, and warnings."""

    fields: dict[str, Any]
    lines: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


class RestoreJob(Protocol):
    """A planned restore of one source, made before anything is touched."""

    def describe(self) -> list[str]:
        """The plan, a line each, for the operator to read before it runs."""

    def check_target(self) -> None:
        """Refuse (TargetNotEmpty, exit 3) a destination that would be overwritten."""

    def execute(self, app: AppContext) -> None:
        """Carry the plan out and print what was done."""


class Capture(Protocol):
    """A kind's continuous work in the daemon (a WAL pusher, a stream tailer)."""

    def start(self) -> None:
        """Begin working in threads of its own; return at once."""

    def stop(self) -> None:
        """Flush what is buffered and stop; return when done."""


class ThreadCapture:
    """A capture that is one loop, run(stop), in a thread of the daemon."""

    def __init__(self, run: Callable[[threading.Event], object], name: str) -> None:
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=run, args=(self.stopping,), name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(60)


class SourceKind(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def config(self) -> type[SourceConfig]: ...

    @property
    def into_option(self) -> str:
        """The restore option that names this kind's destination (e.g. "pgdata")."""

    @property
    def tails(self) -> bool:
        """`pitr tail` can run its capture in the foreground."""

    @property
    def delta_restores(self) -> bool:
        """`restore --delta` can rewrite only what differs in an existing destination."""

    @property
    def reports(self) -> KindReports: ...

    @property
    def target_forms(self) -> frozenset[str]:
        """The Goal forms its restore takes (every kind takes time and mark)."""

    def parse(self, name: str, raw: dict[str, Any], at: str) -> SourceConfig:
        """The typed config of a [sources.NAME] table (unknown keys already refused)."""

    def backup(self, app: AppContext, src: Any, log: Log, progress: bool) -> None:
        """Take a backup (or snapshot) and log a one-line summary."""

    def capture(self, app: AppContext, src: Any, log: Log) -> Capture | None:
        """The daemon's continuous capture of the source; None when it has none."""

    def tail(
        self, app: AppContext, src: Any, stop: threading.Event, log: Log, options: dict[str, Any]
    ) -> str:
        """`pitr tail`: the capture in the foreground until stop is set; what
        it shipped, in a line. ConfigError for a kind that has none."""

    def plan_restore(self, app: AppContext, src: Any, request: RestoreRequest) -> RestoreJob:
        """The plan of a restore to request.target; PlanError (exit 3) with the
        recoverable window when it cannot be met."""

    def restore_rows(
        self, app: AppContext, src: Any, request: RestoreRequest, rows: PartialRequest
    ) -> None:
        """Bring the chosen rows as they were at request.target into a live
        database, which keeps running; ConfigError for a kind without tables."""

    def export(
        self, app: AppContext, src: Any, request: RestoreRequest, what: ExportRequest, out: IO[str]
    ) -> None:
        """Write the chosen data as it was at request.target to out."""

    def setup(self, app: AppContext, src: Any) -> list[str]:
        """What the operator does for the capture to start (pitr init prints it)."""

    def setup_warnings(self, app: AppContext, src: Any) -> list[str]:
        """Where the live source is set up to archive slower or less than it
        could (pitr check warns); none when it cannot be asked."""

    def live_report(self, app: AppContext, src: Any) -> LiveReport | None:
        """What `report rpo` adds from the live source (a replication slot's
        retained WAL); None when there is nothing to ask. An unreachable
        server is a line of the report, never an error."""

    def archive_summary(self, totals: dict[str, Any]) -> str | None:
        """One line on what is archived (info), from the status totals."""

    def mark_refusal(self, src: Any) -> str | None:
        """Why this source cannot be marked at all (checked before any
        source is), or None."""

    def mark(
        self, app: AppContext, src: Any, name: str, at: datetime, timeout: float
    ) -> MarkRecord:
        """The source's side of mark NAME taken at `at`, once a restore can
        reach it (waiting up to timeout seconds); not yet recorded."""


def run_capture_hint(app: AppContext, src: SourceConfig) -> list[str]:
    """The setup of a source that only pitr's own capture archives."""
    return [f"{src.name}: run `pitr daemon` (or `pitr tail --source {src.name}`) to capture it"]


def required_text(raw: dict[str, Any], key: str, at: str, kind: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{at}: {key} is required for a {kind} source")
    return value


def patterns(value: Any, at: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{at} must be a list of patterns")
    return tuple(value)
