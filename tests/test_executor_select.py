"""Executor choice by rule and escalation (issue 15): `executors.select` in config.yaml, first
match wins (PlanEx gives gemini plans of at most 3 tasks and codex the larger ones); `status`
and `run` say which executor each task gets and why; `run.escalate_after` stops a run once
more tasks are failed or blocked than it allows."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import Repo

from flowgit.core.model import Config, Plan
from flowgit.errors import InvalidFile
from flowgit.runner.executors import choose

RECORDER = '''\
import json, os, sys
from pathlib import Path
ctl = Path(sys.argv[1])
with open(ctl / "ran.jsonl", "a") as f:
    f.write(json.dumps({"task": os.environ["FLOWGIT_TASK"], "executor": sys.argv[2]}) + "\\n")
if os.environ["FLOWGIT_TASK"].startswith("BAD"):
    sys.exit(1)
Path(os.environ["FLOWGIT_TASK"] + ".txt").write_text("x\\n")
'''

SELECT = """\
  select:
    - {executor: small, max_plan_tasks: 3}
    - {executor: big}
"""


def setup(repo: Repo, tmp_path: Path, extra: str = "", select: str = SELECT) -> Path:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    cfg = repo.path / ".flow/config.yaml"
    text = cfg.read_text().replace("executors: {}\n", "")
    execs = "".join(f"  {name}:\n    argv: {json.dumps([sys.executable, str(script), str(ctl), name])}\n"
                    for name in ("small", "big", "other"))
    cfg.write_text(text + "executors:\n" + execs + select + extra)
    repo.git("commit", "-q", "-am", "test: executors and rules")
    repo.ok("trust")
    return ctl


def new_plan(repo: Repo, plan_id: str, *tasks: str) -> None:
    src = repo.path.parent / f"{plan_id}.yaml"
    src.write_text(f"id: {plan_id}\ntitle: Select\ntasks:\n" + "".join(f"  - {t}\n" for t in tasks))
    repo.ok("plan", "new", plan_id, "--from", str(src))


def ran(ctl: Path) -> dict[str, str]:
    path = ctl / "ran.jsonl"
    return {r["task"]: r["executor"] for r in map(json.loads, path.read_text().splitlines())} \
        if path.exists() else {}


def test_the_first_matching_rule_chooses_and_status_and_run_say_why(repo: Repo, tmp_path: Path) -> None:
    ctl = setup(repo, tmp_path)
    new_plan(repo, "few", "{id: A, title: A}", "{id: B, title: B, executor: other}")
    new_plan(repo, "many", *(f"{{id: M{i}, title: M{i}}}" for i in range(4)))

    st = repo.ok("status", "few", "--json").json
    rows = {t["id"]: (t["executor"], t["executor_why"]) for t in st["tasks"]}
    assert rows == {"A": ("small", "executors.select[0] (plan_tasks 2 <= 3)"),
                    "B": ("other", "task executor:")}
    text = repo.ok("status", "few").out
    assert "executors: small for 1 (executors.select[0] (plan_tasks 2 <= 3)); other for 1 (task executor:)" in text
    many = repo.ok("status", "many", "--json").json
    assert {t["executor"] for t in many["tasks"]} == {"big"}
    assert {t["executor_why"] for t in many["tasks"]} == {"executors.select[1]"}

    res = repo.proc("run", "few", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert out["executors"] == [
        {"task": "few/A", "executor": "small", "why": "executors.select[0] (plan_tasks 2 <= 3)"},
        {"task": "few/B", "executor": "other", "why": "task executor:"}]
    assert "claimed few/A (executor small: executors.select[0] (plan_tasks 2 <= 3))" in res.stderr
    res = repo.proc("run", "many", "-n", "2", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert ran(ctl) == {"A": "small", "B": "other", **{f"M{i}": "big" for i in range(4)}}


def test_run_executor_flag_overrides_the_rules(repo: Repo, tmp_path: Path) -> None:
    ctl = setup(repo, tmp_path)
    new_plan(repo, "few", "{id: A, title: A}")
    res = repo.proc("run", "few", "--executor", "other", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["executors"][0]["why"] == "--executor"
    assert ran(ctl) == {"A": "other"}


CONFIG = {"version": 1, "executors": {"select": [
    {"executor": "claude", "tags": ["docs", "ui"]},
    {"executor": "codex", "min_estimate": 4},
    {"executor": "gemini", "max_files": 1, "max_plan_tasks": 3},
    {"executor": "shell", "min_files": 5},
]}, "default_executor": "demo"}


@pytest.mark.parametrize(("task", "plan_tags", "n_tasks", "expected"), [
    ({"tags": ["ui"]}, [], 1, ("claude", "executors.select[0] (tag ui)")),
    ({}, ["docs"], 1, ("claude", "executors.select[0] (tag docs)")),
    ({"estimate": "1d"}, [], 1, ("codex", "executors.select[1] (estimate 24 >= 4)")),
    ({"estimate": 2, "files": ["a"]}, [], 3,
     ("gemini", "executors.select[2] (files 1 <= 1; plan_tasks 3 <= 3)")),
    ({"files": ["a"]}, [], 4, ("demo", "default_executor")),
    ({"files": ["a", "b", "c", "d", "e"]}, [], 9, ("shell", "executors.select[3] (files 5 >= 5)")),
    ({"executor": "demo", "tags": ["ui"]}, [], 1, ("demo", "task executor:")),
])
def test_rule_conditions(task: dict[str, Any], plan_tags: list[str], n_tasks: int,
                         expected: tuple[str, str]) -> None:
    config = Config.from_dict(CONFIG, "config.yaml")
    tasks = [{"id": "T0", "title": "t", **task}] + [{"id": f"T{i}", "title": "t"} for i in range(1, n_tasks)]
    plan = Plan.from_dict({"id": "p", "title": "p", "tags": plan_tags, "tasks": tasks}, "plan.yaml")
    assert choose(config, plan, plan.tasks[0], None) == expected


@pytest.mark.parametrize(("select", "said"), [
    ({"select": {"executor": "codex"}}, "executors.select: expected a list"),
    ({"select": [{"use": "codex"}]}, "executors.select[0]: unknown key 'use'"),
    ({"select": [{"executor": "nope"}]}, "executors.select[0].executor: unknown executor 'nope'"),
    ({"select": [{"executor": "codex", "max_files": 1.5}]}, "max_files: expected a whole number"),
    ({"select": [{"executor": "codex", "tags": "docs"}]}, "tags: expected a list of tags"),
])
def test_bad_rules_are_refused(select: dict[str, Any], said: str) -> None:
    with pytest.raises(InvalidFile, match=re.escape(said)):
        Config.from_dict({"version": 1, "executors": select}, "config.yaml")


def test_escalation_stops_the_run_once_too_many_tasks_fail(repo: Repo, tmp_path: Path) -> None:
    ctl = setup(repo, tmp_path, extra="run:\n  escalate_after: 1\n", select="")
    cfg = repo.path / ".flow/config.yaml"
    cfg.write_text(re.sub(r"(?m)^default_executor: .*$", "default_executor: small", cfg.read_text()))
    repo.git("commit", "-q", "-am", "small by default")
    new_plan(repo, "p", "{id: BAD1, title: a, priority: high, retry: {max_attempts: 1}}",
             "{id: BAD2, title: b, priority: high, retry: {max_attempts: 1}}",
             "{id: LATER, title: c, priority: low}")
    res = repo.proc("run", "p", "--json", timeout=60)
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert out["failed"] == 2 and out["done"] == 0
    assert "2 tasks of p are failed or blocked (BAD1, BAD2), more than run.escalate_after (1)" in out["stopped"]
    assert "flowgit status p" in out["stopped"]
    assert set(ran(ctl)) == {"BAD1", "BAD2"}  # LATER was not claimed
    # a second run says so at once and claims nothing
    res = repo.proc("run", "p", "--json", timeout=60)
    assert res.returncode == 1 and "more than run.escalate_after" in json.loads(res.stdout)["stopped"]
    assert set(ran(ctl)) == {"BAD1", "BAD2"}
