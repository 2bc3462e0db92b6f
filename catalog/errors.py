"""One exception tree for the repository layer.

Messages are lowercase context strings ("get object 3f2a…: failed its hash
check"); the command line turns each class into one line and an exit code.
"""


class CatalogError(Exception):
    """Base of every error raised by the catalog package."""


class ObjectNotFound(CatalogError):
    """A key is not in the object store (a normal answer, not a fault)."""


class IntegrityError(CatalogError):
    """Stored bytes do not match their name, or a fact contradicts the archive."""


class StorageError(CatalogError):
    """The object store or catalog database could not be reached or written."""


class TransientStorageError(StorageError):
    """A storage failure worth retrying (timeouts, throttling, 5xx)."""


class FormatError(CatalogError):
    """The repository was written by another format version or is not a repository."""


class KeyError_(CatalogError):
    """The repository is encrypted and the key is missing or wrong."""


def first_line(error: BaseException | None) -> str:
    """An error's message cut to its first line, for one-line reports
    (drivers such as psycopg add DETAIL and HINT lines)."""
    if error is None:
        return "unknown error"
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
