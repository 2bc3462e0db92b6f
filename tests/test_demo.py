"""`pitr demo`, the README's main command, as a new user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.servers import PITR_BIN, clean_env, run_pitr, wait_until


def postgres_running_in(directory: Path) -> bool:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return str(directory) in out


def test_demo_restores_every_source_to_the_mark_and_cleans_up(shared_tmp: Path) -> None:
    work = shared_tmp / "demo"
    result = run_pitr(["demo", "--dir", str(work)], timeout=600)
    assert "verified: 450 orders, 450 events, 43 keys, 450 SQLite rows as at the mark" in (
        result.stdout
    )
    assert "the damage is gone" in result.stdout
    assert "holds the 450 orders of the mark" in result.stdout  # the partial restore
    assert not work.exists()
    assert not postgres_running_in(work)


def test_demo_cleans_up_on_ctrl_c(shared_tmp: Path) -> None:
    work = shared_tmp / "demo-interrupted"
    proc = subprocess.Popen(
        [str(PITR_BIN), "demo", "--dir", str(work)],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_until(lambda: (work / "repo").exists(), 120, "the demo to create its repository")
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    proc.wait(120)
    assert proc.returncode != 0
    wait_until(lambda: not work.exists(), 60, "the demo to remove its directory")
    assert not postgres_running_in(work)
