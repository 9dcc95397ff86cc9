"""The derived cache (in the git dir: `.git/flowgit/`) is this clone's own: a cache file that arrives by `git pull`
(committed by a teammate, by mistake or on purpose) is never read, and `FLOWGIT_NO_CACHE=1`
turns the cache off (ADR 0012)."""
from __future__ import annotations

import hashlib
import marshal
import os
import shutil
from pathlib import Path

import pytest

from flowgit.core.index import task_rows
from flowgit.core.model import Task
from flowgit.store import cache as derived
from helpers import Repo
from helpers.cache import cache_dirs, drop_derived

PLAN = """id: p
title: The plan
tasks:
  - id: a
    title: The real title
  - id: b
    title: Second
    depends_on: [a]
"""


def _forged_index(repo: Repo, header: bytes, cache: Path | None = None) -> None:
    """A plan index for the plan's exact bytes and stats whose task says something else (in
    the plan index's folder, or in `cache`)."""
    path = repo.path / ".flow" / "plans" / "p" / "plan.yaml"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    st = os.stat(path)
    head = {"plan": {"stat": [st.st_size, st.st_mtime_ns, st.st_ino], "hash": digest, "checked": True,
                     "data": {"id": "p", "title": "The plan"}, "external": False, "executors": {}}}
    rows = {"hash": digest,
            "rows": task_rows([Task(id="a", title="FORGED", run=("sh", "-c", "touch pwned")),
                               Task(id="b", title="Second", depends_on=("a",))])}
    cache = cache or repo.path / ".git" / "flowgit" / "plans"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "p.marshal").write_bytes(header + marshal.dumps(head))
    (cache / "p@rows.marshal").write_bytes(header + marshal.dumps(rows))
    for other in ("p@eval", "p@graph"):
        (cache / f"{other}.marshal").unlink(missing_ok=True)


def _titles(repo: Repo) -> str:
    return repo.ok("task", "show", "p/a", "--json").out


def test_a_cache_file_without_this_clones_key_is_never_read(repo: Repo) -> None:
    repo.plan("p", PLAN)
    repo.ok("status", "p", "--json")
    key_file = repo.path / ".git" / "flowgit" / "cache.key"
    own = key_file.read_text().strip()
    assert len(own) == 32
    cached = (repo.path / ".git" / "flowgit" / "plans" / "p.marshal").read_bytes()
    assert cached.startswith(f"flowgit-cache {derived.CACHE_VERSION} ".encode())
    assert own.encode() in cached.split(b"\n", 1)[0]

    # a teammate's clone has another key: what it wrote (and committed) is not this clone's
    other = f"flowgit-cache {derived.CACHE_VERSION} 0.2.0 {'0' * 32}\n".encode()
    _forged_index(repo, other)
    assert "FORGED" not in _titles(repo)
    _forged_index(repo, b"")  # no header at all: marshal never sees it either
    assert "FORGED" not in _titles(repo)

    # the control: this clone's own header is what makes an entry trusted
    _forged_index(repo, cached.split(b"\n", 1)[0] + b"\n")
    assert "FORGED" in _titles(repo)


def test_a_cache_file_from_another_flowgit_version_is_not_read(repo: Repo) -> None:
    repo.plan("p", PLAN)
    repo.ok("status", "p", "--json")
    own = (repo.path / ".git" / "flowgit" / "cache.key").read_text().strip()
    _forged_index(repo, f"flowgit-cache {derived.CACHE_VERSION} 0.0.1 {own}\n".encode())
    assert "FORGED" not in _titles(repo)
    _forged_index(repo, f"flowgit-cache {derived.CACHE_VERSION - 1} 0.2.0 {own}\n".encode())
    assert "FORGED" not in _titles(repo)


def test_no_cache_writes_nothing_and_answers_the_same(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.plan("p", PLAN)
    repo.ok("status", "p", "--json")
    warm = repo.ok("status", "p", "--json").out
    drop_derived(repo.path)
    monkeypatch.setenv(derived.NO_CACHE, "1")
    assert repo.ok("status", "p", "--json").out == warm
    assert [p for d in cache_dirs(repo.path) if d.exists() for p in d.iterdir()] == []


def test_the_pre_commit_hook_refuses_to_commit_the_derived_cache(repo: Repo) -> None:
    repo.plan("p", PLAN)
    repo.ok("status", "p", "--json")
    head = repo.git("rev-parse", "HEAD")
    old = repo.path / ".flow" / ".cache"  # an older flowgit's cache, in the work tree
    old.mkdir()
    shutil.copy(repo.path / ".git" / "flowgit" / "plans" / "p.marshal", old / "p.marshal")
    repo.git("add", "-f", ".flow/.cache")
    res = repo.proc("validate", "--staged")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert ".flow/.cache/" in res.stderr and "git rm -r --cached .flow/.cache" in res.stderr
    assert repo.git("rev-parse", "HEAD") == head
    repo.git("rm", "-r", "-q", "--cached", ".flow/.cache")
    repo.ok("validate", "--staged")
