"""The command line. Commands live one per module in pitr.commands and are
imported only when called, so that `pitr wal-push` starts fast."""

from __future__ import annotations

import importlib
import sys

import click

from pitr import __version__, exitcodes

# command name -> module under pitr.commands, in the order --help lists them
COMMANDS = {
    "init": "init",
    "wal-push": "wal_push",
    "archive-command": "archive_command",
    "wal-fetch": "wal_fetch",
    "wal-prefetch": "wal_prefetch",
    "backup": "backup",
    "tail": "tail",
    "daemon": "daemon",
    "mark": "mark",
    "restore": "restore",
    "export": "export",
    "info": "info",
    "report": "report",
    "serve": "serve",
    "check": "check",
    "verify": "verify",
    "expire": "expire",
    "catalog": "catalog_cmd",
    "demo": "demo",
}

SUMMARIES = {
    "init": "Create the repository and catalog named in the config.",
    "wal-push": "archive_command: archive one WAL file.",
    "archive-command": "Print the archive_command line for a source.",
    "wal-fetch": "restore_command: fetch one archived WAL file.",
    "backup": "Take a base backup, keyspace snapshot or SQLite base copy.",
    "tail": "Capture a Redis or SQLite source in the foreground.",
    "daemon": "Run all continuous work of the config.",
    "mark": "Record a named instant to restore to.",
    "restore": "Restore sources to an instant, a mark or another target.",
    "export": "Write a source's data as of an instant or mark.",
    "info": "Sources, backups, recoverable windows and sizes.",
    "report": "Reports: rpo.",
    "serve": "Serve the status page, metrics and health check.",
    "check": "Check WAL chains, stream batches and stored objects.",
    "verify": "Re-hash stored objects.",
    "expire": "Apply retention and remove unreferenced objects.",
    "catalog": "Catalog maintenance: rebuild.",
    "demo": "The whole story on throwaway servers.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUMMARIES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        if module is None:
            return None
        command: click.Command = importlib.import_module(f"pitr.commands.{module}").command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Summaries come from a table so that --help imports no command module.
        with formatter.section("Commands"):
            formatter.write_dl(list(SUMMARIES.items()))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pitr")
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help="Config file (else $PITR_CONFIG, else ./pitr.toml).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """pitr: continuous archiving and point-in-time recovery for PostgreSQL, Redis
    and SQLite."""
    from pitr.context import AppContext

    ctx.obj = AppContext(config_path)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn known errors into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="pitr", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("pitr: aborted", err=True)
        sys.exit(exitcodes.INTERRUPTED)
    except click.UsageError as e:
        # One line, as every other refusal (click's block of usage lines is
        # for --help); the command it was about tells where to look.
        where = e.ctx.command_path if e.ctx is not None else "pitr"
        click.echo(f"pitr: {e.format_message()} (see '{where} --help')", err=True)
        sys.exit(exitcodes.USAGE)
    except click.ClickException as e:
        click.echo(f"pitr: {e.format_message()}", err=True)
        sys.exit(exitcodes.USAGE)
    except KeyboardInterrupt:
        click.echo("pitr: interrupted", err=True)
        sys.exit(exitcodes.INTERRUPTED)
    except Exception as e:
        code = exitcodes.exit_code_for(e)
        if code is None:
            raise
        click.echo(f"pitr: {e}", err=True)
        sys.exit(code)
    sys.exit(0)
