"""pitr demo: the whole story on embedded defaults with throwaway servers."""

from __future__ import annotations

import os
import sys

import click


@click.command(name="demo")
@click.option("--dir", "workdir", metavar="DIR", help="Work here instead of a new temp directory.")
@click.option("--keep", is_flag=True, help="Keep the servers' files and the repository.")
def command(workdir: str | None, keep: bool) -> None:
    """Archive, back up, damage and restore throwaway PostgreSQL and Redis servers
    and a SQLite database."""
    if os.geteuid() == 0:
        # PostgreSQL will not run as root: play the whole story as postgres,
        # the user that would run archive_command on a real server.
        argv = [sys.executable, "-m", "pitr", "demo"]
        argv += ["--dir", os.path.abspath(workdir)] if workdir else []
        argv += ["--keep"] if keep else []
        os.chdir("/")  # the caller's directory may be closed to postgres (/root)
        os.execvp("runuser", ["runuser", "-u", "postgres", "--", *argv])
    from pitr.demo import run_demo

    run_demo(workdir, keep, click.echo)
