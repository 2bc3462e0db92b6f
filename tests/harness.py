"""What the test servers share (tests/pgserver.py, redisserver.py,
s3server.py): directories, ports, waiting, running as postgres, and `pitr`.

Each server runs on 127.0.0.1 with a free port and keeps its files in its
own directory under one per-process base directory (/tmp/pitr-tests-XXXX,
mode 0755, so that the postgres OS user can reach it). Everything started
here is registered and stopped at interpreter exit as a last resort; the
fixtures in conftest.py stop servers as soon as a test ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

PG_BIN = Path(os.environ.get("PITR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
VENV_BIN = Path(sys.executable).parent
PITR_BIN = VENV_BIN / "pitr"

_base_dir: Path | None = None
_live: list[Any] = []  # servers not yet stopped, for the atexit sweep


class ServerError(RuntimeError):
    """A test server failed to start, stop or answer."""


class PitrFailed(AssertionError):
    """`pitr` exited with another code than the test expected."""


# -- small helpers ---------------------------------------------------------


def base_dir() -> Path:
    """This process's directory for test servers, created on first use."""
    global _base_dir
    if _base_dir is None:
        root = os.environ.get("PITR_TEST_BASE", "/tmp")
        _base_dir = Path(tempfile.mkdtemp(prefix="pitr-tests-", dir=root))
        _base_dir.chmod(0o755)
    return _base_dir


def remove_base_dir() -> None:
    global _base_dir
    if _base_dir is not None:
        shutil.rmtree(_base_dir, ignore_errors=True)
        _base_dir = None


def new_dir(prefix: str, mode: int = 0o755, owner: str | None = None) -> Path:
    """A fresh directory under base_dir(), optionally owned by `owner`."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir()))
    path.chmod(mode)
    if owner is not None and os.geteuid() == 0:
        pw = pwd.getpwnam(owner)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.1,
    detail: Callable[[], str] | None = None,
) -> Any:
    """Poll until predicate() is truthy and return its value; raise on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)


def tail(path: Path, n: int) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(lines[-n:])


def as_user(user: str | None, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
    """argv run as `user` through runuser (only needed, and only possible, as root)."""
    args = [os.fspath(a) for a in argv]
    if user is None or os.geteuid() != 0 or pwd.getpwuid(os.geteuid()).pw_name == user:
        return args
    return ["runuser", "-u", user, "--", *args]


def clean_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """os.environ without libpq's PG* variables, plus `extra` (None removes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie (which only waits for its reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def children(pid: int, command: str | None = None) -> list[int]:
    """The pids of pid's children, only those running command when given."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm, _, rest = stat.partition(" (")[2].rpartition(") ")
        fields = rest.split()
        if len(fields) > 1 and fields[1] == str(pid) and command in (None, comm):
            found.append(int(entry.name))
    return found


def _stop_process(proc: subprocess.Popen[Any], sig: int, timeout: float, what: str) -> None:
    """Send sig and wait; SIGKILL and raise when it does not exit in time."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        raise ServerError(f"{what} did not stop within {timeout:g}s; killed it") from None


def spawn_logged(
    argv: Sequence[str | os.PathLike[str]], log_path: Path, cwd: Path, **kwargs: Any
) -> subprocess.Popen[bytes]:
    """Start a server in its own session with its output appended to log_path."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            **kwargs,
        )


class PortBound:
    """Starting a server on a loopback port: spawn it and wait until it is
    ready. When another process took the port between free_port() and the
    server's bind, try again on a new one (not when the port was asked for)."""

    port: int
    _fixed_port: bool
    port_in_use = "in use"  # what the server logs when its bind fails
    start_timeout = 30.0

    def start(self, timeout: float | None = None) -> None:
        if self.running:
            return
        for attempt in range(3):
            self._spawn()
            try:
                self.wait_ready(self.start_timeout if timeout is None else timeout)
                return
            except ServerError:
                if self._fixed_port or attempt == 2 or self.port_in_use not in self.log_tail(20):
                    raise
                self.port = free_port()
                self._port_changed()

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def _spawn(self) -> None:
        raise NotImplementedError

    def wait_ready(self, timeout: float) -> None:
        """Return once the server answers; ServerError when it exited or timed out."""
        raise NotImplementedError

    def log_tail(self, n: int = 40) -> str:
        raise NotImplementedError

    def _port_changed(self) -> None:
        """Called before a retry, once self.port is the new port."""


class ProcessServer(PortBound):
    """A server run as a child process on a loopback port, with its own directory
    and log; registered for the exit sweep until cleaned up."""

    what = "server"  # for messages
    prefix = "server-"  # of its directory
    log_name = "server.log"
    url_form = "http://127.0.0.1:{port}"

    def __init__(self, port: int | None = None) -> None:
        self.workdir = new_dir(self.prefix)
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.log_path = self.workdir / self.log_name
        self._proc: subprocess.Popen[bytes] | None = None
        self._cleaned = False
        _live.append(self)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def url(self) -> str:
        return self.url_form.format(port=self.port)

    def log_tail(self, n: int = 40) -> str:
        return tail(self.log_path, n)

    def stop(self, timeout: float = 30) -> None:
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGTERM, timeout, f"{self.what} on port {self.port}")
            self._proc = None

    def cleanup(self) -> None:
        if self._cleaned:
            return
        try:
            with contextlib.suppress(ServerError):
                self.stop(timeout=10)
        finally:
            self._cleaned = True
            if self in _live:
                _live.remove(self)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(port={self.port})"


@atexit.register
def _sweep() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.cleanup()
    remove_base_dir()


def postgres_ids() -> tuple[int, int]:
    """uid and gid of the postgres OS user."""
    pw = pwd.getpwnam(PG_USER)
    return pw.pw_uid, pw.pw_gid


# -- the pitr command -------------------------------------------------------


def run_pitr(
    args: Sequence[str | os.PathLike[str]],
    config: str | os.PathLike[str] | None = None,
    env: Mapping[str, str | None] | None = None,
    user: str | None = None,
    check: bool | int = True,
    input: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `pitr [--config FILE] ARGS...` and return its text output.

    env adds to (None removes from) this process's environment; user runs it
    as that OS user through runuser (e.g. "postgres", as archive_command
    would). check=True wants exit 0, an int wants that exact code, False
    accepts anything; a mismatch raises with the command's output.
    """
    argv: list[str | os.PathLike[str]] = [PITR_BIN]
    if config is not None:
        argv += ["--config", config]
    argv += list(args)
    proc = subprocess.run(
        as_user(user, argv),
        input=input,
        capture_output=True,
        text=True,
        check=False,
        env=clean_env(env),
        cwd=cwd,
        timeout=timeout,
    )
    want = 0 if check is True else check
    if check is not False and proc.returncode != want:
        raise PitrFailed(
            f"pitr {' '.join(map(str, args))}: exit {proc.returncode}, wanted {want}\n"
            f"--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}"
        )
    return proc


# Where the command lives, for tests that build an archive_command line.
run_pitr.executable = PITR_BIN  # type: ignore[attr-defined]
