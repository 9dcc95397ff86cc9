"""Issue 17: the caches that make 50,000 tasks fast never change an answer.

A generated format 2 repository of 5,000 tasks (bench/scale_gen.py: 10 chains, half of them
claimed and done on flow/state) with a few live claims, a failed task waiting for its retry
and a skip added through the CLI. Every read command's output (as real processes) is compared
with the derived cache cold (removed before each command), warm, and turned off
(`FLOWGIT_NO_CACHE=1`); then after the clock moves past a lease and a retry (the cached
evaluation must see them fall due), after a transition (evaluated again only where it
changed), after a change of the plan, and after compaction."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.cache import drop_derived

ROOT = Path(__file__).resolve().parents[1]
N = 5000
ACTOR = "bench@example.com"
CORE: list[tuple[str, ...]] = [  # what the evaluated state feeds
    ("status", "big", "--json"),
    ("next", "big", "--json"),
    ("graph", "big", "--json"),
    ("task", "show", "big/T-02510", "--json"),
]
READS = CORE + [
    ("status", "--json"),
    ("status", "big"),
    ("graph", "big", "--format", "mermaid"),
    ("events", "big", "T-02490", "--json"),
    ("validate", "--json"),
    ("plan", "list", "--json"),
]


def _scale_gen() -> Any:
    spec = importlib.util.spec_from_file_location("scale_gen", ROOT / "bench" / "scale_gen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scale") / "n5000"
    _scale_gen().generate(N, path)
    return path


@pytest.fixture
def big(generated: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "repo"
    subprocess.run(["cp", "-a", str(generated), str(dest)], check=True)
    return dest


def fg(repo: Path, *args: str, offset: float = 0, cache: bool = True, ok: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWGIT_")}
    env.update({"FLOWGIT_ACTOR": ACTOR, "FLOWGIT_TESTING": "1", "FLOWGIT_TEST_NOW_OFFSET": str(offset)})
    if not cache:
        env["FLOWGIT_NO_CACHE"] = "1"
    proc = subprocess.run([sys.executable, "-m", "flowgit", "--repo", str(repo), *args], env=env,
                          capture_output=True, text=True)
    if ok:
        assert proc.returncode == 0, f"flowgit {' '.join(args)} -> {proc.returncode}\n{proc.stderr}"
    return f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def reads(repo: Path, mode: str, offset: float = 0, which: list[tuple[str, ...]] = CORE,
          at: float | None = None) -> dict[str, str]:
    """Each command run at the wall-clock instant `at` (+ offset), so that the runs of one
    comparison see the same time however long the machine takes between them."""
    out = {}
    for args in which:
        if mode == "cold":
            drop_derived(repo)
        shift = 0.0 if at is None else at - time.time()
        out[" ".join(args)] = fg(repo, *args, offset=offset + shift, cache=mode != "off")
    return out


def agree(repo: Path, offset: float = 0, modes: tuple[str, ...] = ("warm",),
          which: list[tuple[str, ...]] = CORE) -> dict[str, str]:
    """The reads in each mode (warm: the cache as the last command left it) against the reads
    with the cache off; all equal. The reads, cache off."""
    at = time.time()
    truth = reads(repo, "off", offset, which, at)
    for mode in modes:
        got = reads(repo, mode, offset, which, at)
        for cmd, text in truth.items():
            assert got[cmd] == text, f"{cmd} with the cache {mode} differs from the cache off"
    return truth


def claim(repo: Path, *extra: str) -> str:
    task: str = json.loads(fg(repo, "claim", "big", "--json", *extra).split("\n", 1)[1])["task"]
    return task


def test_reads_agree_cold_warm_and_uncached_through_time_writes_and_plan_edits(big: Path) -> None:
    fg(big, "status", "big", "--json")  # the cache, warm
    held = claim(big, "--lease", "600")  # live until the clock moves an hour
    failed = claim(big)
    fg(big, "fail", failed, "--error", "flaky", "--retry")  # retry due within the hour
    done = claim(big)
    fg(big, "done", done)
    fg(big, "fail", "big/T-03005", "--error", "no", "--skip-dependents")
    # two minutes on: the retry (due a second or two after the failure) has fallen due in every
    # run, and no lease runs out; reading at the real time let it fall due between two runs
    # warm twice: the second reads what the first kept (the evaluation, status's output)
    before = agree(big, offset=120, modes=("cold", "warm", "warm"))
    assert f'"worker": "{ACTOR}"' in before["status big --json"]

    # an hour later: the lease ran out and the retry fell due; the warm cache is an hour old
    later = agree(big, offset=3600)
    assert later["status big --json"] != before["status big --json"]
    rows = {t["id"]: t for t in json.loads(later["status big --json"].split("\n", 1)[1])["tasks"]}
    assert rows[held.split("/")[1]].get("interrupted") is True

    # a transition: the next reads evaluate again where it changed
    again = claim(big)
    fg(big, "done", again)
    after = agree(big, modes=("warm", "warm"))
    assert after["next big --json"] != before["next big --json"]

    # a final failure writes the plan log too (the rows are kept: only the task moves)
    fg(big, "fail", claim(big), "--error", "final")
    agree(big)

    # the plan changes (a task added): evaluated afresh
    fg(big, "task", "add", "big", "NEW-1", "--title", "Added", "--dep", "T-02511")
    agree(big)


@pytest.mark.stress
def test_reads_agree_after_compaction(big: Path) -> None:
    """Compaction rewrites logs as snapshots: new blobs, the same records."""
    task = claim(big)
    for _ in range(3):
        fg(big, "heartbeat", task)
    before = agree(big)
    fg(big, "compact", "big", "--keep", "1")
    after = agree(big, modes=("cold", "warm"))
    for cmd, text in before.items():
        if not cmd.startswith("events"):  # the compacted log itself starts with its snapshot
            assert after[cmd] == text, f"{cmd} changed with compaction"


@pytest.mark.stress
def test_every_read_command_agrees_cold_warm_and_uncached(big: Path) -> None:
    held = claim(big, "--lease", "600")
    fg(big, "heartbeat", held)
    agree(big, modes=("cold", "warm"), which=READS)
    agree(big, offset=3600, which=READS)
