"""The Redis source kind: capture of every write through the replication
protocol, or stream tailing and keyspace snapshots (archiver/redis), restore
of a keyspace and its streams to an instant (recovery/redis)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, ClassVar

import click

from pitr.configfile import ConfigError
from pitr.kinds.base import (
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
    from datetime import datetime

    from catalog.marks import MarkRecord
    from pitr.context import AppContext
    from pitr.kinds.redisjobs import RedisRestoreJob, ReplayJob
    from recovery.redis.scratch import ScratchRedis
    from recovery.reporting import KindReports


@dataclass(frozen=True)
class RedisConfig(SourceConfig):
    KIND: ClassVar[str] = "redis"
    KEYS: ClassVar[frozenset[str]] = SourceConfig.KEYS | {"url", "streams", "keys", "capture"}
    url: str = ""
    streams: tuple[str, ...] = ()
    keys: tuple[str, ...] = ("*",)
    # "replication": every write, through PSYNC (the stream tailer where the
    # server refuses it); "streams": the stream tailer and snapshots
    capture: str = "replication"

    @property
    def patterns(self) -> list[str]:
        """What the source covers: its key patterns and its stream patterns."""
        return sorted(set(self.keys) | set(self.streams))


class RedisKind:
    name = "redis"
    config = RedisConfig
    into_option = "redis_url"
    tails = True
    delta_restores = False
    target_forms = frozenset({"time", "mark"})

    @property
    def reports(self) -> KindReports:
        from recovery.redis.report import RedisReports

        return RedisReports()

    def parse(self, name: str, raw: dict[str, Any], at: str) -> RedisConfig:
        return RedisConfig(
            name,
            url=required_text(raw, "url", at, self.name),
            streams=patterns(raw.get("streams", []), f"{at}: streams"),
            keys=patterns(raw.get("keys", ["*"]), f"{at}: keys"),
            capture=_capture_mode(raw.get("capture", "replication"), at),
        )

    def backup(self, app: AppContext, src: RedisConfig, log: Log, progress: bool) -> None:
        from archiver.redis.snapshot import take_snapshot
        from catalog.details import SnapshotDetails
        from pitr.timeparse import format_utc
        from pitr.units import human_bytes

        taken = take_snapshot(app.repo(), src.name, src.url, src.keys, src.streams)
        r = taken.record
        details = SnapshotDetails.from_json(r.details)
        log(
            f"snapshot {r.id} of {src.name}: {details.keys} keys "
            f"({len(details.streams)} streams), "
            f"{human_bytes(r.size_bytes)}, {human_bytes(r.stored_bytes)} new in the store, "
            f"taken {format_utc(r.started_at)}, {taken.seconds:.1f}s"
        )

    def capture(self, app: AppContext, src: RedisConfig, log: Log) -> ThreadCapture | None:
        from archiver.redis.tailer import StreamTailer

        if src.capture == "replication":
            log(f"capturing every write of {src.name} through the replication protocol")
            return ThreadCapture(lambda stop: _replicate(app, src, stop, log), "pitr-repl")
        if not src.streams:
            log("no streams patterns, nothing to tail")
            return None
        log(f"tailing streams {', '.join(src.streams)}")
        tailer = StreamTailer(app.repo(), src.name, src.url, src.streams, log=log)
        return ThreadCapture(tailer.run, "pitr-tail")

    def tail(
        self,
        app: AppContext,
        src: RedisConfig,
        stop: threading.Event,
        log: Log,
        options: dict[str, Any],
    ) -> str:
        from archiver.redis.tailer import StreamTailer
        from catalog.redisformat import safe_url

        if src.capture == "replication":
            log(f"tail {src.name}: capturing every write on {safe_url(src.url)}; stop with SIGINT")
            return _replicate(app, src, stop, log)
        if not src.streams:
            raise ConfigError(f"source {src.name!r} has no streams patterns to tail")
        tailer = StreamTailer(
            app.repo(),
            src.name,
            src.url,
            src.streams,
            batch_count=options["batch_count"],
            batch_seconds=options["batch_seconds"],
            log=log,
        )
        log(
            f"tail {src.name}: following streams {', '.join(src.streams)} on "
            f"{safe_url(src.url)}; stop with SIGINT or SIGTERM"
        )
        stats = tailer.run(stop)
        return (
            f"shipped {stats.entries} entries in {stats.batches} batches "
            f"from {stats.streams} streams, {stats.gaps} gaps recorded"
        )

    def plan_restore(
        self, app: AppContext, src: RedisConfig, request: RestoreRequest
    ) -> RedisRestoreJob | ReplayJob:
        """The one rule of what a restore reads: the replication capture's
        epochs when the store holds one whose base came at or before the
        target, else the snapshots and stream batches (capture = "streams",
        a server that refused PSYNC, or a target from before the source
        moved to the replication capture), whatever the config says."""
        from datetime import UTC, datetime

        from catalog.queries import get_source
        from pitr.kinds.redisjobs import RedisRestoreJob, ReplayJob
        from pitr.timeparse import format_utc
        from recovery.errors import PlanError
        from recovery.redis.plan import choose_snapshot, load_plan
        from recovery.redis.replay import epoch_at, epochs

        repo = app.repo()
        url = request.into.get(self.into_option) or src.url
        target_ms = int(request.target.timestamp() * 1000)
        found = epochs(repo, src.name)
        epoch = epoch_at(found, target_ms)
        if epoch is not None:
            return ReplayJob(src, epoch.name, target_ms, url, request.force)
        with repo.catalog.session() as s:
            source = get_source(s, src.name)
            try:
                if source is None:
                    choose_snapshot(src.name, request.target, [], None)  # raises: none yet
                    raise AssertionError("unreachable")
                plan = load_plan(s, src.name, source.id, request.target)
            except PlanError as e:
                if not found:
                    raise
                first = datetime.fromtimestamp(found[0].base_ms / 1000, UTC)
                raise PlanError(
                    f"restore {src.name}: the target is before the first replication base "
                    f"({format_utc(first)}) and no snapshot covers it ({e})"
                ) from None
        return RedisRestoreJob(src, plan, url, request.force)

    def restore_rows(
        self, app: AppContext, src: RedisConfig, request: RestoreRequest, rows: PartialRequest
    ) -> None:
        raise ConfigError(
            f"--table is for postgres and sqlite sources; a restore of redis source "
            f"{src.name!r} takes its keys from the source's patterns ({', '.join(src.patterns)})"
        )

    def export(
        self,
        app: AppContext,
        src: RedisConfig,
        request: RestoreRequest,
        what: ExportRequest,
        out: IO[str],
    ) -> None:
        """The keys as of the target, from a scratch server that holds them
        (recovery/redis/export.py), a JSON object a line."""
        from recovery.redis.export import export_keys

        if what.tables or what.where:
            raise ConfigError(
                "--table and --where are for postgres and sqlite sources: "
                "choose redis keys with --keys PATTERN"
            )
        if what.format != "jsonl":
            raise ConfigError(f"a redis source exports as --format jsonl, not {what.format}")
        scratch, reference_ms = self._keyspace_at(app, src, request)
        try:
            keys = [what.keys] if what.keys else src.patterns
            written, expired = export_keys(scratch.client, keys, reference_ms, out)
        finally:
            scratch.close()
        click.echo(
            f"{src.name}: exported {written} keys of {', '.join(keys)}; left out {expired} "
            "keys expired at the target",
            err=True,
        )

    def _keyspace_at(
        self, app: AppContext, src: RedisConfig, request: RestoreRequest
    ) -> tuple[ScratchRedis, int]:
        """A scratch server holding the source's keys as of the target, and
        the instant (ms) its expiry times count the keys' TTL from: for a
        replayed capture, the target moved as its expiries were; for a
        snapshot restored with each key's TTL left at the target, the
        restore's start."""
        from archiver.redis.replication import now_ms
        from pitr.kinds.redisjobs import ReplayJob
        from recovery.redis.export import scratch_url
        from recovery.redis.replay import replay_to
        from recovery.redis.restore import restore_redis
        from recovery.redis.scratch import ScratchRedis

        target_ms = int(request.target.timestamp() * 1000)
        job = self.plan_restore(app, src, request)
        if isinstance(job, ReplayJob):
            scratch, replayed = replay_to(app.repo(), src.name, target_ms)
            return scratch, replayed.ttl_from_ms
        scratch = ScratchRedis()
        try:
            started = now_ms()
            restore_redis(app.repo(), job.plan, scratch_url(scratch), src.patterns, force=True)
        except BaseException:
            scratch.close()
            raise
        return scratch, started

    def mark_refusal(self, src: Any) -> str | None:
        # A replication capture's newest batch arrival is its heartbeat: the
        # server pings its replicas every repl-ping-replica-period (10 s).
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

        a = totals
        if not a:
            return None
        lines = []
        if a["streams"] or a.get("capture") != "replication":
            lines.append(
                f"streams: {a['streams']}, {a['stream_entries']} entries in "
                f"{a['stream_batches']} batches, {human_bytes(a['stream_stored_bytes'])} "
                f"stored, {a['stream_gaps']} recorded gaps"
            )
        if a.get("capture") == "replication":
            lines.append(
                f"replication: {a['repl_epochs']} epochs, {a['repl_batches']} batches "
                f"({human_bytes(a['repl_base_bytes'])} of bases, "
                f"{human_bytes(a['repl_bytes'])} of writes), "
                f"{human_bytes(a['repl_stored_bytes'])} stored, {a['repl_resumes']} resumes"
            )
            lines += [
                f"epoch {e['epoch']}: base {e['base_at']}, offsets {e['offset']}.."
                f"{e['end_offset']} in {e['batches']} batches, newest {e['newest_arrival']}"
                for e in a["epochs"]
            ]
        return "\n  ".join(lines)


KIND: SourceKind = RedisKind()


def _capture_mode(value: Any, at: str) -> str:
    if value not in ("streams", "replication"):
        raise ConfigError(f'{at}: capture must be "replication" or "streams"')
    return str(value)


def _replicate(app: AppContext, src: RedisConfig, stop: threading.Event, log: Log) -> str:
    """The replication capture; where the server refuses PSYNC, one line and
    the stream tailer instead."""
    from archiver.redis.replication import ReplicationCapture, ReplicationRefused
    from archiver.redis.tailer import StreamTailer

    try:
        st = ReplicationCapture(app.repo(), src.name, src.url, log=log).run(stop)
    except ReplicationRefused as e:
        log(f"{e}; falling back to the stream tailer with snapshots")
        if not src.streams:
            return "replication refused and no streams patterns to tail"
        t = StreamTailer(app.repo(), src.name, src.url, src.streams, log=log).run(stop)
        return f"replication refused; tailed {t.entries} entries in {t.batches} batches"
    return (
        f"captured {st.bytes} bytes of writes in {st.batches} batches, "
        f"{st.epochs} new epochs, {st.resumes} resumes"
    )
