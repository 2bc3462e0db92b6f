"""One way into `pitr wal-push`: the question to a daemon, built once and
asked at most once per process, and one way from its answer to an exit code.

The console script's fast path (pitr.entry, before click is imported) and
the click command (pitr.commands.wal_push) both come through here. So the
click command, reached because no daemon answered, does not ask again, and
a socket that did not answer is not connected to twice.

Without a daemon nothing is connected to at all: a daemon's socket file
is looked for first (a stat), and one left by a daemon that died is tried
once. Kept free of heavy imports: this runs once per WAL segment.
"""

from __future__ import annotations

import contextlib
import os
import sys

from pitr.configfile import find_config_path
from pitr.daemon_client import (
    OK_ANSWER,
    ask_raw,
    config_identity,
    config_socket_path,
    request_line,
    socket_id,
)

TYPE_CHECKING = False  # typing itself costs milliseconds at every start
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from pitr.context import AppContext

    Answer = dict[str, Any]

STORAGE = 5  # pitr.exitcodes.STORAGE, without importing it

_unanswered: set[tuple[str | None, str | None, str]] = set()  # requests asked in vain
_silent: set[tuple[int, int]] = set()  # sockets that did not answer


class PushRequest:
    """`pitr [--config FILE] wal-push [--source NAME] PATH`, as given
    (the path made absolute: the daemon runs elsewhere)."""

    __slots__ = ("config", "path", "source")

    def __init__(self, config: str | None, source: str | None, path: str) -> None:
        self.config = config
        self.source = source
        self.path = os.path.abspath(path)

    @classmethod
    def from_args(cls, config: str | None, args: list[str]) -> PushRequest | None:
        """The request of wal-push's arguments `[--source NAME] PATH`; None for
        anything else (the full CLI parses it and says what is wrong)."""
        source = None
        if len(args) >= 2 and args[0] == "--source":
            source, args = args[1], args[2:]
        if len(args) != 1 or args[0].startswith("-"):
            return None
        return cls(config, source, args[0])

    def key(self) -> tuple[str | None, str | None, str]:
        return (self.config, self.source, self.path)


def ask_daemon(request: PushRequest) -> Answer | None:
    """A daemon's answer to the push, or None when none answers (the caller
    then pushes itself). Asked by the config file's identity, without parsing
    it; by the repository URL when that finds no daemon of this very config."""
    if request.key() in _unanswered:
        return None
    answer = _ask(request)
    if answer is None:
        _unanswered.add(request.key())
    return answer


def _ask(request: PushRequest) -> Answer | None:
    found = find_config_path(request.config, os.environ)
    if found is None:
        return None  # the full CLI reports it
    identity = config_identity(found, os.environ)
    if identity is not None:
        fields = {"op": "push", "config": identity, "path": request.path}
        if request.source is not None:
            fields["source"] = request.source
        answer = _ask_socket(config_socket_path(identity), fields)
        if answer is not None and not answer.get("retry_by_url"):
            return answer
    return _ask_by_url(found, request)


def _ask_by_url(found: str, request: PushRequest) -> Answer | None:
    """The daemon of the repository, whatever config file it was started
    with: the request names the repository, which that daemon checks."""
    from pitr.configfile import read_toml, repository_url
    from pitr.daemon_client import socket_path

    try:
        data = read_toml(found)
    except Exception:
        return None  # the full CLI reports it
    url = repository_url(data, os.environ)
    source = request.source if request.source is not None else _only_postgres_source(data)
    if url is None or source is None:
        return None  # the full CLI says what is missing
    fields = {"op": "push", "repository": url, "source": source, "path": request.path}
    return _ask_socket(socket_path(url), fields)


def _only_postgres_source(data: dict[str, Any]) -> str | None:
    sources = data.get("sources")
    if not isinstance(sources, dict):
        return None
    names = [n for n, s in sources.items() if isinstance(s, dict) and s.get("kind") == "postgres"]
    return names[0] if len(names) == 1 else None


def _ask_socket(path: str, fields: dict[str, str]) -> Answer | None:
    """The answer on the socket at path; None, without a connect, when there
    is no socket there or it did not answer before in this process."""
    sock = socket_id(path)
    if sock is None or sock in _silent:
        return None
    raw = ask_raw(path, request_line(fields))
    if raw is None:
        _silent.add(sock)
        return None
    if raw == OK_ANSWER:
        return {"ok": True}
    import json

    try:
        answer = json.loads(raw)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def exit_with(answer: Answer) -> NoReturn:
    """Exit as the daemon answered: 0 only for a push it made durable; a
    refusal is its message on stderr and its exit code, kept within 1..125
    (PostgreSQL retries those and stops archiving above)."""
    if answer.get("ok") is True:
        sys.exit(0)
    sys.stderr.write(f"pitr: {answer.get('error', 'the daemon refused')}\n")
    sys.exit(failure_code(answer.get("exit_code")))


def failure_code(code: object) -> int:
    if isinstance(code, int) and not isinstance(code, bool) and 1 <= code <= 125:
        return code
    return STORAGE


def push_here(app: AppContext, request: PushRequest) -> int:
    """Push the segment in this process, when no daemon answered: the store
    alone acknowledges it (catalog.journal), so neither click nor SQLAlchemy
    is loaded; then the segments waiting after it (archiver.postgres.lookahead).
    The exit code and the one-line refusal are the CLI's."""
    from pathlib import Path

    from archiver.postgres.lookahead import already_marked, push_ahead
    from archiver.postgres.walmarks import mark_tag
    from archiver.postgres.walpush import push_wal
    from pitr import exitcodes

    try:
        src = app.source(request.source, "postgres")
        path, tag = Path(request.path), mark_tag(app.config.repository.url, src.name)
        if already_marked(path, tag):
            return exitcodes.OK
        repo = app.repo(lazy_catalog=True)
        push_wal(repo, src.name, path, project=False)
        with contextlib.suppress(Exception):  # acknowledged already; the rest is a bonus
            push_ahead(repo, src.name, path, tag)
    except KeyboardInterrupt:
        sys.stderr.write("pitr: interrupted\n")
        return exitcodes.INTERRUPTED
    except Exception as e:
        code = exitcodes.exit_code_for(e)
        if code is None:
            raise
        sys.stderr.write(f"pitr: {e}\n")
        return code
    return exitcodes.OK
