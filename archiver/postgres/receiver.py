"""PostgreSQL's own pg_receivewal, run and kept running by the daemon.

pg_receivewal speaks the replication protocol, writes the segment it is
receiving as <name>.partial (full-size, zero-filled past what has arrived)
and renames it to <name> once complete. pitr only supervises it: creates
the physical replication slot once, starts the receiver with --synchronous
(each write flushed before it is acknowledged to the server) and starts it
again, with a growing pause, whenever it exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from archiver.errors import ArchiverError
from catalog.children import die_with_parent

Log = Callable[[str], None]
FIRST_PAUSE = 0.5  # before the first restart; doubled each time, up to MAX_PAUSE
MAX_PAUSE = 10.0
HEALTHY_AFTER = 30.0  # a receiver that ran this long starts again without delay
STATUS_INTERVAL = 1  # seconds between the receiver's feedback messages
SLOT_TIMEOUT = 60.0  # the slot creation is one short connection


@dataclass(frozen=True)
class ReceiverSettings:
    program: str  # the pg_receivewal executable
    dsn: str
    directory: str
    slot: str
    application_name: str = "pg_receivewal"  # what synchronous_standby_names lists


def receiver_argv(s: ReceiverSettings) -> list[str]:
    from psycopg.conninfo import make_conninfo

    # The name the server knows the receiver by (synchronous_standby_names).
    dsn = make_conninfo(s.dsn, application_name=s.application_name)
    return [
        s.program,
        f"--directory={s.directory}",
        f"--slot={s.slot}",
        f"--dbname={dsn}",
        "--synchronous",
        "--no-loop",  # a lost connection ends it: the supervisor logs and restarts
        "--no-password",
        f"--status-interval={STATUS_INTERVAL}",
    ]


def create_slot(s: ReceiverSettings) -> None:
    """The physical slot the receiver streams from, unless it exists: the
    server then keeps every segment the receiver has not flushed yet."""
    argv = [s.program, f"--slot={s.slot}", f"--dbname={s.dsn}", "--no-password"]
    argv += ["--create-slot", "--if-not-exists"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=SLOT_TIMEOUT, check=False)
    if done.returncode != 0:
        raise ArchiverError(
            f"pg_receivewal --create-slot {s.slot}: exit {done.returncode}: "
            f"{_last_line(done.stderr)}"
        )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


class ReceiverSupervisor:
    """pg_receivewal in a child process, started again whenever it exits."""

    def __init__(self, settings: ReceiverSettings, log: Log) -> None:
        self.settings = settings
        self.argv = receiver_argv(settings)  # here: psycopg is imported by one thread only
        self.log = log
        self.restarts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, name="pitr-receiver", daemon=True)

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        os.makedirs(self.settings.directory, mode=0o700, exist_ok=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()  # pg_receivewal flushes and exits on SIGTERM
        self._thread.join(30)

    def _run(self) -> None:
        pause = FIRST_PAUSE
        slot_ready = False
        while not self._stop.is_set():
            try:
                if not slot_ready:
                    create_slot(self.settings)
                    slot_ready = True
                ran, code, why = self._receive_once()
            except Exception as e:  # whatever it is, the receiver must come back
                ran, code, why = 0.0, None, str(e) or type(e).__name__
            if self._stop.is_set():
                return
            if slot_ready and _slot_gone(why):
                # Dropped by hand (or invalidated and dropped): one line, a new
                # slot, and whatever the server removed meanwhile is a hole
                # that archive_command may still fill and `pitr check` reports.
                self.log(
                    f"replication slot {self.settings.slot} is gone ({why}): creating it "
                    "again; WAL written while it was missing may not be streamed"
                )
                slot_ready = False
                continue
            pause = FIRST_PAUSE if ran >= HEALTHY_AFTER else pause
            self.restarts += 1
            status = (
                "could not start"
                if code is None
                else f"exited with code {code}"
                if code >= 0
                else f"was killed by signal {-code}"
            )
            self.log(f"pg_receivewal {status} ({why}); restarting in {pause:.1f}s")
            self._stop.wait(pause)
            pause = min(pause * 2, MAX_PAUSE)

    def _receive_once(self) -> tuple[float, int, str]:
        """Run the receiver until it exits: how long it ran, its exit code, its last words."""
        import time

        started = time.monotonic()
        proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            # SIGTERM when the daemon ends, even by SIGKILL: a receiver left behind
            # would hold the slot and the next daemon's receiver could not start.
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        with self._lock:
            self._proc = proc
        if self._stop.is_set():  # stop() came between the check and the start
            proc.terminate()
        assert proc.stderr is not None
        last = _drain(proc.stderr)
        code = proc.wait()
        with self._lock:
            self._proc = None
        return time.monotonic() - started, code, last


def _slot_gone(why: str) -> bool:
    """Whether pg_receivewal's last words say its slot does not exist."""
    return "replication slot" in why and "does not exist" in why


def _drain(stream: IO[str]) -> str:
    """Read the child's messages to the end (so that it never blocks on a full
    pipe); the last non-empty one says why it stopped, with the one before
    when that is only "disconnected" (the refusal came first)."""
    before, last = "", "no message"
    for line in stream:
        if line.strip():
            before, last = last, line.strip()
    if last.endswith("disconnected") and before and before != "no message":
        return f"{before}; {last}"
    return last
