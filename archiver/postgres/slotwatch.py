"""The replication slot of a streaming source, watched from the daemon.

A slot makes the server keep WAL until the receiver has it; if the receiver
falls behind by more than max_slot_wal_keep_size the server invalidates the
slot and streaming stops. The daemon logs the slot's state at start and a
warning whenever it gets worse, so an operator hears of it before that.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from archiver.postgres.receiver import Log
from catalog.db.engine import pg_timeouts

CHECK_INTERVAL = 60.0
FIRST_INTERVAL = 2.0  # until the receiver has created the slot
NEAR = 0.25  # warn when less than this share of max_slot_wal_keep_size is left

SLOT_QUERY = """
SELECT wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
       safe_wal_size, pg_size_bytes(current_setting('max_slot_wal_keep_size')), active
FROM pg_replication_slots WHERE slot_name = %s
"""


@dataclass(frozen=True)
class SlotState:
    wal_status: str | None  # reserved | extended | unreserved | lost (None: not used yet)
    retained: int | None  # bytes of WAL the server keeps for the slot
    safe: int | None  # bytes it may still fall behind before invalidation (None: no limit)
    limit: int  # max_slot_wal_keep_size in bytes, -1 for none
    active: bool | None = None  # a receiver streams from it now

    def warning(self) -> str | None:
        if self.wal_status in ("unreserved", "lost"):
            return f"wal_status is {self.wal_status}: the server may remove WAL it has not sent"
        if self.limit > 0 and self.safe is not None and self.safe < NEAR * self.limit:
            return f"only {self.safe >> 20} MiB left before max_slot_wal_keep_size invalidates it"
        return None

    def describe(self) -> str:
        retained = "-" if self.retained is None else f"{self.retained >> 20} MiB"
        limit = "no limit" if self.limit < 0 else f"max_slot_wal_keep_size {self.limit >> 20} MiB"
        left = "" if self.safe is None else f", {self.safe >> 20} MiB left"
        return f"{retained} of WAL retained, {self.wal_status or 'not streamed yet'}, {limit}{left}"


def slot_state(dsn: str, slot: str) -> SlotState | None:
    """The slot as the server sees it; None when it does not exist."""
    row = _query(dsn, SLOT_QUERY, (slot,))
    if row is None:
        return None
    status, retained, safe, limit, active = row
    return SlotState(status, retained, safe, int(limit), bool(active))


def synchronous_names(dsn: str) -> str:
    row = _query(dsn, "SELECT current_setting('synchronous_standby_names')", ())
    return str(row[0]) if row else ""


def _query(dsn: str, sql: str, args: tuple[str, ...]) -> tuple[Any, ...] | None:
    with psycopg.connect(dsn, autocommit=True, **pg_timeouts(conninfo_to_dict(dsn))) as conn:
        row = conn.execute(sql, args).fetchone()
    return None if row is None else tuple(row)


class SlotWatch:
    """Logs the slot's state at start and each new warning (every minute);
    with synchronous, whether the server waits for the receiver at all."""

    def __init__(self, dsn: str, slot: str, synchronous: bool, log: Log) -> None:
        self.dsn = dsn
        self.slot = slot
        self.synchronous = synchronous
        self.log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pitr-slot", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        if self.synchronous:
            self._check_synchronous()
        described = False  # the state is logged once, when first seen
        warned: str | None = None
        while True:
            try:
                state = slot_state(self.dsn, self.slot)
            except Exception:  # the server is down: the receiver's restarts say so
                state = None
            if state is not None:
                if not described:
                    self.log(f"slot {self.slot}: {state.describe()}")
                    described = True
                warning = state.warning()
                if warning is not None and warning != warned:
                    self.log(f"slot {self.slot}: warning: {warning} ({state.describe()})")
                warned = warning
            if self._stop.wait(CHECK_INTERVAL if described else FIRST_INTERVAL):
                return

    def _check_synchronous(self) -> None:
        try:
            names = synchronous_names(self.dsn)
        except Exception as e:
            self.log(f"synchronous: cannot read synchronous_standby_names: {e}")
            return
        if self.slot not in re.findall(r"\w+", names) and "*" not in names:
            self.log(
                f"synchronous: synchronous_standby_names ({names!r}) does not name "
                f"{self.slot}: commits do not wait for the stream (see docs/postgres.md)"
            )
