"""Errors of the restore side. Each class carries its documented exit code
(see INTERFACE.md); the command line reads `exit_code`."""


class RecoveryError(Exception):
    exit_code = 5


class PlanError(RecoveryError):
    """The target cannot be reached from what is archived (says why, with the window)."""

    exit_code = 3


class TargetNotEmpty(RecoveryError):
    """The restore target holds data and --force was not given."""

    exit_code = 3


class RestoreInputError(RecoveryError):
    """Something the restore was handed is unusable (paths, names)."""

    exit_code = 2
