"""Exit codes of the contract (docs/reference.md) and which errors map to which."""

from __future__ import annotations

OK = 0
NOT_FOUND = 1  # wal-fetch: the file is not in the archive
USAGE = 2  # usage or configuration error
UNMET = 3  # the request cannot be met as asked
INTEGRITY = 4  # hash mismatch, conflicting content, foreign system
STORAGE = 5  # storage or server unreachable after retries
FETCH_FATAL = 128  # wal-fetch: storage or integrity error, PostgreSQL must stop
INTERRUPTED = 130  # Ctrl-C or an aborted prompt


def exit_code_for(error: BaseException) -> int | None:
    """The documented exit code of a known error, or None for a bug."""
    from catalog import errors as ce
    from pitr.config import ConfigError

    if isinstance(error, ConfigError | ce.FormatError | ce.KeyError_):
        return USAGE
    if isinstance(error, ce.IntegrityError):
        return INTEGRITY
    if isinstance(error, ce.StorageError):
        return STORAGE
    # archiver and recovery errors carry their own code.
    code = getattr(error, "exit_code", None)
    return code if isinstance(code, int) else None
