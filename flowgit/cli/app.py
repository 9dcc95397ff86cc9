"""What every command receives: where the repository is and where output goes."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowgit.cli.output import Output
from flowgit.store.repo import FlowRepo


@dataclass
class App:
    repo_dir: Path | None = None
    out: Output = field(default_factory=Output)
    _repo: FlowRepo | None = None

    @property
    def repo(self) -> FlowRepo:
        if self._repo is None:
            self._repo = FlowRepo(self.repo_dir or Path(os.getcwd()))
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
        for name in self.repo.linked_plans():
            self.out.warn(f".flow/plans/{name} is a symlink and was left out: flowgit never follows "
                          "symlinks in .flow/ (make it a real directory)")
