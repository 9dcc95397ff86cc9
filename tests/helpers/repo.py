"""Real git repositories in tmp dirs, and flowgit driven in-process through `main([...])`."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowgit.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
WEBHOOKS = (ROOT / "flowgit" / "examples" / "webhooks.yaml").read_text()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


class Repo:
    """A git repository with flowgit initialised, driven through `main([...])`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(self, *args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        old = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            code = main(["--repo", str(self.path), *args])
        finally:
            sys.stdout, sys.stderr = old
        return Result(code, out.getvalue(), err.getvalue())

    def ok(self, *args: str) -> Result:
        res = self.run(*args)
        assert res.code == 0, f"flowgit {' '.join(args)} -> {res.code}\n{res.out}\n{res.err}"
        return res

    def proc(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """The same as a separate process (for concurrency, crashes and exit codes)."""
        return subprocess.run([sys.executable, "-m", "flowgit", "--repo", str(self.path), *args],
                              capture_output=True, text=True, **kw)

    def git(self, *args: str) -> str:
        return git(self.path, *args)

    def write(self, rel: str, text: str) -> Path:
        path = self.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def commits(self) -> int:
        """Commits made so far: on HEAD, plus on the state branch in format 2 (ADR 0011)."""
        count = int(self.git("rev-list", "--count", "HEAD"))
        state = subprocess.run(["git", "rev-list", "--count", "refs/heads/flow/state", "--"], cwd=self.path,
                               capture_output=True, text=True)
        return count + (int(state.stdout) if state.returncode == 0 else 0)

    def plan(self, plan_id: str, text: str) -> None:
        """Create a plan from YAML text through `plan new --from`."""
        src = self.path.parent / f"{plan_id}-src.yaml"
        src.write_text(text)
        self.ok("plan", "new", plan_id, "--from", str(src))


def make_git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    (path / "README.md").write_text("hello\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "initial")
    return path
