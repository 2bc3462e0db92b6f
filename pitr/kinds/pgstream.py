"""WAL streaming of a postgres source: its config keys and its capture.

`stream = true` makes the daemon run pg_receivewal from a physical
replication slot into `stream_dir` and ship what arrives
(archiver.postgres.walstream) beside the look-ahead pusher.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from pitr.configfile import ConfigError
from pitr.kinds.base import Log

if TYPE_CHECKING:
    from archiver.postgres.walstream import StreamingPusher
    from pitr.context import AppContext
    from pitr.kinds.postgres import PostgresConfig

SLOT_RE = re.compile(r"^[a-z0-9_]{1,63}$")  # what PostgreSQL accepts as a slot name


def default_slot(source: str) -> str:
    return ("pitr_" + re.sub(r"[^a-z0-9_]", "_", source.lower()))[:63]


def default_stream_dir(pgdata: str) -> str:
    """Beside the data directory, never inside it (like the restore spool)."""
    return os.path.abspath(os.path.expanduser(pgdata)).rstrip("/") + ".pitr-stream"


def stream_settings(name: str, pgdata: str, raw: dict[str, Any], at: str) -> tuple[bool, str, str]:
    """stream, slot and stream_dir of a [sources.NAME] table."""
    stream = raw.get("stream", False)
    if not isinstance(stream, bool):
        raise ConfigError(f"{at}: stream must be true or false")
    slot = raw.get("slot", default_slot(name))
    if not isinstance(slot, str) or not SLOT_RE.match(slot):
        raise ConfigError(
            f"{at}: slot must be 1 to 63 lower-case letters, digits or underscores, not {slot!r}"
        )
    directory = raw.get("stream_dir", default_stream_dir(pgdata))
    if not isinstance(directory, str) or not directory:
        raise ConfigError(f"{at}: stream_dir must be a directory path")
    return stream, slot, os.path.abspath(os.path.expanduser(directory))


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
    settings = ReceiverSettings(program, src.dsn, src.stream_dir, src.slot)
    log(f"streaming WAL with pg_receivewal from slot {src.slot} into {src.stream_dir}")
    return StreamingPusher(app.repo(), src.name, src.pgdata, mark_tag, settings, log)
