"""What a command costs besides its work (ADR 0007): a read that finds the derived cache warm
writes nothing back. The state branch's listing of a plan's logs is 1.3 MB of cache at 50,000
tasks; rewriting it after every `status` or `next` was pure overhead."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Repo, make_git_repo
from helpers.cache import cache_dirs

CHAIN = """\
id: chain
title: Chain
tasks:
  - id: a
    title: A
  - id: b
    title: B
    depends_on: [a]
"""

READS = [("status",), ("status", "chain", "--json"), ("next", "chain"), ("events", "chain", "a"),
         ("graph", "chain")]


def cache_files(repo: Path) -> dict[str, tuple[int, int, int]]:
    return {f"{p.parent.name}/{p.name}": (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
            for root in cache_dirs(repo) if root.is_dir() for p in sorted(root.iterdir()) if p.is_file()}


def run(repo: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "flowgit", "--repo", str(repo), *args],
                          capture_output=True, text=True, check=False)
    assert proc.returncode in (0, 3), (args, proc.stderr)  # 3: `next` finds nothing ready


@pytest.mark.parametrize("fmt", ["2", "1"])
def test_warm_reads_rewrite_no_cache_file(tmp_path: Path, fmt: str) -> None:
    r = Repo(make_git_repo(tmp_path / "repo"))
    r.ok("init", "--format", fmt)
    r.plan("chain", CHAIN)
    r.ok("claim", "chain/a", "--worker", "w1")
    for args in READS:  # each read once: the cache is warm for all of them
        run(r.path, *args)
    before = cache_files(r.path)
    assert before, "the reads keep a derived cache"
    for args in READS:
        run(r.path, *args)
        assert cache_files(r.path) == before, args
