"""`claim` and `next` never hand out a task whose `files` overlap a live claim, as `run` does
(issue 15): one rule in the pure core (`flowgit.core.overlap`)."""
from __future__ import annotations

from helpers import Repo
from helpers.clock import WallClock

from flowgit.core.fold import TaskRecord, evaluate
from flowgit.core.model import Plan
from flowgit.core.overlap import files_held, free_order, waiting_on_files

PLAN = """\
id: f
title: Files
tasks:
  - {id: a, title: A, priority: high, files: [src/x.py]}
  - {id: b, title: B, priority: medium, files: [src/y.py, src/x.py]}
  - {id: c, title: C, priority: low, files: [docs/z.md]}
"""


def test_the_core_rule() -> None:
    plan = Plan.from_dict({"id": "f", "title": "F", "tasks": [
        {"id": "a", "title": "A", "files": ["x"]}, {"id": "b", "title": "B", "files": ["y", "x"]},
        {"id": "c", "title": "C"}]}, "f")
    now = 1_800_000_000.0
    free = evaluate(plan, {}, [], now)
    assert free_order(plan, free) == list(free.order) and files_held(plan, free) == frozenset()
    held = evaluate(plan, {"a": TaskRecord(status="claimed", worker="w", lease_until=now + 60)}, [], now)
    assert files_held(plan, held) == {"x"}
    assert "b" not in free_order(plan, held) and "c" in free_order(plan, held)
    assert waiting_on_files(plan, held) == ["b (x held by a)"]
    assert free_order(plan, free, also_held={"y"}) == ["a", "c"]  # reserved by a caller, not yet claimed
    expired = evaluate(plan, {"a": TaskRecord(status="claimed", worker="w", lease_until=now - 1)}, [], now)
    assert files_held(plan, expired) == frozenset()  # a lease that ran out holds nothing


def test_claim_and_next_pass_over_tasks_on_held_files(repo: Repo) -> None:
    repo.plan("f", PLAN)
    assert repo.ok("claim", "f", "--worker", "w1", "--json").json["task"] == "f/a"
    assert repo.ok("next", "f", "--json").json["task"] == "f/c"  # b shares src/x.py with a
    assert repo.ok("claim", "f", "--worker", "w2", "--json").json["task"] == "f/c"
    res = repo.run("next", "f")
    assert res.code == 3 and "b (src/x.py held by a)" in res.err
    res = repo.run("claim", "--worker", "w3", "--json")
    assert res.code == 3 and res.json["error"]["code"] == "nothing_ready"
    assert "their files are held: b (src/x.py held by a)" in res.json["error"]["message"]
    repo.ok("done", "f/a", "--worker", "w1")
    assert repo.ok("claim", "--worker", "w3", "--json").json["task"] == "f/b"


def test_claiming_a_named_task_on_held_files_is_refused(repo: Repo) -> None:
    repo.plan("f", PLAN)
    repo.ok("claim", "f/b", "--worker", "w1")
    before = repo.commits()
    res = repo.run("claim", "f/a", "--worker", "w2")
    assert res.code == 1
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert lines == [lines[0]] and "cannot claim f/a: its file src/x.py is held by f/b (claimed by w1" in lines[0]
    assert repo.commits() == before
    repo.ok("release", "f/b", "--worker", "w1")
    repo.ok("claim", "f/a", "--worker", "w2")


def test_an_expired_lease_frees_the_files(repo: Repo, wall_clock: WallClock) -> None:
    repo.plan("f", PLAN)
    repo.ok("claim", "f/a", "--worker", "w1", "--lease", "60")
    assert repo.run("claim", "f/b", "--worker", "w2").code == 1
    wall_clock.advance(120)
    assert repo.ok("next", "f", "--json").json["task"] == "f/a"  # ready again, first by priority
    repo.ok("claim", "f/b", "--worker", "w2")
