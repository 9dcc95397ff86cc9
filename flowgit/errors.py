"""One error root. Each error class carries its exit code (CLI.md) and a stable slug, both from
`CODES`, the one table of what `--json` errors may say; control flow catches classes, never
compares slugs or messages."""
from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar


class ExitCode(IntEnum):
    """CLI.md's exit codes."""

    OK = 0
    USER = 1  # an error the user can fix: one line naming the file, line or task
    USAGE = 2
    NOTHING = 3  # claim/next found no ready task
    RACE = 4  # lost a race that retrying may win
    INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


EXIT_OK = ExitCode.OK
EXIT_USER = ExitCode.USER
EXIT_USAGE = ExitCode.USAGE
EXIT_NOTHING = ExitCode.NOTHING
EXIT_RACE = ExitCode.RACE
EXIT_INTERRUPTED = ExitCode.INTERRUPTED

# slug -> (exit code, when). Scripts match on these slugs (`{"error": {"code": ...}}`): never
# rename one; add a row and a class beside them.
CODES: dict[str, tuple[ExitCode, str]] = {
    "error": (ExitCode.USER, "any other error the user can fix"),
    "invalid_file": (ExitCode.USER, "a file under .flow/ does not parse or breaks a rule"),
    "validation_failed": (ExitCode.USER, "a finish validation command failed, or approving a checkpoint whose validation failed"),
    "not_found": (ExitCode.USER, "no such plan, task or checkpoint"),
    "ambiguous": (ExitCode.USER, "a bare task id names tasks in several plans"),
    "exists": (ExitCode.USER, "the plan or task to create exists already"),
    "illegal_transition": (ExitCode.USER, "the task or plan is not in a state that allows it"),
    "already_claimed": (ExitCode.USER, "the task is claimed by you already"),
    "is_checkpoint": (ExitCode.USER, "a task command named a checkpoint"),
    "needs_approval": (ExitCode.USER, "the plan waits for approval"),
    "phase": (ExitCode.USER, "the plan's phase does not allow it"),
    "stalled": (ExitCode.USER, "resume would halt again at once"),
    "lost_lease": (ExitCode.USER, "the task's lease passed to someone else"),
    "plan_edited": (ExitCode.USER, "plan.yaml has uncommitted edits"),
    "dirty": (ExitCode.USER, "the work tree has changes the command would overwrite or commit"),
    "dirty_changelog": (ExitCode.USER, "CHANGELOG.md has uncommitted changes"),
    "not_initialised": (ExitCode.USER, "no .flow/ in the repository"),
    "no_actor": (ExitCode.USER, "nobody to act as: no --worker, FLOWGIT_ACTOR or user.email"),
    "no_identity": (ExitCode.USER, "git has no author or committer identity to commit with"),
    "unknown_executor": (ExitCode.USER, "config names an executor that is not defined"),
    "no_run": (ExitCode.USER, "a shell task has no run: command"),
    "bad_executor": (ExitCode.USER, "an executor's argv is empty"),
    "missing_extra": (ExitCode.USER, "an optional dependency is not installed"),
    "demo_failed": (ExitCode.USER, "a step of `flowgit demo` failed"),
    "agent_failed": (ExitCode.USER, "an explorer or planner agent wrote nothing valid in its rounds"),
    "git": (ExitCode.USER, "a git command failed"),
    "not_a_repo": (ExitCode.USER, "not inside a git work tree"),
    "no_commit": (ExitCode.USER, "the branch to merge into has no commit"),
    "no_commits": (ExitCode.USER, "the repository has no commits to compare"),
    "detached": (ExitCode.USER, "HEAD is detached"),
    "git_busy": (ExitCode.USER, "a merge, rebase or cherry-pick is in progress"),
    "no_remote": (ExitCode.USER, "the remote to sync with does not exist"),
    "fetch_failed": (ExitCode.USER, "fetching failed for good (no access, no such remote)"),
    "format_mismatch": (ExitCode.USER, "the remote keeps its state in the other format (ADR 0011): migrate one side"),
    "unrelated_state": (ExitCode.USER, "the remote's state branch shares no history with this one"),
    "merge_conflict": (ExitCode.USER, "syncing conflicts outside the event logs"),
    "push_failed": (ExitCode.USER, "pushing failed for good (a hook declined, no access)"),
    "hook_exists": (ExitCode.USER, "another pre-commit hook is installed"),
    "hook_symlink": (ExitCode.USER, "the pre-commit hook is a symlink"),
    "hook_not_file": (ExitCode.USER, "the pre-commit hook is not a regular file"),
    "hook_io": (ExitCode.USER, "the pre-commit hook cannot be written"),
    "lock_symlink": (ExitCode.USER, "the repository lock file is a symlink"),
    "io": (ExitCode.USER, "a file could not be written: a read-only file system, a full disk, "
           "no permission (nothing is left half-written)"),
    "symlink": (ExitCode.USER, "a path flowgit would write through is a symlink"),
    "usage": (ExitCode.USAGE, "a bad option, argument or id"),
    "nothing_ready": (ExitCode.NOTHING, "claim or next found no ready task"),
    "race_lost": (ExitCode.RACE, "lost a race that retrying may win (lock wait, push rejected)"),
    "aborted": (ExitCode.INTERRUPTED, "interrupted (Ctrl-C)"),
}


