"""`flowgit retry` (issue 15): a failed task ready again with a fresh attempt budget, recorded as
a `task.retried` event; a blocked task retries the failed tasks behind it; anything else is
refused in one line, with nothing written."""
from __future__ import annotations

import pytest
from helpers import Repo, events, state, states, trailers
from helpers.clock import WallClock

from flowgit.core import events as evmod
from flowgit.core.events import make_event, parse_log
from flowgit.core.fold import reduce_task

PLAN = """\
id: p
title: Retries
retry: {max_attempts: 2, base: 1}
tasks:
  - id: a
    title: A
  - id: b
    title: B
    depends_on: [a]
  - id: c
    title: C
    depends_on: [b]
  - id: x
    title: X
  - id: after-cp
    title: After the checkpoint
    depends_on: [CP]
checkpoints:
  - id: CP
    after: [a]
"""


def one_line(res: object) -> str:
    err = getattr(res, "err")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def fail(repo: Repo, task: str, worker: str = "w1", *extra: str) -> None:
    repo.ok("claim", f"p/{task}", "--worker", worker)
    repo.ok("fail", f"p/{task}", "--worker", worker, "--error", "boom", *extra)


@pytest.fixture
def plan(repo: Repo) -> Repo:
    repo.plan("p", PLAN)
    return repo


def test_retry_makes_a_failed_task_ready_with_one_commit(plan: Repo) -> None:
    repo = plan
    fail(repo, "a")
    assert state(repo, "p", "a") == "failed"
    assert state(repo, "p", "b") == "blocked"
    before = repo.commits()
    res = repo.ok("retry", "p/a", "--worker", "ops", "--json").json
    assert res["task"] == "p/a" and res["retried"] == ["p/a"] and res["commit"]
    assert repo.commits() == before + 1
    assert trailers(repo)["Flow-Event"] == "retried"
    assert trailers(repo)["Flow-Task"] == "a"
    assert state(repo, "p", "a") == "ready"
    assert state(repo, "p", "b") == "pending"
    last = events(repo, "p", "a")[-1]
    assert last["type"] == "task.retried" and last["actor"] == "ops"
    # the attempts go on counting; the task can be claimed and done
    repo.ok("claim", "p/a", "--worker", "w2")
    repo.ok("done", "p/a", "--worker", "w2")
    assert state(repo, "p", "b") == "ready"


def test_retry_gives_a_fresh_attempt_budget(plan: Repo, wall_clock: WallClock) -> None:
    repo = plan
    fail(repo, "x", "w1", "--retry")  # attempt 1 of 2: waits to retry
    assert state(repo, "p", "x") == "retry_wait"
    wall_clock.advance(5)
    repo.ok("claim", "p/x", "--worker", "w1")
    res = repo.ok("fail", "p/x", "--worker", "w1", "--error", "again", "--retry", "--json").json
    assert res["state"] == "failed"  # attempt 2 of 2: exhausted
    repo.ok("retry", "p/x")
    repo.ok("claim", "p/x", "--worker", "w1")
    res = repo.ok("fail", "p/x", "--worker", "w1", "--error", "third", "--retry", "--json").json
    assert res["state"] == "retry_wait" and res["attempt"] == 1  # counted from zero again


def test_a_blocked_task_retries_the_failed_tasks_behind_it(plan: Repo) -> None:
    repo = plan
    fail(repo, "a")
    fail(repo, "x")
    assert states(repo, "p") == {"a": "failed", "b": "blocked", "c": "blocked", "x": "failed",
                                 "after-cp": "blocked"}
    before = repo.commits()
    res = repo.ok("retry", "c", "--json").json  # TASK alone: one plan has it
    assert res["task"] == "p/c" and res["retried"] == ["p/a"]  # x does not block c
    assert repo.commits() == before + 1
    assert state(repo, "p", "a") == "ready" and state(repo, "p", "x") == "failed"
    assert {k: v for k, v in events(repo, "p", "a")[-1]["data"].items() if k != "code"} == {"for": "c"}
    text = repo.ok("retry", "x").out
    assert text.strip() == "retried p/x"


def test_blocked_through_a_checkpoint(plan: Repo) -> None:
    repo = plan
    fail(repo, "a")
    assert state(repo, "p", "after-cp") == "blocked"
    out = repo.ok("retry", "p/after-cp").out
    assert "retried p/a (blocking p/after-cp)" in out
    assert state(repo, "p", "a") == "ready"


