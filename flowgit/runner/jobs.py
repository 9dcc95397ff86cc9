"""What a run works on: a claimed task's job, the notes executors leave, and the two ways a
merge can go wrong."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from flowgit.errors import FlowError


@dataclass
class Job:
    plan: str
    task: str
    actor: str
    files: frozenset[str]
    attempt: int
    worktree: Path = Path()
    branch: str = ""
    base: str = ""  # the commit the branch starts from
    has_tree: bool = False
    tree_clean: bool = False  # nothing untracked or ignored left in the worktree
    log: Path = Path()
    note_file: Path = Path()
    started: float = field(default_factory=time.monotonic)
    prompt: str | None = None  # built at claim time, when its blob is recorded
    executor: str = ""  # the executor chosen for it, and why (status and run say so)
    executor_why: str = ""


NOTE_LIMIT = 4000


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def read_note(path: Path) -> str:
    """What the executor left in $FLOWGIT_NOTE_FILE for the tasks that depend on this one
    (their prompts) and the changelog; bounded, and only when it left something."""
    try:
        with open(path, "rb") as f:
            data = f.read(NOTE_LIMIT + 1)
    except OSError:
        return ""
    finally:
        if path != Path():
            path.unlink(missing_ok=True)
    text = data.decode("utf-8", "replace").strip()
    return text if len(text) <= NOTE_LIMIT else text[:NOTE_LIMIT].rstrip() + " ..."


class MergeConflict(FlowError):
    def __init__(self, paths: list[str]) -> None:
        super().__init__("merge conflict")
        self.paths = paths


class RunHalted(FlowError):
    """Nothing this run can do will get past it (the user's files, an invalid .flow/): release
    the task and stop the run with this message."""
