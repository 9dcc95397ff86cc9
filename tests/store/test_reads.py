"""FlowRepo's read side on a repository built through the CLI: plans, logs, task references
and the state at a given `now` (the store is handed the time; it does not need a clock)."""
from __future__ import annotations

import pytest
from helpers import Repo, log_path

from flowgit.core.events import parse_time
from flowgit.errors import Ambiguous, NotFound
from flowgit.store.repo import FlowRepo

PLAN = """\
id: p
title: Reads
tasks:
  - id: a
    title: A
  - id: b
    title: B
    depends_on: [a]
"""


@pytest.fixture
def planned(repo: Repo) -> Repo:
    repo.plan("p", PLAN)
    repo.plan("q", "id: q\ntitle: Q\ntasks:\n  - id: a\n    title: A\n  - id: only-q\n    title: Q\n")
    return repo


def test_plans_and_their_definitions(planned: Repo) -> None:
    fr = FlowRepo(planned.path)
    assert fr.plan_ids() == ["p", "q"]
    loaded = fr.load_plan("p")
    assert [t.id for t in loaded.plan.tasks] == ["a", "b"]
    assert loaded.path == planned.path / ".flow/plans/p/plan.yaml"
    assert fr.load_plan("p") is loaded  # read once per FlowRepo until forgotten
    fr.forget("p")
    assert fr.load_plan("p") is not loaded
    with pytest.raises(NotFound, match="unknown plan 'nope' .plans: p, q."):
        fr.load_plan("nope")


def test_task_references(planned: Repo) -> None:
    fr = FlowRepo(planned.path)
    assert fr.resolve("p/b") == ("p", "b")
    assert fr.resolve("only-q") == ("q", "only-q")
    with pytest.raises(Ambiguous, match="plans p, q"):
        fr.resolve("a")
    with pytest.raises(NotFound, match="plan p has no task 'zz'"):
        fr.resolve("p/zz")
    with pytest.raises(NotFound, match="no plan has a task 'zz'"):
        fr.resolve("zz")


def test_logs_read_as_written(planned: Repo) -> None:
    planned.ok("claim", "p/a", "--worker", "w1", "--lease", "60")
    planned.ok("start", "p/a", "--worker", "w1")
    fr = FlowRepo(planned.path)
    read = fr.read_log("p", "a")
    assert [e.type for e in read.events] == ["task.claimed", "task.started"]
    assert [e.actor for e in read.events] == ["w1", "w1"]
    assert fr.read_log("p", "b").events == ()
    assert [e.type for e in fr.plan_events("p")][0] == "plan.created"
    assert set(fr.records("p")) == {"a"}


def test_state_at_a_given_time(planned: Repo) -> None:
    claimed = planned.ok("claim", "p/a", "--worker", "w1", "--lease", "60", "--json").json
    until = parse_time(claimed["lease_until"])
    fr = FlowRepo(planned.path)
    before = fr.state("p", now=until - 1)
    assert before.tasks["a"].state == "claimed" and before.tasks["b"].state == "pending"
    after = fr.state("p", now=until + 1)
    assert after.tasks["a"].state == "ready"  # the lease ran out: the task is open again


@pytest.mark.format1
def test_a_log_appended_behind_its_back_is_read_again(planned: Repo) -> None:
    fr = FlowRepo(planned.path)
    assert fr.records("p") == {}
    planned.ok("claim", "p/a", "--worker", "w1")  # another process, as far as `fr` knows
    record = fr.records("p")["a"]
    assert (record.status, record.worker) == ("claimed", "w1")
    assert log_path(planned, "p", "a").exists()
