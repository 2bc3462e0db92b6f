"""Scratch directories of a restore: a live owner's is never swept, a dead
owner's is, whatever killed it; other programs' directories are left alone."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from catalog.scratchdir import OWNER, ScratchDir, sweep

HOLD = """
import sys
from catalog.scratchdir import ScratchDir
d = ScratchDir("pitr-t-", sys.argv[1])
(d.path / "data").write_text("x")
print(d.path, flush=True)
sys.stdin.read()  # until the test closes it or kills us
"""


def _owner(parent: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(parent)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_live_owner_keeps_its_directory_and_a_killed_one_loses_it(tmp_path: Path) -> None:
    proc, path = _owner(tmp_path)
    try:
        assert (path / OWNER).is_file() and (path / "data").is_file()
        assert sweep(tmp_path, "pitr-t-") == []
        assert path.is_dir()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    mine = ScratchDir("pitr-t-", tmp_path)  # making one sweeps the dead
    try:
        assert not path.exists()
        assert sweep(tmp_path, "pitr-t-") == [], "swept a directory this process owns"
        assert mine.path.is_dir()
    finally:
        mine.remove()
    assert list(tmp_path.iterdir()) == []


def test_directories_without_an_owner_file_are_not_pitrs_to_remove(tmp_path: Path) -> None:
    foreign = tmp_path / "pitr-t-foreign"
    foreign.mkdir()
    (foreign / "keep").write_text("y")
    assert sweep(tmp_path, "pitr-t-") == []
    assert (foreign / "keep").read_text() == "y"
