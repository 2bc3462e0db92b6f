"""SQLite databases as of an instant in a private temporary directory, for
export and partial restore; removed afterwards whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from catalog.repository import Repository
from catalog.scratchdir import ScratchDir
from recovery.sqlite.plan import DbPlan
from recovery.sqlite.restore import write_database


@contextmanager
def restored_copies(repo: Repository, plans: list[DbPlan]) -> Iterator[dict[str, Path]]:
    """Each planned database written (and integrity-checked) under a fresh
    0700 directory of TMPDIR: {database name: its file}."""
    scratch = ScratchDir("pitr-rows-")
    try:
        yield {plan.db: write_database(repo, plan, scratch.path / plan.db).path for plan in plans}
    finally:
        scratch.remove()