@pytest.mark.parametrize("setup, target, words", [
    ("", "p/a", "it is ready: only a failed or blocked task is retried"),
    ("", "p/b", "it is pending on a"),
    ("claim", "p/a", "claimed by w1"),
    ("done", "p/a", "it is done"),
    ("wait", "p/x", "waiting to retry at"),
])
def test_retry_refuses_other_states(plan: Repo, setup: str, target: str, words: str) -> None:
    repo = plan
    if setup == "claim":
        repo.ok("claim", "p/a", "--worker", "w1")
    elif setup == "done":
        repo.ok("claim", "p/a", "--worker", "w1")
        repo.ok("done", "p/a", "--worker", "w1")
    elif setup == "wait":
        fail(repo, "x", "w1", "--retry")
    before = repo.commits()
    res = repo.run("retry", target)
    assert res.code == 1
    line = one_line(res)
    assert line.startswith(f"flowgit: error: cannot retry {target}: ") and words in line, line
    assert repo.commits() == before
    res = repo.run("retry", target, "--json")
    assert res.code == 1 and res.json["error"]["code"] == "illegal_transition"


def test_retry_unknown_task_and_bad_ref(plan: Repo) -> None:
    repo = plan
    res = repo.run("retry", "p/nope")
    assert res.code == 1 and "plan p has no task 'nope'" in one_line(res)
    res = repo.run("retry", "p/../x")
    assert res.code in (1, 2) and "Traceback" not in res.err
    res = repo.run("retry")
    assert res.code == 2


def test_retry_in_a_halted_plan_says_how_to_go_on(repo: Repo) -> None:
    repo.plan("h", "id: h\ntitle: H\ntasks:\n  - {id: a, title: A}\n  - {id: b, title: B, depends_on: [a]}\n")
    repo.ok("claim", "h/a", "--worker", "w1")
    repo.ok("fail", "h/a", "--worker", "w1", "--error", "boom")
    repo.ok("advance", "h")
    assert repo.ok("status", "h", "--json").json["phase"] == "halted"
    res = repo.ok("retry", "h/b")
    assert "plan h is halted: `flowgit resume h` to go on" in res.out
    repo.ok("resume", "h")
    assert repo.ok("claim", "h", "--worker", "w2", "--json").json["task"] == "h/a"


def test_blocked_by_another_plans_failure_is_refused_naming_it(repo: Repo) -> None:
    repo.plan("base", "id: base\ntitle: Base\ntasks:\n  - {id: t, title: T}\n")
    repo.plan("top", "id: top\ntitle: Top\ntasks:\n  - {id: u, title: U, depends_on: [base/t]}\n")
    repo.ok("claim", "base/t", "--worker", "w1")
    repo.ok("fail", "base/t", "--worker", "w1", "--error", "boom")
    assert state(repo, "top", "u") == "blocked"
    res = repo.run("retry", "top/u")
    assert res.code == 1
    assert "blocked by base/t in another plan: retry that with `flowgit retry base/t`" in one_line(res)


def test_the_fold_reads_retried_only_after_a_failure() -> None:
    now = 1_800_000_000.0

    def ev(kind: str, clock: int, actor: str = "w", **data: object) -> evmod.Event:
        return make_event(kind, "p", "a", actor, clock, data, now + clock)

    failed = [ev("task.claimed", 1, lease_until=now + 100), ev("task.failed", 2, error="e")]
    rec = reduce_task(failed + [ev("task.retried", 3, "ops")])
    assert (rec.status, rec.failures, rec.worker, rec.attempts) == ("open", 0, None, 1)
    # a retry that is not after a failure changes nothing (a merged log from another machine)
    held = [ev("task.claimed", 1, lease_until=now + 100), ev("task.retried", 2, "ops")]
    assert reduce_task(held).status == "claimed"
    done = failed + [ev("task.retried", 3), ev("task.claimed", 4, lease_until=now + 100),
                     ev("task.done", 5), ev("task.retried", 6)]
    assert reduce_task(done).status == "done"


def test_a_client_that_does_not_know_retried_keeps_and_ignores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_800_000_000.0
    lines = [make_event("task.claimed", "p", "a", "w", 1, {"lease_until": now + 100}, now),
             make_event("task.failed", "p", "a", "w", 2, {"error": "e"}, now + 1),
             make_event("task.retried", "p", "a", "ops", 3, {"for": "c"}, now + 2)]
    data = "".join(e.to_line() for e in lines).encode()
    assert evmod.check_event(lines[2].to_dict()) == []
    monkeypatch.setattr(evmod, "KNOWN_TYPES", evmod.KNOWN_TYPES - {"task.retried"})
    monkeypatch.delitem(evmod.DATA, "task.retried")
    read = parse_log(data, "a.jsonl", "p", "a")
    assert not read.bad and len(read.events) == 3 and len(read.unknown) == 1
    # and its fold passes over a type it has no rule for, as this one does for a newer type
    newer = make_event("task.someday", "p", "a", "ops", 3, {"x": 1}, now + 2)
    assert reduce_task([*lines[:2], newer]).status == "failed"


def test_validate_accepts_a_log_with_retries(plan: Repo) -> None:
    repo = plan
    fail(repo, "a")
    repo.ok("retry", "p/a")
    res = repo.ok("validate")
    assert "unknown event type" not in res.out + res.err
