"""pitr wal-prefetch (hidden): started by wal-fetch during a restore."""

from pitr.commands.wal_fetch import prefetch_command as command

__all__ = ["command"]
