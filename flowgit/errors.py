"""One error root. Each error carries its exit code (CLI.md) and a one-line message."""
from __future__ import annotations

EXIT_OK = 0
EXIT_USER = 1
EXIT_USAGE = 2
EXIT_NOTHING = 3
EXIT_RACE = 4


class FlowError(Exception):
    """An error the user can act on: one line naming the file, line or task, and what to do."""

    exit_code = EXIT_USER
    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidFile(FlowError):
    code = "invalid_file"


class NotFound(FlowError):
    code = "not_found"


class IllegalTransition(FlowError):
    code = "illegal_transition"


class LostLease(FlowError):
    code = "lost_lease"


class GitError(FlowError):
    code = "git"


class UsageError(FlowError):
    exit_code = EXIT_USAGE
    code = "usage"


class NothingToDo(FlowError):
    exit_code = EXIT_NOTHING
    code = "nothing_ready"


class RaceLost(FlowError):
    exit_code = EXIT_RACE
    code = "race_lost"
