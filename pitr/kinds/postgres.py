"""The PostgreSQL source kind: WAL archiving and base backups (archiver/postgres),
restore to an instant by laying a backup down and letting PostgreSQL replay
the archived WAL (recovery/postgres)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, NoReturn

from pitr.configfile import ConfigError
from pitr.kinds.base import (
    ExportRequest,
    LiveReport,
    Log,
    PartialRequest,
    RestoreRequest,
    SourceConfig,
    SourceKind,
    echo,
    required_text,
)
from pitr.kinds.pgstream import STREAM_KEYS
from pitr.timeparse import format_utc

if TYPE_CHECKING:
    from datetime import datetime

    from archiver.postgres.walwatch import WalPusher
    from catalog.marks import MarkPoint, MarkRecord
    from pitr.context import AppContext
    from recovery.postgres.catalog import PgState
    from recovery.postgres.planner import PgPlan
    from recovery.postgres.restore import PgRestoreResult
    from recovery.reporting import KindReports


@dataclass(frozen=True)
class PostgresConfig(SourceConfig):
    KIND: ClassVar[str] = "postgres"
    KEYS: ClassVar[frozenset[str]] = SourceConfig.KEYS | {"dsn", "pgdata"} | STREAM_KEYS
    dsn: str = ""
    pgdata: str = ""
    stream: bool = False  # the daemon runs pg_receivewal and ships what arrives
    slot: str = ""  # the physical replication slot it streams from
    stream_dir: str = ""  # where pg_receivewal writes (beside pgdata by default)
    synchronous: bool = False  # the receiver is named for synchronous_standby_names


class PostgresKind:
    name = "postgres"
    config = PostgresConfig
    into_option = "pgdata"
    tails = False  # its WAL comes through archive_command and the daemon
    delta_restores = True
    target_forms = frozenset({"time", "mark", "lsn", "xid", "latest", "end-of-backup"})

    @property
    def reports(self) -> KindReports:
        from recovery.postgres.report import PostgresReports

        return PostgresReports()

    def parse(self, name: str, raw: dict[str, Any], at: str) -> PostgresConfig:
        from pitr.kinds.pgstream import stream_settings

        dsn = required_text(raw, "dsn", at, self.name)
        pgdata = required_text(raw, "pgdata", at, self.name)
        streaming = asdict(stream_settings(name, pgdata, raw, at))  # the same field names
        return PostgresConfig(name, dsn=dsn, pgdata=pgdata, **streaming)

    def backup(self, app: AppContext, src: PostgresConfig, log: Log, progress: bool) -> None:
        from archiver.postgres.backup import take_base_backup
        from catalog.details import PgBackupDetails
        from pitr.progress import byte_progress
        from pitr.units import human_bytes

        repo = app.repo()
        if progress:
            with byte_progress(f"backup {src.name}") as bar:
                taken = take_base_backup(repo, src.name, src.dsn, src.pgdata, progress=bar)
        else:
            taken = take_base_backup(repo, src.name, src.dsn, src.pgdata)
        r = taken.record
        details = PgBackupDetails.from_json(r.details)
        log(
            f"backup {r.id} of {src.name}: {details.files} files, "
            f"{human_bytes(r.size_bytes)}, {human_bytes(r.stored_bytes)} new in the store, "
            f"WAL {r.start_lsn}..{r.stop_lsn} on timeline {r.timeline}, {taken.seconds:.1f}s"
        )

    def capture(self, app: AppContext, src: PostgresConfig, log: Log) -> WalPusher:
        from archiver.postgres.walmarks import mark_tag
        from archiver.postgres.walwatch import WalPusher

        tag = mark_tag(app.config.repository.url, src.name)
        log(f"pushing WAL ahead from {src.pgdata}/pg_wal")
        if src.stream:
            from pitr.kinds.pgstream import streaming_capture

            return streaming_capture(app, src, tag, log)
        return WalPusher(app.repo(), src.name, src.pgdata, tag)

    def tail(
        self,
        app: AppContext,
        src: PostgresConfig,
        stop: threading.Event,
        log: Log,
        options: dict[str, Any],
    ) -> NoReturn:
        raise ConfigError(
            f"source {src.name!r} is a postgres source: its WAL is archived by "
            "archive_command (pitr wal-push) and pitr daemon, not pitr tail"
        )

    def plan_restore(
        self, app: AppContext, src: PostgresConfig, request: RestoreRequest
    ) -> PgRestoreJob:
        from recovery.postgres.catalog import load_pg_state
        from recovery.postgres.restore import (
            require_plan_objects,
            stops_at_target,
            streamed_segments,
        )

        repo = app.repo()
        state = load_pg_state(repo, src.name)
        plan = _plan(app, src, request, state)
        pgdata = request.into.get(self.into_option) or src.pgdata
        require_plan_objects(repo, src.name, state.source_id, plan)
        stop = stops_at_target(repo, state.source_id, plan) if plan.goal.form == "time" else True
        system = None
        if request.delta:  # a delta restore is only into a directory of this system
            from recovery.postgres.restore import load_manifest

            system = load_manifest(repo, plan.backup.id).system_identifier
        streamed = streamed_segments(repo, state.source_id, plan)
        return PgRestoreJob(
            src, plan, stop, state.source_id, pgdata, request.force, system, streamed
        )

    def mark_refusal(self, src: Any) -> str | None:
        return None

    def mark(
        self, app: AppContext, src: PostgresConfig, name: str, at: datetime, timeout: float
    ) -> MarkRecord:
        from datetime import UTC
        from datetime import datetime as dt

        from archiver.postgres.restorepoint import create_restore_point
        from catalog.marks import MarkRecord

        point = create_restore_point(src.name, src.dsn, name)
        return MarkRecord(
            src.name, name, self.name, point.at, dt.now(UTC), point.lsn, point.timeline
        )

    def restore_rows(
        self, app: AppContext, src: PostgresConfig, request: RestoreRequest, rows: PartialRequest
    ) -> None:
        from recovery.partial.pgrestore import restore_rows

        job = self._scratch_job(app, src, request)
        restore_rows(app, job, rows, rows.into_database or src.dsn, echo)

    def export(
        self,
        app: AppContext,
        src: PostgresConfig,
        request: RestoreRequest,
        what: ExportRequest,
        out: IO[str],
    ) -> None:
        from recovery.partial.pgexport import export

        job = self._scratch_job(app, src, request)
        export(app, job, what, src.dsn, out, lambda line: echo(line, err=True))

    def _scratch_job(
        self, app: AppContext, src: PostgresConfig, request: RestoreRequest
    ) -> PgRestoreJob:
        """The plan of a restore into a scratch cluster: it must end promoted."""
        goal = replace(request.goal, action="promote")
        return self.plan_restore(app, src, replace(request, goal=goal, delta=False))

    def setup(self, app: AppContext, src: PostgresConfig) -> list[str]:
        from pitr.pgsetup import setup_lines

        return setup_lines(app, src)

    def setup_warnings(self, app: AppContext, src: PostgresConfig) -> list[str]:
        from pitr.pgsetup import setup_warnings

        return setup_warnings(app, src)

    def live_report(self, app: AppContext, src: PostgresConfig) -> LiveReport | None:
        from pitr.kinds.pgstream import slot_report

        return slot_report(src)

    def archive_summary(self, totals: dict[str, Any]) -> str | None:
        from pitr.units import human_bytes

        a = totals
        return (
            f"WAL: {a.get('wal_files', 0)} files, {human_bytes(a.get('wal_bytes', 0))} "
            f"({human_bytes(a.get('wal_stored_bytes', 0))} stored), timelines "
            f"{', '.join(map(str, a.get('timelines', []))) or '-'}, newest segment "
            f"{a.get('newest_segment') or '-'}"
        )


def _plan(app: AppContext, src: PostgresConfig, request: RestoreRequest, state: PgState) -> PgPlan:
    """The plan of the request's goal: planner for an instant, targets for
    the other forms (a mark is its restore point's name and LSN)."""
    from catalog.wal import parse_lsn
    from recovery.postgres.planner import PgTarget, plan_postgres
    from recovery.postgres.targets import Archive, plan_target

    g = request.goal
    goal = PgTarget(inclusive=g.inclusive, action=g.action)
    if g.form == "time":
        plan = plan_postgres(
            src.name, request.target, state.backups, state.segments, state.timelines, state.seg_size
        )
        return replace(plan, goal=goal)
    archive = Archive(src.name, state.backups, state.segments, state.timelines, state.seg_size)
    if g.form == "mark":
        point = _mark_point(app, src.name, g.mark or "")
        goal = replace(goal, form="name", name=point.name, lsn=parse_lsn(point.lsn or "0/0"))
        return plan_target(archive, goal, point.timeline)
    form = "immediate" if g.form == "end-of-backup" else g.form
    lsn = parse_lsn(g.lsn) if g.lsn else None
    return plan_target(archive, replace(goal, form=form, lsn=lsn, xid=g.xid))


def _mark_point(app: AppContext, source: str, name: str) -> MarkPoint:
    from catalog.marks import marks_named
    from recovery.errors import PlanError

    with app.repo().catalog.session() as s:
        points = [p for p in marks_named(s, name) if p.source == source]
    if not points or not points[0].lsn:
        raise PlanError(f"restore {source}: mark {name!r} has no restore point on this source")
    return points[0]


@dataclass
class PgRestoreJob:
    src: PostgresConfig
    plan: PgPlan
    stop_at_target: bool  # False: nothing archived happened after the target
    source_id: int
    pgdata: str
    force: bool
    delta_system: str | None = None  # --delta: the system identifier of the backup
    streamed: tuple[str, ...] = ()  # chain segments served from streamed pieces

    def describe(self) -> list[str]:
        from recovery.postgres.targets import describe_goal

        p, src = self.plan, self.src
        return [
            f"{src.name} (postgres) into {self.pgdata}:",
            f"  base backup {p.backup.id}, ended {format_utc(p.backup.finished_at)}",
            f"  WAL {p.first_segment} .. {p.last_needed_segment} "
            f"({p.needed} segments) on timeline {p.timeline}",
            *(
                ["  delta: only chunks that differ are rewritten in an existing directory"]
                if self.delta_system
                else []
            ),
            *(
                [f"  streamed WAL: {', '.join(self.streamed)} (as received so far)"]
                if self.streamed
                else []
            ),
            f"  {describe_goal(p, self.stop_at_target)}",
            f"  recoverable window: {format_utc(p.recoverable_from)} .. "
            f"{format_utc(p.recoverable_to)}",
        ]

    def check_target(self) -> None:
        from recovery.postgres.delta import can_delta
        from recovery.postgres.target import check_target

        if self.delta_system is not None and can_delta(Path(self.pgdata), self.delta_system):
            return
        check_target(Path(self.pgdata), self.force)

    def execute(self, app: AppContext) -> None:
        from pitr.units import human_bytes

        src = self.src
        result = self.lay_down(app)
        if result.checked is not None:
            echo(
                f"{src.name}: delta restore of {result.files} files into {result.pgdata}: "
                f"{human_bytes(result.checked)} compared, {human_bytes(result.bytes)} rewritten"
            )
        else:
            echo(
                f"{src.name}: restored {result.files} files ({human_bytes(result.bytes)}) into "
                f"{result.pgdata}"
            )
        if result.set_aside:
            echo(f"{src.name}: the previous contents were moved to {result.set_aside}")
        then = {"promote": "promotes", "pause": "pauses", "shutdown": "shuts down"}
        action = "promote" if self.plan.goal.form == "latest" else self.plan.goal.action
        echo(
            f"{src.name}: start PostgreSQL on {result.pgdata}; "
            f"it replays WAL to the target and {then[action]}"
        )

    def lay_down(self, app: AppContext) -> PgRestoreResult:
        """The data directory and its WAL spool, ready for PostgreSQL to start on."""
        from pitr.progress import byte_progress
        from recovery.postgres.restore import local_records_dir, restore_postgres, spool_entries
        from recovery.postgres.spool import write_index

        repo, src = app.repo(), self.src
        # The prefetch spool lives beside the data directory, never inside it.
        target = os.path.abspath(self.pgdata)
        spool = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.pitr-spool")
        shutil.rmtree(spool, ignore_errors=True)
        # The spool's index first: a data directory renamed into place has its spool.
        write_index(
            spool,
            src.name,
            spool_entries(repo, self.source_id, self.plan),
            not repo.codec.encrypted,
            local_records_dir(repo, src.name),
        )
        try:
            with byte_progress(f"restore {src.name}") as progress:
                result = restore_postgres(
                    repo,
                    self.plan,
                    self.pgdata,
                    restore_command=restore_command(app, src.name, spool),
                    stop_at_target=self.stop_at_target,
                    end_command=restore_command(app, src.name, spool, remove_spool=True),
                    force=self.force,
                    delta=self.delta_system is not None,
                    progress=progress,
                )
        except BaseException:
            shutil.rmtree(spool, ignore_errors=True)
            raise
        _give_to_owner(spool, result.pgdata)
        if os.geteuid() != 0:
            # Start fetching WAL now; run as root, the first wal-fetch starts it
            # as the user that runs PostgreSQL instead.
            from pitr.entry import start_prefetcher

            start_prefetcher(app.config_path, spool)
        return result


def _give_to_owner(path: str, pgdata: str) -> None:
    """Running as root: the spool belongs to whoever runs PostgreSQL on pgdata."""
    if os.geteuid() != 0:
        return
    st = os.stat(pgdata)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, st.st_uid, st.st_gid)


def restore_command(app: AppContext, source: str, spool: str, remove_spool: bool = False) -> str:
    """The restore_command PostgreSQL runs: this pitr, this configuration
    (remove_spool: the recovery_end_command that clears the prefetch spool)."""
    exe = os.path.abspath(sys.argv[0])
    if not os.access(exe, os.X_OK) or os.path.basename(exe) != "pitr":
        exe = shutil.which("pitr") or exe
    parts = []
    for var in ("PITR_REPO", "PITR_CATALOG"):
        if os.environ.get(var):
            parts.append(f"{var}={shlex.quote(os.environ[var])}")
    parts.append(shlex.quote(exe))
    if app.config.path:
        parts += ["--config", shlex.quote(os.path.abspath(app.config.path))]
    if remove_spool:
        return " ".join([*parts, "wal-prefetch", "--remove", "--spool", shlex.quote(spool)])
    parts += ["wal-fetch", "--source", shlex.quote(source), "--spool", shlex.quote(spool)]
    parts += ["%f", "%p"]
    return " ".join(parts)


KIND: SourceKind = PostgresKind()
