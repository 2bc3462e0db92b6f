"""The console script's entry point.

`pitr wal-push` runs once per WAL segment. When a daemon serves the
repository, the whole job is one question over a socket (pitr.walpush_door);
without one, the segment is pushed here. Neither path imports click or
anything heavy, and neither do restore_command's and recovery_end_command's
answers that need no repository. Every other command line goes to the full
CLI.
"""

from __future__ import annotations

import os
import sys

# What pitr creates (the repository's objects and records, the catalog, the
# spool, sockets) holds table rows and keys: private to its owner, whatever
# umask the caller had.
PRIVATE_UMASK = 0o077


def main() -> None:
    os.umask(PRIVATE_UMASK)
    config, args = _global_options(sys.argv[1:])
    command, args = (args[0], args[1:]) if args else ("", [])
    if command == "wal-push":
        _push(config, args)
    elif command == "wal-fetch":
        fetched = _fetch(config, args)
        if fetched is not None:
            sys.exit(fetched)
    elif command == "wal-prefetch" and _removed_spool(args):
        sys.exit(0)
    from pitr.cli import main as cli_main

    cli_main()


def _global_options(args: list[str]) -> tuple[str | None, list[str]]:
    """(--config FILE, the rest): the one option the fast paths accept
    before the command; anything else before it goes to the full CLI."""
    if len(args) >= 2 and args[0] == "--config":
        return args[1], args[2:]
    return None, args


def _push(config: str | None, args: list[str]) -> None:
    """`wal-push [--source S] PATH` answered by a daemon, if one answers,
    else pushed here; anything else about it goes to the full CLI."""
    from pitr.walpush_door import PushRequest, ask_daemon, exit_with, push_here

    request = PushRequest.from_args(config, args)
    if request is not None:
        answer = ask_daemon(request)
        if answer is not None:
            exit_with(answer)
        from pitr.context import AppContext

        sys.exit(push_here(AppContext(config), request))


def _fetch(config: str | None, args: list[str]) -> int | None:
    """wal-fetch's exit code when it needs no repository, else None."""
    if len(args) >= 2 and args[-2] == "00000001.history":
        # Timeline 1 has no history file (PostgreSQL writes one only for
        # timelines it starts after the first), yet recovery asks for it when
        # it picks a new timeline, while promotion waits.
        return 1  # "not archived"
    return _answer_from_spool(config, args)


def _answer_from_spool(config: str | None, args: list[str]) -> int | None:
    """`wal-fetch [--source S] --spool DIR NAME DEST` answered from the
    prefetch spool: 0 served, 1 not archived (the spool's index says where a
    local repository keeps its records); None sends the call to the full CLI."""
    if len(args) < 4 or "--spool" not in args[:-2]:
        return None
    options, name, dest = args[:-2], args[-2], args[-1]
    if options[-1] == "--spool":
        return None
    spool = options[options.index("--spool") + 1]
    from recovery.postgres.spool import never_archived, serve

    try:
        if serve(spool, name, dest):
            start_prefetcher(config, spool)
            return 0
        return 1 if never_archived(spool, name) else None
    except OSError:
        return None


def _removed_spool(args: list[str]) -> bool:
    """`wal-prefetch --remove --spool DIR`, PostgreSQL's recovery_end_command:
    it holds up promotion, so no full CLI start."""
    if len(args) != 3 or args[:2] != ["--remove", "--spool"]:
        return False
    from recovery.postgres.spool import remove

    remove(args[2])
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
