"""Child processes that must not outlive pitr."""

from __future__ import annotations

import sys
from collections.abc import Callable


def die_with_parent(signal_number: int) -> Callable[[], None] | None:
    """A preexec_fn for subprocess.Popen: on Linux the child gets
    signal_number when the thread that started it ends, a pitr killed with
    SIGKILL included; elsewhere None (no such guarantee)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork, not in the child
    prctl = libc.prctl
    PR_SET_PDEATHSIG = 1

    def set_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, signal_number)

    return set_death_signal
