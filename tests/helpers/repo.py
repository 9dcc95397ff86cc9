"""Real git repositories in tmp dirs, and flowgit driven in-process through `main([...])`."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from flowgit import clock
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


def isolate_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """A home of the test's own, pinned identities, and none of the caller's git or flowgit
    variables (conftest's `_isolate` does this for every test)."""
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    for key, value in {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
                       "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("FLOWGIT_ACTOR", raising=False)
    monkeypatch.delenv("FLOWGIT_AGENT", raising=False)  # tests run as a person, even inside `flowgit run`
    monkeypatch.delenv("FLOWGIT_REPO", raising=False)  # it would name the repository for every command
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)
    monkeypatch.delenv("GIT_INDEX_FILE", raising=False)
    monkeypatch.delenv(clock.FLAG, raising=False)
    monkeypatch.delenv(clock.OFFSET, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.chdir(home)


# The format the `repo` fixture initialises (FLOWGIT_TEST_FORMAT=2: the state branch; conftest).
TEST_FORMAT = os.environ.get("FLOWGIT_TEST_FORMAT", "1")


# Where the session keeps its initialised repositories (set by conftest's `_templates`); None
# outside pytest, and then `init_repo` initialises in place.
TEMPLATE_ROOT: Path | None = None
_templates: dict[str, Path] = {}


def _template(fmt: str) -> Path | None:
    if TEMPLATE_ROOT is None:
        return None
    if fmt not in _templates:
        with pytest.MonkeyPatch.context() as mp:  # as clean as conftest's `_isolate`, whatever the test set
            isolate_env(mp, TEMPLATE_ROOT / f"home{fmt}")
            r = Repo(make_git_repo(TEMPLATE_ROOT / f"format{fmt}"))
            r.ok("init", "--format", fmt)
        _templates[fmt] = r.path
    return _templates[fmt]


def init_repo(path: Path, fmt: str = "1") -> Repo:
    """`make_git_repo(path)` then `flowgit init --format FMT`, as a copy of the repository the
    session initialised once: git init, a commit and flowgit init are ~0.2 s of processes, which
    a thousand tests would pay again, and a copy ~10 ms."""
    template = _template(fmt)
    if template is None:
        r = Repo(make_git_repo(path))
        r.ok("init", "--format", fmt)
        return r
    return copy_repo(template, path)


def copy_repo(src: Path, dest: Path) -> Repo:
    """A copy of a repository a fixture built once (a clone by `cp -r`: its own caches, key and
    lock); `update-index --refresh` notes the copied files' new inodes as git would."""
    shutil.copytree(src, dest, symlinks=True)
    git(dest, "update-index", "-q", "--refresh")
    return Repo(dest)


def prebuilt(factory: pytest.TempPathFactory, build: Callable[[Repo], object], fmt: str = TEST_FORMAT) -> Path:
    """A repository set up once for a module-scoped fixture (`init_repo` in format `fmt`, then
    `build` on it), in an environment as clean as a test's; each test takes a `copy_repo` of it
    instead of making the same commits again."""
    base = factory.mktemp("prebuilt")
    with pytest.MonkeyPatch.context() as mp:  # a module fixture runs before the test's `_isolate`
        isolate_env(mp, base / "home")
        r = init_repo(base / "repo", fmt)
        build(r)
    return r.path
