"""The gate on the server side (issue 13): the CI workflow a team makes a required check.
The files parse, follow the fork-safe pattern, and name commands that do what they claim,
run here for real on a pull request's branch."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import ROOT, Repo
from ruamel.yaml import YAML

GATE = ROOT / "docs" / "examples" / "flowgit-gate.yml"
COMMENT = ROOT / "docs" / "examples" / "flowgit-gate-comment.yml"


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text())


def runs(workflow: Any) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


def test_the_gate_workflows_parse_and_are_fork_safe() -> None:
    gate, comment = load(GATE), load(COMMENT)
    for path in (GATE, COMMENT):
        text = path.read_text()
        assert "pull_request_target" not in text.replace("`pull_request_target`", ""), path
    assert set(gate["on"]) == {"pull_request"}
    assert gate["permissions"] == {"contents": "read"}
    assert set(comment["on"]) == {"workflow_run"}
    assert comment["on"]["workflow_run"]["workflows"] == [gate["name"]]
    # the commenter never checks out (or runs) the pull request's code
    steps = [s for job in comment["jobs"].values() for s in job["steps"]]
    assert not [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout")]
    assert not [r for r in runs(comment) if "flowgit" in r or "pip" in r]
    # the gate names the commands that check what the hook checks, and the commands
    commands = "\n".join(runs(gate))
    assert 'flowgit validate --base "$BASE"' in commands
    assert 'flowgit diff "$BASE" HEAD --fail-on-commands' in commands
    assert 'flowgit diff "$BASE" HEAD --format markdown' in commands
    # data from the event reaches the shell through the environment, never spliced into a script
    assert "${{" not in commands


PLAN = """\
id: p
title: P
tasks:
  - {id: A, title: a}
"""


@pytest.mark.format1
def test_the_gates_commands_on_a_pull_requests_branch(repo: Repo) -> None:
    repo.plan("p", PLAN)
    repo.ok("claim", "p/A", "--worker", "w")
    repo.git("checkout", "-q", "-b", "pr")
    # a change with nothing to object to: more events, a new task
    repo.ok("task", "add", "p", "B", "--title", "b")
    repo.ok("validate", "--base", "main")
    repo.ok("diff", "main", "HEAD", "--fail-on-commands")
    # a command added: the gate fails until a maintainer has looked (the label)
    plan = repo.path / ".flow/plans/p/plan.yaml"
    plan.write_text(plan.read_text() + f"  - {{id: C, title: c, run: [{sys.executable}, -V]}}\n")
    repo.git("commit", "-q", "--no-verify", "-am", "C runs something")
    res = repo.run("diff", "main", "HEAD", "--fail-on-commands")
    assert res.code == 1 and "tasks[C].run" in res.err
    # an event edited behind the hook's back: the log is not append-only against the base
    log = repo.path / ".flow/plans/p/events/A.jsonl"
    lines = log.read_text().splitlines()
    ev = json.loads(lines[0])
    ev["actor"] = "someone-else"
    log.write_text("\n".join([json.dumps(ev)] + lines[1:]) + "\n")
    repo.git("commit", "-q", "--no-verify", "-am", "rewrite history")
    res = repo.run("validate", "--base", "main")
    assert res.code == 1 and "A.jsonl: event" in res.err and "was edited" in res.err
    # and one dropped
    log.write_text("\n".join(lines[1:]) + "\n")
    repo.git("commit", "-q", "--no-verify", "-am", "drop a claim")
    res = repo.run("validate", "--base", "main")
    assert res.code == 1 and "was removed" in res.err
    assert repo.run("validate", "--base", "no-such-branch").code == 1


def test_a_merge_of_the_base_into_the_branch_stays_append_only(repo: Repo) -> None:
    repo.plan("p", PLAN + "  - {id: B, title: b}\n")
    repo.git("checkout", "-q", "-b", "pr")
    repo.ok("claim", "p/A", "--worker", "w")
    repo.git("checkout", "-q", "main")
    repo.ok("claim", "p/B", "--worker", "v")
    repo.git("checkout", "-q", "pr")
    repo.git("merge", "-q", "--no-edit", "main")  # the merge driver joins the logs
    repo.ok("validate", "--base", "main")
