"""The registry of source kinds: the one place that names them.

Adding a kind is a module here (pitr/kinds/<kind>.py, its SourceKind), its
folders in archiver/ and recovery/, and one line below. Modules load only
when a kind is looked up, so `pitr wal-push` pays for none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from pitr.configfile import ConfigError

if TYPE_CHECKING:
    from pitr.kinds.base import SourceKind

KINDS = {
    "postgres": "pitr.kinds.postgres",
    "redis": "pitr.kinds.redis",
    "sqlite": "pitr.kinds.sqlite",
}


def names() -> list[str]:
    return list(KINDS)


def get(kind: str) -> SourceKind:
    module = KINDS.get(kind)
    if module is None:
        raise ConfigError(f"unknown source kind {kind!r} (known: {', '.join(KINDS)})")
    found: SourceKind = importlib.import_module(module).KIND
    return found
