"""What every command receives: where the repository is and where output goes."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from flowgit.output import Output
from flowgit.store import FlowRepo


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

    def close(self) -> None:
        if self._repo is not None:
            self._repo.save_cache()