class FlowError(Exception):
    """An error the user can act on: one line naming the file, line or task, and what to do."""

    code: ClassVar[str] = "error"
    exit_code: ClassVar[ExitCode] = ExitCode.USER

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.code not in CODES:
            raise TypeError(f"{cls.__name__}: slug {cls.code!r} is not in flowgit.errors.CODES")
        cls.exit_code = CODES[cls.code][0]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidFile(FlowError):
    code = "invalid_file"


class ValidationFailed(FlowError):
    code = "validation_failed"


class NotFound(FlowError):
    code = "not_found"


class Ambiguous(FlowError):
    code = "ambiguous"


class AlreadyExists(FlowError):
    code = "exists"


class IllegalTransition(FlowError):
    code = "illegal_transition"


class AlreadyClaimed(IllegalTransition):
    code = "already_claimed"


class IsCheckpoint(IllegalTransition):
    code = "is_checkpoint"


class NeedsApproval(IllegalTransition):
    code = "needs_approval"


class WrongPhase(IllegalTransition):
    code = "phase"


class Stalled(IllegalTransition):
    code = "stalled"


class LostLease(FlowError):
    code = "lost_lease"


class PlanEdited(FlowError):
    code = "plan_edited"


class Dirty(FlowError):
    code = "dirty"


class DirtyChangelog(FlowError):
    code = "dirty_changelog"


class NotInitialised(FlowError):
    code = "not_initialised"


class NoActor(FlowError):
    code = "no_actor"


class NoIdentity(FlowError):
    code = "no_identity"


class UnknownExecutor(FlowError):
    code = "unknown_executor"


class NoRun(FlowError):
    code = "no_run"


class BadExecutor(FlowError):
    code = "bad_executor"


class MissingExtra(FlowError):
    code = "missing_extra"


class AgentFailed(FlowError):
    code = "agent_failed"


class DemoFailed(FlowError):
    code = "demo_failed"


class GitError(FlowError):
    code = "git"


class NotARepo(FlowError):
    code = "not_a_repo"


class NoCommit(FlowError):
    code = "no_commit"


class NoCommits(FlowError):
    code = "no_commits"


class Detached(FlowError):
    code = "detached"


class GitBusy(FlowError):
    code = "git_busy"


class NoRemote(FlowError):
    code = "no_remote"


class FetchFailed(FlowError):
    code = "fetch_failed"


class FormatMismatch(FlowError):
    code = "format_mismatch"


class UnrelatedState(FlowError):
    code = "unrelated_state"


class MergeConflict(FlowError):
    code = "merge_conflict"


class PushFailed(FlowError):
    code = "push_failed"


class HookExists(FlowError):
    code = "hook_exists"


class HookSymlink(FlowError):
    code = "hook_symlink"


class HookNotFile(FlowError):
    code = "hook_not_file"


class HookIO(FlowError):
    code = "hook_io"


class LockSymlink(FlowError):
    code = "lock_symlink"


class IsSymlink(FlowError):
    code = "symlink"


class FileSystemError(FlowError):
    """Not raised: the slug and exit code of an OSError the file system gave (cli.main)."""

    code = "io"


class UsageError(FlowError):
    code = "usage"


class NothingToDo(FlowError):
    code = "nothing_ready"


class RaceLost(FlowError):
    code = "race_lost"


class Interrupted(FlowError):
    code = "aborted"
