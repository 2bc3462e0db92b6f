"""How a PostgreSQL source is connected to pitr: the archive_command to
give it (printed by `pitr init` and `pitr archive-command`) and a warning
from `pitr check` when the server runs a slower form than it could."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pitr.config import ConfigError

if TYPE_CHECKING:
    from pitr.context import AppContext
    from pitr.kinds.postgres import PostgresConfig


def recommended_archive_command(app: AppContext, src: PostgresConfig) -> str:
    """`pitr wal-push`, behind a shell test that skips segments the daemon
    has already archived (no Python started for those)."""
    from archiver.postgres.walmarks import archive_command, mark_tag

    if not app.config.path:
        raise ConfigError("archive-command: the configuration must be a file (--config FILE)")
    script = Path(sys.executable).parent / "pitr"  # the console script beside this interpreter
    pitr = str(script) if script.exists() else os.path.abspath(sys.argv[0])
    config = os.path.abspath(app.config.path)
    return archive_command(pitr, config, src.name, mark_tag(app.config.repository.url, src.name))


def setup_lines(app: AppContext, src: PostgresConfig) -> list[str]:
    if not app.config.path:
        return []  # the settings name the config file: there is none to name
    line = recommended_archive_command(app, src).replace("'", "''")
    return [
        f"{src.name}: in postgresql.conf (archive_mode needs a restart):",
        "  wal_level = replica",
        "  archive_mode = on",
        f"  archive_command = '{line}'",
        f"{src.name}: and run `pitr daemon`: it archives each segment as PostgreSQL writes it, "
        "so that archive_command finds it done",
    ]


def setup_warnings(app: AppContext, src: PostgresConfig) -> list[str]:
    """archive_mode off, or an archive_command slower than the recommended
    one; nothing when the server cannot be asked right now."""
    import psycopg

    try:
        with psycopg.connect(src.dsn, connect_timeout=5, autocommit=True) as conn:
            mode, command = conn.execute(
                "SELECT current_setting('archive_mode'), current_setting('archive_command')"
            ).fetchone() or ("", "")
    except psycopg.Error:
        return []
    if mode == "off":
        return [f"{src.name}: archive_mode is off: PostgreSQL archives no WAL"]
    if not app.config.path or command == recommended_archive_command(app, src):
        return []
    if "wal-push" in command and "pitr_mark=" not in command:
        return [
            f"{src.name}: archive_command runs plain `pitr wal-push`; "
            f"`pitr archive-command --source {src.name}` prints the faster form"
        ]
    return []
