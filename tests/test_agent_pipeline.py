"""The whole pipeline driven by an agent CLI, end to end, through real processes on a fresh
repository: explore -> a person answers -> plan draft (first round invalid, second valid) ->
submit -> approve -> run -n 2 -> checkpoint -> finish. The agent is tests/helpers/fake_agent.py,
which behaves like `claude -p PROMPT`: it reads its prompt, writes files, calls `flowgit`, exits."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import Repo, make_git_repo
from helpers.agents import agent_log, use_fake_agent


def flowgit(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """As a person types it in the repository: a new process, no --repo."""
    return subprocess.run([sys.executable, "-m", "flowgit", *args], cwd=repo, capture_output=True,
                          text=True, timeout=300)


def ok(repo: Path, *args: str) -> dict[str, Any]:
    res = flowgit(repo, *args, "--json")
    assert res.returncode == 0, f"flowgit {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def test_explore_to_finish_driven_by_an_agent_cli(tmp_path: Path, monkeypatch: Any) -> None:
    path = make_git_repo(tmp_path / "repo")
    log = tmp_path / "agent.log"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    assert flowgit(path, "init").returncode == 0
    repo = Repo(path)
    use_fake_agent(repo, approvals=1)  # a person reviews the plan before it runs

    explored = ok(path, "explore", "greet", "--goal", "Greet people in files", "--executor", "fake")
    assert explored["questions"] == ["Q1", "Q2"] and explored["adr"] == "ADR-0001"

    for qid, answer in (("Q1", "a file"), ("Q2", "no")):
        ok(path, "spec", "answer", "greet", qid, answer)

    drafted = ok(path, "plan", "draft", "greet", "--executor", "fake")
    assert drafted["rounds"] == 2 and drafted["round_errors"][0] > 0 and drafted["round_errors"][1] == 0
    assert drafted["phase"] == "draft" and drafted["tasks"] == 3

    assert ok(path, "submit", "greet")["phase"] == "plan_review"
    assert ok(path, "approve", "greet", "--reviewer", "alice")["phase"] == "execute"

    ran = ok(path, "run", "greet", "-n", "2", "--executor", "fake")
    assert ran["done"] == 3 and ran["failed"] == 0 and ran["phase"] == "checkpoint"
    for name in ("greeting.txt", "farewell.txt", "summary.txt"):
        assert (path / name).read_text().startswith("written by T")

    review = ok(path, "checkpoint", "greet", "CP1")
    assert review["checkpoint"] == "CP1"
    assert [v["exit_code"] for v in review["validations"]] == [0]  # the planner's check, approved
    ok(path, "checkpoint", "greet", "CP1", "--approve", "--reviewer", "alice")
    finished = ok(path, "finish", "greet")
    assert finished["phase"] == "complete"

    roles = [c["role"] for c in agent_log(log)]
    assert roles == ["explore", "plan", "plan", "task", "task", "task"]
    tasks = [c for c in agent_log(log) if c["role"] == "task"]
    assert all(c["status_exit"] == 0 and c["repo"] == str(path) for c in tasks)
    plan_calls = [c for c in agent_log(log) if c["role"] == "plan"]
    assert plan_calls[1]["had_errors"] and plan_calls[1]["answered"] == "a file"
    assert subprocess.run(["git", "status", "--porcelain"], cwd=path, capture_output=True,
                          text=True).stdout == ""
    assert flowgit(path, "validate").returncode == 0
