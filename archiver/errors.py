"""Errors of the capture side. Each class carries its documented exit code
(see INTERFACE.md); the command line reads `exit_code`."""


class ArchiverError(Exception):
    exit_code = 5  # a server or the store could not be used


class SourceUnreachable(ArchiverError):
    """The PostgreSQL or Redis server of a source could not be reached."""

    exit_code = 5


class BadInput(ArchiverError):
    """A path or name given to a command is not what it must be."""

    exit_code = 2


class WalIntegrityError(ArchiverError):
    """A WAL file is truncated, foreign (other system identifier or version),
    or differs from what is archived under its name."""

    exit_code = 4


class BackupFailed(ArchiverError):
    """A base backup or snapshot could not be completed as asked."""

    exit_code = 3
