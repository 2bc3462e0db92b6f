"""The console script's entry point.

`pitr wal-push` runs once per WAL segment. When a daemon serves the
repository, the whole job is one question over a socket, so that case is
recognised here without importing click or anything heavy; every other
command line goes to the full CLI.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself costs milliseconds at every start
if TYPE_CHECKING:
    from typing import Any


def main() -> None:
    args = sys.argv[1:]
    if _removed_spool(args):
        sys.exit(0)
    if _never_archived(args):
        sys.exit(1)  # wal-fetch's "not archived"
    fetched = _answer_from_spool(args)
    if fetched is not None:
        sys.exit(fetched)
    request = _wal_push_request(args)
    if request is not None:
        config_path, source, path = request
        answer = _ask_daemon(config_path, source, path)
        if answer is not None:
            if answer.get("ok"):
                sys.exit(0)
            sys.stderr.write(f"pitr: {answer.get('error', 'the daemon refused')}\n")
            sys.exit(int(answer.get("exit_code", 5)))
    from pitr.cli import main as cli_main

    cli_main()


def _wal_push_request(args: list[str]) -> tuple[str | None, str | None, str] | None:
    """(config, source, path) for `[--config F] wal-push [--source S] PATH`, else None."""
    config = source = None
    if len(args) >= 2 and args[0] == "--config":
        config, args = args[1], args[2:]
    if not args or args[0] != "wal-push":
        return None
    args = args[1:]
    if len(args) >= 2 and args[0] == "--source":
        source, args = args[1], args[2:]
    if len(args) != 1 or args[0].startswith("-"):
        return None
    return config, source, args[0]


def _answer_from_spool(args: list[str]) -> int | None:
    """`[--config F] wal-fetch [--source S] --spool DIR NAME DEST` answered
    from the prefetch spool: 0 served, 1 not archived (the spool's index says
    where a local repository keeps its records); None sends the call to the
    full CLI."""
    config = args[1] if len(args) >= 2 and args[0] == "--config" else None
    rest = args[2:] if config else args
    if len(rest) < 5 or rest[0] != "wal-fetch" or "--spool" not in rest[1:-2]:
        return None
    options = rest[1:-2]
    spool = options[options.index("--spool") + 1] if options[-1] != "--spool" else None
    if spool is None:
        return None
    from recovery.postgres.spool import never_archived, serve

    try:
        if serve(spool, rest[-2], rest[-1]):
            start_prefetcher(config, spool)
            return 0
        return 1 if never_archived(spool, rest[-2]) else None
    except OSError:
        return None


def _never_archived(args: list[str]) -> bool:
    """`wal-fetch ... 00000001.history DEST`: timeline 1 has no history file
    (PostgreSQL writes one only for timelines it starts after the first), yet
    recovery asks for it when it picks a new timeline, while promotion waits."""
    rest = args[2:] if len(args) >= 2 and args[0] == "--config" else args
    return len(rest) >= 3 and rest[0] == "wal-fetch" and rest[-2] == "00000001.history"


def _removed_spool(args: list[str]) -> bool:
    """`[--config F] wal-prefetch --remove --spool DIR`, PostgreSQL's
    recovery_end_command: it holds up promotion, so no full CLI start."""
    rest = args[2:] if len(args) >= 2 and args[0] == "--config" else args
    if len(rest) != 4 or rest[:3] != ["wal-prefetch", "--remove", "--spool"]:
        return False
    from recovery.postgres.spool import remove

    remove(rest[3])
    return True


def start_prefetcher(config_path: str | None, spool: str) -> None:
    """A detached `pitr wal-prefetch` unless one already runs for this spool."""
    from recovery.postgres.spool import prefetcher_running

    if prefetcher_running(spool):
        return
    import subprocess

    argv = [sys.executable, "-m", "pitr"]
    argv += ["--config", config_path] if config_path else []
    argv += ["wal-prefetch", "--spool", spool]
    subprocess.Popen(
        argv,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _ask_daemon(config_path: str | None, source: str | None, path: str) -> dict[str, Any] | None:
    from pitr.configfile import find_config_path
    from pitr.daemon_client import OK_ANSWER, ask_raw, config_identity, config_socket_path

    found = find_config_path(config_path, os.environ)
    if found is None:
        return None  # the full CLI reports it
    path = os.path.abspath(path)
    identity = config_identity(found, os.environ)
    if identity is not None:
        # A daemon of this very config file answers on a name derived from it.
        line = _push_line(identity, source, path)
        raw = ask_raw(config_socket_path(identity), line) if line else None
        if raw == OK_ANSWER:
            return {"ok": True}
        if raw is not None:
            import json

            answer = json.loads(raw)
            if not answer.get("retry_by_url"):
                return answer if isinstance(answer, dict) else None
    return _ask_daemon_by_url(found, source, path)


def _push_line(identity: str, source: str | None, path: str) -> bytes | None:
    from pitr.daemon_client import json_string

    fields = [f'"op": "push", "config": {json_string(identity)}', f'"path": {json_string(path)}']
    if source is not None:
        fields.append(f'"source": {json_string(source)}')
    try:
        return ("{" + ", ".join(fields) + "}\n").encode()
    except UnicodeEncodeError:  # an undecodable path: the json module's way handles it
        return None


def _ask_daemon_by_url(found: str, source: str | None, path: str) -> dict[str, Any] | None:
    from pitr.configfile import read_toml, repository_url
    from pitr.daemon_client import ask, socket_path

    try:
        data = read_toml(found)
    except Exception:
        return None  # the full CLI reports it
    url = repository_url(data, os.environ)
    if source is None:
        sources = data.get("sources") or {}
        postgres = [
            n for n, s in sources.items() if isinstance(s, dict) and s.get("kind") == "postgres"
        ]
        source = postgres[0] if len(postgres) == 1 else None
    if url is None or source is None:
        return None
    request = {"op": "push", "repository": url, "source": source, "path": path}
    return ask(socket_path(url), request)
