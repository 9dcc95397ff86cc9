"""Named points where a test can kill flowgit (SIGKILL, no cleanup) to prove that the next
ordinary command recovers. Honoured only when FLOWGIT_TESTING=1 is set as well, so that no
user's environment can trigger one by accident."""
from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("FLOWGIT_CRASH_AT") == name and os.environ.get("FLOWGIT_TESTING") == "1":
        os.kill(os.getpid(), signal.SIGKILL)


def armed(name: str) -> bool:
    """Whether the test asked to die at `name` (for a point that needs a set-up first)."""
    return os.environ.get("FLOWGIT_CRASH_AT") == name and os.environ.get("FLOWGIT_TESTING") == "1"
