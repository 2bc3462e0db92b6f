"""Partial restore and export: rows of a source as they were at a target."""

from __future__ import annotations


def outcome(
    label: str, at_target: int, mode: str, added: int = 0, replaced: int = 0, side: str = ""
) -> str:
    """The line a partial restore prints for a table, the same for every kind."""
    head = f"{label}: {at_target} rows at the target"
    if mode == "side-table":
        return f"{head} written to {side} beside the live table"
    if mode == "insert-missing":
        return f"{head}; {added} missing rows brought back, {at_target - added} already there"
    return (
        f"{head}; {replaced} replaced by their old version, {added} missing rows brought back, "
        f"{at_target - added - replaced} unchanged"
    )
