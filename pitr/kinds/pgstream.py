"""WAL streaming of a postgres source: its config keys and its capture.

`stream = true` makes the daemon run pg_receivewal from a physical
replication slot into `stream_dir` and ship what arrives
(archiver.postgres.walstream) beside the look-ahead pusher.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pitr.configfile import ConfigError
from pitr.kinds.base import LiveReport, Log

if TYPE_CHECKING:
    from archiver.postgres.slotwatch import SlotState
    from archiver.postgres.walstream import StreamingPusher
    from pitr.context import AppContext
    from pitr.kinds.postgres import PostgresConfig

STREAM_KEYS = frozenset({"stream", "slot", "stream_dir", "synchronous"})
SLOT_RE = re.compile(r"^[a-z0-9_]{1,63}$")  # what PostgreSQL accepts as a slot name


def default_slot(source: str) -> str:
    return ("pitr_" + re.sub(r"[^a-z0-9_]", "_", source.lower()))[:63]


def default_stream_dir(pgdata: str) -> str:
    """Beside the data directory, never inside it (like the restore spool)."""
    return os.path.abspath(os.path.expanduser(pgdata)).rstrip("/") + ".pitr-stream"


@dataclass(frozen=True)
class StreamSettings:
    stream: bool
    slot: str
    stream_dir: str
    synchronous: bool


def _flag(raw: dict[str, Any], key: str, at: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{at}: {key} must be true or false")
    return value


def stream_settings(name: str, pgdata: str, raw: dict[str, Any], at: str) -> StreamSettings:
    """The streaming keys of a [sources.NAME] table."""
    stream = _flag(raw, "stream", at)
    synchronous = _flag(raw, "synchronous", at)
    if synchronous and not stream:
        raise ConfigError(f"{at}: synchronous = true needs stream = true")
    slot = raw.get("slot", default_slot(name))
    if not isinstance(slot, str) or not SLOT_RE.match(slot):
        raise ConfigError(
            f"{at}: slot must be 1 to 63 lower-case letters, digits or underscores, not {slot!r}"
        )
    directory = raw.get("stream_dir", default_stream_dir(pgdata))
    if not isinstance(directory, str) or not directory:
        raise ConfigError(f"{at}: stream_dir must be a directory path")
    return StreamSettings(stream, slot, os.path.abspath(os.path.expanduser(directory)), synchronous)


def streaming_capture(
    app: AppContext, src: PostgresConfig, mark_tag: str, log: Log
) -> StreamingPusher:
    from archiver.postgres.receiver import ReceiverSettings
    from archiver.postgres.walstream import StreamingPusher
    from pitr.throwaway import pg_bin

    try:
        program = pg_bin("pg_receivewal")
    except FileNotFoundError as e:
        raise ConfigError(f"source {src.name!r} streams WAL, but {e}") from None
    settings = ReceiverSettings(program, src.dsn, src.stream_dir, src.slot, src.slot)
    log(f"streaming WAL with pg_receivewal from slot {src.slot} into {src.stream_dir}")
    repo = app.repo()
    return StreamingPusher(repo, src.name, src.pgdata, mark_tag, settings, log, src.synchronous)


def slot_report(src: PostgresConfig) -> LiveReport | None:
    """The slot of a streaming source as its server sees it now: whether a
    receiver is on it, the WAL it holds back, and a warning before
    max_slot_wal_keep_size would invalidate it. An unreachable server is
    one line, so that the rest of the report still comes."""
    if not src.stream:
        return None
    import psycopg

    from archiver.postgres.slotwatch import slot_state
    from catalog.db.engine import brief

    try:
        state = slot_state(src.dsn, src.slot)
    except psycopg.Error as e:
        error = brief(e)
        line = f"slot {src.slot}: cannot ask the server: {error}"
        return LiveReport({"slot": slot_json(src.slot, None, error, None)}, (line,))
    warning: str | None
    if state is None:
        warning = "does not exist: `pitr daemon` creates it when it starts streaming"
        lines: tuple[str, ...] = ()
    else:
        warning = state.warning()
        activity = "active" if state.active else "inactive (nothing receives from it)"
        lines = (f"slot {src.slot}: {activity}, {state.describe()}",)
    warnings = () if warning is None else (f"slot {src.slot}: {warning}",)
    return LiveReport({"slot": slot_json(src.slot, state, None, warning)}, lines, warnings)


def slot_json(
    name: str, state: SlotState | None, error: str | None, warning: str | None
) -> dict[str, Any]:
    """The `slot` object of `report rpo --output json` (error: the server
    could not be asked)."""
    return {
        "name": name,
        "reachable": error is None,
        "error": error,
        "exists": None if error is not None else state is not None,
        "active": None if state is None else state.active,
        "wal_status": None if state is None else state.wal_status,
        "retained_bytes": None if state is None else state.retained,
        "safe_wal_size_bytes": None if state is None else state.safe,
        "max_slot_wal_keep_size_bytes": None if state is None or state.limit < 0 else state.limit,
        "warning": warning,
    }
