"""Where flowgit keeps its derived cache (ADR 0012): in the git dir, never in the work tree.
Tests that want a cold read drop it here, so a move of the cache changes this module only."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

KINDS = ("cache", "plans")  # this work tree's (.git/flowgit/cache), the shared plan index


def cache_dirs(root: Path) -> list[Path]:
    """The derived cache of the main work tree at `root`: its own store and the plan index."""
    return [root / ".git" / "flowgit" / kind for kind in KINDS]


def drop_derived(root: Path) -> None:
    """Every derived-cache file of the repository at `root` (its main work tree): the next
    read is cold. The key and what `validate` and `diff` keep (`checked/`) stay."""
    for folder in cache_dirs(root):
        shutil.rmtree(folder, ignore_errors=True)


def ignore_derived() -> Callable[[str, list[str]], list[str]]:
    """`shutil.copytree(..., ignore=ignore_derived())`: the copy starts cold."""
    def ignore(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if n in KINDS] if Path(directory).name == "flowgit" \
            and Path(directory).parent.name == ".git" else []
    return ignore
