"""Test helpers in one importable module (pytest puts tests/ on sys.path: pyproject's
`pythonpath`), the way pre-commit keeps its `testing/fixtures.py`: test files import from here,
never from conftest.py, which only holds fixtures.

- `helpers.repo`: git repositories in tmp dirs and `Repo`, flowgit driven through `main([...])`.
- `helpers.state`: what a test reads back (status, event logs, transition commits), in one place
  so that a change of where state is stored changes these functions, not every test.
- `helpers.procs`: polling with a deadline and `flowgit watch` as a real process.
- `helpers.board`: a real `flowgit board` process and plain HTTP requests to it.
- `helpers.clock`: moving flowgit's wall clock instead of sleeping (the `wall_clock` fixture).
"""
from __future__ import annotations

from helpers.procs import (BIN, PY, Watcher, flowgit_proc, stop_cleanly, wait_for,
                           wait_seconds)
from helpers.repo import (ROOT, TEST_FORMAT, WEBHOOKS, Repo, Result, copy_repo, git, init_repo,
                          isolate_env, make_git_repo, prebuilt)
from helpers.state import (events, log_path, log_text, of_type, phase, row, state, state_branch,
                           states, status, subjects, trailers, transitions)

__all__ = [
    "BIN", "PY", "ROOT", "WEBHOOKS", "Repo", "Result", "Watcher", "events", "flowgit_proc", "git",
    "TEST_FORMAT", "copy_repo", "init_repo", "isolate_env", "prebuilt",
    "log_path", "log_text", "make_git_repo", "of_type", "phase", "row", "state", "state_branch", "states", "status",
    "stop_cleanly", "subjects", "trailers", "transitions", "wait_for", "wait_seconds",
]
