"""Issue 17: `retry` of a failed task decides on that task's log alone (a failed task's state
is its own log's, whatever its dependencies are), as done and heartbeat do: at 50,000 tasks it
no longer evaluates the plan (about 520 -> 280 ms of CPU). A blocked task, whose state comes
from its dependencies, and every refusal still read the whole plan, with the same answers."""
from __future__ import annotations

from typing import Any

import pytest
from helpers import Repo, state

from flowgit.store.repo import FlowRepo

PLAN = """\
id: p
title: Retries alone
retry: {max_attempts: 1, base: 1}
tasks:
  - id: a
    title: A
  - id: b
    title: B
    depends_on: [a]
  - id: c
    title: C
    depends_on: [b]
"""


@pytest.fixture
def plan(repo: Repo) -> Repo:
    repo.plan("p", PLAN)
    return repo


def _fail(repo: Repo, task: str) -> None:
    repo.ok("claim", f"p/{task}", "--worker", "w1")
    repo.ok("fail", f"p/{task}", "--worker", "w1", "--error", "boom")


def _spy_whole(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    whole: list[str] = []
    real = FlowRepo.state

    def spied(self: FlowRepo, plan_id: str, *args: Any, **kwargs: Any) -> Any:
        whole.append(plan_id)
        return real(self, plan_id, *args, **kwargs)
    monkeypatch.setattr(FlowRepo, "state", spied)
    return whole


def test_a_failed_task_is_retried_from_its_own_log(plan: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail(plan, "a")
    assert state(plan, "p", "a") == "failed" and state(plan, "p", "b") == "blocked"
    whole = _spy_whole(monkeypatch)
    res = plan.ok("retry", "p/a", "--json")
    assert whole == []
    assert res.json["retried"] == ["p/a"] and res.json["task"] == "p/a" and res.json["phase"] == "execute"
    monkeypatch.undo()
    assert state(plan, "p", "a") == "ready" and state(plan, "p", "b") == "pending"


def test_a_blocked_task_and_the_refusals_read_the_plan(plan: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail(plan, "a")
    whole = _spy_whole(monkeypatch)
    res = plan.ok("retry", "p/c", "--json")  # blocked behind b, behind the failed a
    assert res.json["retried"] == ["p/a"] and whole
    head = plan.git("rev-parse", "HEAD")
    commits = plan.commits()
    for ref, said in (("p/a", "ready"), ("p/b", "pending")):
        res = plan.run("retry", ref)
        assert res.code == 1 and said in res.err and "Traceback" not in res.err, res.err
    assert plan.git("rev-parse", "HEAD") == head and plan.commits() == commits
