"""What every command receives: where the repository is and where output goes."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowgit.cli.output import Output

if TYPE_CHECKING:  # imported when a command first needs the repository: not for --help
    from flowgit.store.repo import FlowRepo


def start_dir(repo_dir: Path | None) -> Path:
    """Where the repository is: --repo, else $FLOWGIT_REPO (set for the agents flowgit runs, so
    their commands act on the repository from a task's worktree), else the current directory.
    A task's worktree of `flowgit run` (under .git/flowgit-worktrees/) stands for the work tree
    it belongs to: its own .flow/ is a copy of a commit, where events would be lost."""
    if repo_dir is not None:
        return repo_dir
    env = os.environ.get("FLOWGIT_REPO")
    if env:
        return Path(env)
    cwd = Path(os.getcwd())
    from flowgit import git
    from flowgit.errors import FlowError

    try:
        dirs = git.find_dirs(cwd)
    except FlowError:
        return cwd
    pool = dirs.common_dir / "flowgit-worktrees"
    if dirs.root.is_relative_to(pool) and dirs.common_dir.name == ".git":
        return dirs.common_dir.parent
    if _on_task_branch(dirs):
        return dirs.common_dir.parent
    return cwd


def _on_task_branch(dirs: Any) -> bool:
    """A linked worktree on a task's branch (`flow/PLAN/TASK`, as `run` names them) of a format 2
    repository stands for the main work tree too: a plan edited there (a planner's `task add`)
    goes to the base branch and the state, never to the task's branch (ADR 0011)."""
    import re

    if dirs.git_dir == dirs.common_dir or dirs.common_dir.name != ".git":
        return False
    from flowgit import git
    from flowgit.ids import is_valid_id

    parts = (git.head_branch(dirs) or "").split("/")
    if not (len(parts) == 3 and parts[0] == "flow" and is_valid_id(parts[1]) and is_valid_id(parts[2])):
        return False
    try:
        config = (dirs.common_dir.parent / ".flow" / "config.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return re.search(r"^version:[ \t]*2\b", config, re.M) is not None


@dataclass
class App:
    """What every command receives: where the repository is and where output goes."""

    repo_dir: Path | None = None
    out: Output = field(default_factory=Output)
    _repo: FlowRepo | None = None

    @property
    def repo(self) -> FlowRepo:
        if self._repo is None:
            from flowgit.store.repo import FlowRepo

            self._repo = FlowRepo(start_dir(self.repo_dir))
        return self._repo

    def check_config(self) -> None:
        """Read config.yaml now: a config flowgit refuses stops the command with one line."""
        from flowgit.errors import FlowError

        try:
            repo = self.repo
        except FlowError:
            return  # not a repository: the command says so in its own words
        if repo.flow.is_dir():
            repo.config  # noqa: B018  (read for its check)

    def close(self) -> None:
        if self._repo is not None:
            self._repo.save_cache()

    def advance_after(self, plan_id: str, actor: str) -> list[dict[str, Any]]:
        """The rules' moves after a command's own event, which stands even if they must wait."""
        from flowgit.errors import PlanEdited
        from flowgit.ops.phases import advance_plan

        try:
            return advance_plan(self.repo, plan_id, actor)
        except PlanEdited as exc:
            self.out.warn(exc.message)
            return []

    def warn_linked_plans(self) -> None:
        for name, why in self.repo.left_out_plans().items():
            self.out.warn(f".flow/plans/{name} {why}")
