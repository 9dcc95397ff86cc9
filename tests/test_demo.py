"""`flowgit demo DIR` (issue 6): the whole pipeline on the built-in webhook plan, end to end,
with real processes and the built-in demo executor."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from helpers import ROOT


def flowgit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowgit", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_demo_runs_the_whole_pipeline(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    t0 = time.monotonic()
    res = flowgit("demo", str(target))
    elapsed = time.monotonic() - t0
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert elapsed < 60, elapsed  # the 15 s is measured on an idle machine (bench/)

    # the plan is complete and every task was done by a `flowgit run` worker
    status = json.loads(flowgit("--repo", str(target), "status", "webhooks", "--json").stdout)
    assert status["phase"] == "complete" and status["progress"] == 100
    assert {t["state"] for t in status["tasks"]} == {"done"}
    assert all(t["worker"] is None or t["worker"].startswith("run-") for t in status["tasks"]), status

    # the demo executor wrote every declared file, for real, and they are committed on main
    plan = yaml.safe_load((ROOT / "flowgit" / "examples" / "webhooks.yaml").read_text())
    files = [f for t in plan["tasks"] for f in t.get("files", [])]
    assert files
    tracked = subprocess.run(["git", "ls-files"], cwd=target, capture_output=True, text=True).stdout.split()
    for rel in files:
        path = target / rel
        assert path.is_file(), rel
        assert "written by the flowgit demo executor" in path.read_text()
        assert rel in tracked
    changelog = target / "CHANGELOG.md"
    assert changelog.is_file() and "webhooks" in changelog.read_text()
    # each task's note is what its executor reported (the prompts of its dependents carry it)
    assert "wrote migrations/00060_webhooks.sql" in changelog.read_text()

    # the checkpoint's validation ran the test command on the produced files and passed
    evs = json.loads(flowgit("--repo", str(target), "events", "webhooks", "--json").stdout)["events"]
    validations = [e for e in evs if e["type"] == "checkpoint.validation"]
    assert validations and all(e["data"]["exit_code"] == 0 for e in validations), validations
    assert any(f in validations[0]["data"]["argv"] for f in files)
    assert any(e["type"] == "checkpoint.approved" for e in evs)
    assert any(e["type"] == "plan.approved" for e in evs)

    # it printed the status, the graph and the plan diff
    assert "phase: complete" in res.stdout
    assert "Critical path" in res.stdout and "T-WH-01" in res.stdout
    # format 2: the diff names the tasks the change worked on (their events name its commits)
    assert "plan diff" in res.stdout and "tasks worked on in this change: webhooks/T-WH-0" in res.stdout
    assert "webhooks is complete" in res.stdout

    # nothing is left behind: one work tree, no task branches, a clean tree
    git = lambda *a: subprocess.run(["git", *a], cwd=target, capture_output=True, text=True).stdout  # noqa: E731
    assert len(git("worktree", "list").splitlines()) == 1
    assert git("branch", "--list", "flow/*").split() == ["flow/state"]  # no task branch left
    assert git("status", "--porcelain").strip() == ""


def test_demo_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine\n")
    res = flowgit("demo", str(tmp_path))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "not empty" in res.stderr and "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
