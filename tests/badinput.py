"""docs/bad-input.md as data: each row's exit code and message, so that a
test checks what the page says, and the page lists what the tests try."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parent.parent / "docs" / "bad-input.md"
TESTS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Row:
    id: str
    exit: int
    says: str


def rows() -> dict[str, Row]:
    found = {}
    for line in PAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[3].isdigit():
            found[cells[0]] = Row(cells[0], int(cells[3]), cells[4])
    return found


def expect_row(row_id: str, result: Any) -> None:
    """A finished pitr run (stdout, stderr, returncode) answered as the row says."""
    row = rows()[row_id]
    assert result.returncode == row.exit, (row_id, result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (row_id, result.stderr)
    assert lines[0].startswith("pitr: ") and "Traceback" not in result.stderr
    assert row.says.lower() in lines[0].lower(), (row_id, lines[0])


def rows_tried() -> set[str]:
    """Row ids named in the test modules (handed to expect_row, directly or
    as a test's parameter): a quoted string that is a row's id."""
    text = "\n".join(p.read_text() for p in TESTS.glob("test_*.py"))
    return set(re.findall(r"""["']([a-z0-9]+(?:-[a-z0-9]+)+)["']""", text)) & set(rows())
