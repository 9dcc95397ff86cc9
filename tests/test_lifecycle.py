"""Task lifecycle: claims, leases, retries, skips, one commit per transition, and safety
around git operations, the repository lock and crashes (issue 3)."""
from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.clock import WallClock
from helpers import Repo, events, git, log_path, row, state, status, trailers, transitions

from flowgit.core import retry
from flowgit.core.events import format_time, make_event, parse_time
from flowgit.core.model import RetryPolicy
from flowgit.store.repo import FlowRepo

TWO = """\
id: p
title: Two independent tasks and a dependent
tasks:
  - id: a
    title: A
  - id: b
    title: B
    depends_on: [a]
  - id: c
    title: C
"""

RETRY = """\
id: r
title: Retried
retry: {strategy: exponential, base: 1, max_attempts: 3}
tasks:
  - id: flaky
    title: Flaky
  - id: after
    title: Needs flaky
    depends_on: [flaky]
  - id: later
    title: Needs after
    depends_on: [after]
"""


# ----- helpers ------------------------------------------------------------------------------------

def claim(repo: Repo, target: str, worker: str, *extra: str) -> dict[str, Any]:
    return repo.ok("claim", target, "--worker", worker, *extra, "--json").json


def error(res: Any) -> str:
    """The one-line error of a failed in-process run (text mode prints it to stderr)."""
    assert res.out == "" or "error" in res.out, res.out
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1, res.err
    assert "Traceback" not in res.err
    return lines[0]


def flow_snapshot(repo: Repo) -> dict[str, bytes]:
    """Every file under .flow/ except the derived cache."""
    out = {}
    for path in sorted((repo.path / ".flow").rglob("*")):
        if ".cache" in path.parts or not path.is_file():
            continue
        out[path.relative_to(repo.path).as_posix()] = path.read_bytes()
    return out


def set_config(repo: Repo, **values: Any) -> None:
    path = repo.path / ".flow" / "config.yaml"
    lines = path.read_text().splitlines()
    for key, value in values.items():
        lines = [ln for ln in lines if not ln.startswith(f"{key}:")]
        lines.append(f"{key}: {value}")
    path.write_text("\n".join(lines) + "\n")
    repo.git("add", ".flow/config.yaml")
    repo.git("commit", "-q", "--no-verify", "-m", "config")


def files_in(repo: Repo, rev: str = "HEAD") -> list[str]:
    """The files a transition commit changed (HEAD: the latest transition, in either format),
    a log's fan-out directory on the state branch left out."""
    if rev == "HEAD":
        rev = transitions(repo)
    names = repo.git("show", "--name-only", "--format=", rev).split()
    return sorted(re.sub(r"/events/[0-9a-f]{2}/", "/events/", name) for name in names)


class HeldLock:
    """The repository lock, held by this test process as another flowgit would hold it."""

    def __init__(self, common_dir: Path) -> None:
        self.path = common_dir / "flowgit.lock"

    def __enter__(self) -> HeldLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# ----- choosing the task --------------------------------------------------------------------------

def test_claim_takes_critical_path_first(repo: Repo) -> None:
    # a-leaf has the best priority and the smallest id; z-head starts the longest chain.
    repo.plan("cp", """\
id: cp
title: Critical path wins
tasks:
  - {id: a-leaf, title: Leaf, priority: high}
  - {id: z-head, title: Head, priority: low}
  - {id: z-mid, title: Mid, depends_on: [z-head]}
  - {id: z-tail, title: Tail, depends_on: [z-mid]}
""")
    assert repo.ok("next", "cp", "--json").json["task"] == "cp/z-head"
    assert claim(repo, "cp", "w1")["task"] == "cp/z-head"
    assert claim(repo, "cp", "w2")["task"] == "cp/a-leaf"


def test_claim_then_priority_then_id(repo: Repo) -> None:
    repo.plan("pr", """\
id: pr
title: Priority then id
tasks:
  - {id: a-low, title: Low, priority: low}
  - {id: m-2, title: Medium two}
  - {id: m-1, title: Medium one}
  - {id: z-high, title: High, priority: high}
""")
    taken = [claim(repo, "pr", f"w{i}")["task"] for i in range(4)]
    assert taken == ["pr/z-high", "pr/m-1", "pr/m-2", "pr/a-low"]
    res = repo.run("claim", "pr", "--worker", "w9")
    assert res.code == 3


def test_claim_named_task_and_without_target(repo: Repo) -> None:
    repo.plan("p", TWO)
    res = claim(repo, "p/c", "w1")
    assert res["task"] == "p/c" and res["worker"] == "w1"
    assert parse_time(res["lease_until"]) > time.time() + 800  # config default 900 s
    # TASK alone when only one plan has it
    assert claim(repo, "a", "w2")["task"] == "p/a"
    assert state(repo, "p", "c") == "claimed" and row(repo, "p", "c")["worker"] == "w1"
    # nothing ready: a and c held, b waits on a
    for args in (("claim", "p"), ("claim",), ("next", "p")):
        res = repo.run(*args, "--worker", "w3") if args[0] == "claim" else repo.run(*args)
        assert res.code == 3, (args, res)
    res = repo.run("claim", "p", "--worker", "w3", "--json")
    assert res.code == 3 and res.json["error"]["code"]


def test_exit_3_when_nothing_ready_is_a_real_process_exit(repo: Repo) -> None:
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - {id: a, title: A}\n")
    repo.ok("claim", "p", "--worker", "w1")
    proc = repo.proc("claim", "p", "--worker", "w2")
    assert proc.returncode == 3, proc
    assert "Traceback" not in proc.stderr


# ----- illegal transitions ------------------------------------------------------------------------

def test_illegal_transitions_name_state_and_holder(repo: Repo) -> None:
    repo.plan("p", TWO)
    before = repo.commits()
    # done before claim
    res = repo.run("done", "p/a", "--worker", "w1")
    assert res.code == 1
    msg = error(res)
    assert "p/a" in msg and "ready" in msg and "claim" in msg
    # claim of a pending task
    res = repo.run("claim", "p/b", "--worker", "w1")
    assert res.code == 1
    msg = error(res)
    assert "p/b" in msg and "pending" in msg and "a" in msg
    assert repo.commits() == before

    claim(repo, "p/a", "w1")
    after_claim = repo.commits()
    # done by another worker
    res = repo.run("done", "p/a", "--worker", "w2")
    assert res.code == 1
    msg = error(res)
    assert "claimed" in msg and "w1" in msg and "p/a" in msg
    # claim of a task claimed by another
    res = repo.run("claim", "p/a", "--worker", "w2", "--json")
    assert res.code == 1
    err = res.json["error"]
    assert "claimed" in err["message"] and "w1" in err["message"]
    # start / heartbeat / release / fail by someone else
    for args in (("start", "p/a"), ("heartbeat", "p/a"), ("release", "p/a"),
                 ("fail", "p/a", "--error", "x")):
        res = repo.run(*args, "--worker", "w2")
        assert res.code == 1, args
        assert "w1" in error(res)
    # in progress: the message says so
    repo.ok("start", "p/a", "--worker", "w1")
    res = repo.run("claim", "p/a", "--worker", "w2")
    assert res.code == 1 and "in_progress" in error(res) and "w1" in error(res)
    # a second claim by the holder is refused too (use heartbeat)
    res = repo.run("claim", "p/a", "--worker", "w1")
    assert res.code == 1 and "heartbeat" in error(res)
    # claim of a finished task
    repo.ok("done", "p/a", "--worker", "w1")
    res = repo.run("claim", "p/a", "--worker", "w2")
    assert res.code == 1 and "done" in error(res)
    res = repo.run("done", "p/a", "--worker", "w1")
    assert res.code == 1 and "done" in error(res)
    # refusals wrote nothing: claim, start, done
    assert repo.commits() == after_claim + 2
    assert [e["type"] for e in events(repo, "p", "a")] == ["task.claimed", "task.started", "task.done"]


def test_unknown_task_and_plan(repo: Repo) -> None:
    repo.plan("p", TWO)
    for args in (("claim", "p/nope"), ("done", "p/nope"), ("claim", "nope/a"), ("done", "nope")):
        res = repo.run(*args, "--worker", "w1")
        assert res.code == 1, args
        assert "nope" in error(res)


def test_events_of_an_unknown_task_exit_1(repo: Repo) -> None:
    repo.plan("p", TWO)
    res = repo.run("events", "p", "nope")
    assert res.code == 1 and "nope" in error(res) and "flowgit status p" in error(res)
    assert repo.ok("events", "p", "a", "--json").json["events"] == []


def test_fail_modes_exclude_each_other(repo: Repo) -> None:
    repo.plan("r", RETRY)
    claim(repo, "r/flaky", "w1")
    head = repo.git("rev-parse", "HEAD")
    res = repo.run("fail", "r/flaky", "--worker", "w1", "--error", "e", "--retry", "--skip")
    assert res.code == 2 and "--skip" in error(res)
    assert repo.git("rev-parse", "HEAD") == head and state(repo, "r", "flaky") == "claimed"


def test_claim_on_a_finished_plan_is_nothing_to_do_like_next(repo: Repo) -> None:
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - id: a\n    title: A\n")
    claim(repo, "p/a", "w1")
    repo.ok("done", "p/a", "--worker", "w1")
    repo.ok("finish", "p")
    assert repo.ok("status", "p", "--json").json["phase"] == "complete"
    for args in (("next", "p"), ("claim", "p", "--worker", "w2")):
        res = repo.run(*args)
        assert res.code == 3, (args, res.out, res.err)
    assert "complete" in error(repo.run("claim", "p", "--worker", "w2"))


def test_a_dependency_on_nothing_known_is_shown_not_hidden(repo: Repo) -> None:
    repo.plan("p", TWO)
    plan_file = repo.path / ".flow/plans/p/plan.yaml"  # edited by hand: `plan new` refuses it
    plan_file.write_text(plan_file.read_text().replace("depends_on: [a]", "depends_on: [a, later-plan]"))
    data = repo.ok("status", "p", "--json").json
    assert data["unknown_refs"] == ["later-plan"] and not data["stalled"]
    assert "waiting on unknown plans or tasks: later-plan" in repo.ok("status", "p").out
    repo.plan("later-plan", "id: later-plan\ntitle: L\ntasks: []\n")
    assert repo.ok("status", "p", "--json").json["unknown_refs"] == []


# ----- leases -------------------------------------------------------------------------------------

def test_expired_lease_makes_task_ready_and_refuses_late_done(repo: Repo, wall_clock: WallClock) -> None:
    repo.plan("p", TWO)
    res = claim(repo, "p/a", "w1", "--lease", "60")
    assert parse_time(res["lease_until"]) == pytest.approx(wall_clock.now() + 60, abs=0.5)
    assert state(repo, "p", "a") == "claimed"
    wall_clock.advance(61)
    st = status(repo, "p")
    a = next(t for t in st["tasks"] if t["id"] == "a")
    assert a["state"] == "ready" and a.get("interrupted") is True
    assert "a" in st["ready"] and st["interrupted"] == ["a"]
    assert st["counts"]["claimed"] == 0
    # the old holder, before anyone else took it: refused, told the lease expired
    commits = repo.commits()
    res = repo.run("done", "p/a", "--worker", "w1")
    assert res.code == 1
    msg = error(res)
    assert "lease" in msg and "expired" in msg and "p/a" in msg
    # another worker can take it
    assert claim(repo, "p", "w2")["task"] == "p/a"
    st = status(repo, "p")
    assert st["interrupted"] == [] and state(repo, "p", "a") == "claimed"
    # the old holder's late done: refused, names the new holder
    res = repo.run("done", "p/a", "--worker", "w1", "--json")
    assert res.code == 1
    msg = res.json["error"]["message"]
    assert "w2" in msg and "p/a" in msg
    assert repo.commits() == commits + 1
    repo.ok("done", "p/a", "--worker", "w2")
    done = [e for e in events(repo, "p", "a") if e["type"] == "task.done"]
    assert [e["actor"] for e in done] == ["w2"]
    assert row(repo, "p", "a")["attempts"] == 2


def test_expired_lease_old_holder_may_claim_again(repo: Repo, wall_clock: WallClock) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1", "--lease", "60")
    wall_clock.advance(61)
    claim(repo, "p/a", "w1")
    repo.ok("done", "p/a", "--worker", "w1")
    assert state(repo, "p", "a") == "done"


def test_heartbeat_extends_the_lease(repo: Repo, wall_clock: WallClock) -> None:
    repo.plan("p", TWO)
    first = claim(repo, "p/a", "w1", "--lease", "60")
    wall_clock.advance(40)
    res = repo.ok("heartbeat", "p/a", "--worker", "w1", "--json").json
    until = parse_time(res["lease_until"])
    # extended by the lease it was claimed with, from now
    assert until == pytest.approx(wall_clock.now() + 60, abs=0.4)
    assert until > parse_time(first["lease_until"]) + 30
    assert [e["type"] for e in events(repo, "p", "a")] == ["task.claimed", "task.heartbeat"]
    wall_clock.advance(parse_time(first["lease_until"]) - wall_clock.now() + 10)
    r = row(repo, "p", "a")  # past the first lease, within the extended one
    assert r["state"] == "claimed" and r["worker"] == "w1" and not r.get("interrupted")
    assert parse_time(r["lease_until"]) == pytest.approx(until, abs=0.001)
    assert repo.run("claim", "p/a", "--worker", "w2").code == 1
    repo.ok("start", "p/a", "--worker", "w1")
    assert row(repo, "p", "a")["state"] == "in_progress"
    repo.ok("done", "p/a", "--worker", "w1")


def test_heartbeat_default_lease_from_config(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    res = repo.ok("heartbeat", "p/a", "--worker", "w1", "--json").json
    assert parse_time(res["lease_until"]) == pytest.approx(time.time() + 900, abs=5)


def test_heartbeat_after_expiry_is_refused(repo: Repo, wall_clock: WallClock) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1", "--lease", "60")
    wall_clock.advance(61)
    res = repo.run("heartbeat", "p/a", "--worker", "w1")
    assert res.code == 1 and "expired" in error(res)


def test_start_and_release(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    res = repo.ok("start", "p/a", "--worker", "w1", "--json").json
    assert res["event"] == "started" and "lease_until" in res
    r = row(repo, "p", "a")
    assert r["state"] == "in_progress" and r["worker"] == "w1"
    assert status(repo, "p")["counts"]["in_progress"] == 1
    res = repo.run("start", "p/a", "--worker", "w1")
    assert res.code == 1 and "in progress" in error(res)
    repo.ok("release", "p/a", "--worker", "w1")
    r = row(repo, "p", "a")
    assert r["state"] == "ready" and r["worker"] is None
    assert repo.run("done", "p/a", "--worker", "w1").code == 1
    assert claim(repo, "p", "w2")["task"] == "p/a"
    repo.ok("done", "p/a", "--worker", "w2", "--note", "ok", "--files-modified", "x.py")
    last = events(repo, "p", "a")[-1]
    assert last["type"] == "task.done" and last["data"]["note"] == "ok"
    assert last["data"]["files_modified"] == ["x.py"]
    assert state(repo, "p", "b") == "ready"


# ----- retries ------------------------------------------------------------------------------------

def _fail_retry(repo: Repo, ref: str, worker: str, wall_clock: WallClock) -> tuple[dict[str, Any], float]:
    t0 = wall_clock.now()
    res = repo.ok("fail", ref, "--worker", worker, "--error", "boom", "--retry", "--json").json
    return res, t0


def _claim_when_due(repo: Repo, plan: str, worker: str, due: float, wall_clock: WallClock) -> dict[str, Any]:
    # not claimable before it is due: claim PLAN finds nothing ready
    res = repo.run("claim", plan, "--worker", worker)
    assert res.code == 3, res
    assert repo.run("next", plan).code == 3
    wall_clock.advance(max(0.0, due - wall_clock.now()) + 0.1)
    return claim(repo, plan, worker)


def test_retry_exponential_then_failed_and_dependents_blocked(repo: Repo, wall_clock: WallClock) -> None:
    repo.plan("r", RETRY)
    assert claim(repo, "r", "w1")["task"] == "r/flaky"
    res, t0 = _fail_retry(repo, "r/flaky", "w1", wall_clock)
    assert res["state"] == "retry_wait" and res["attempt"] == 1 and res["max_attempts"] == 3
    due = parse_time(res["retry_at"])
    assert due - t0 == pytest.approx(1.0, abs=0.4)
    r = row(repo, "r", "flaky")
    assert r["state"] == "retry_wait" and r["error"] == "boom"
    assert parse_time(r["retry_at"]) == pytest.approx(due, abs=0.001)
    assert status(repo, "r")["counts"]["retry_wait"] == 1
    assert not status(repo, "r")["stalled"]

    assert _claim_when_due(repo, "r", "w2", due, wall_clock)["task"] == "r/flaky"
    res, t0 = _fail_retry(repo, "r/flaky", "w2", wall_clock)
    assert res["state"] == "retry_wait" and res["attempt"] == 2
    due = parse_time(res["retry_at"])
    assert due - t0 == pytest.approx(2.0, abs=0.4)

    assert _claim_when_due(repo, "r", "w1", due, wall_clock)["task"] == "r/flaky"
    res, _ = _fail_retry(repo, "r/flaky", "w1", wall_clock)
    assert res["state"] == "failed" and res["attempt"] == 3 and res["retry_at"] is None
    st = status(repo, "r")
    by_id = {t["id"]: t for t in st["tasks"]}
    assert by_id["flaky"]["state"] == "failed" and by_id["flaky"]["attempts"] == 3
    assert by_id["after"]["state"] == "blocked" and by_id["after"]["blocked_by"] == ["flaky"]
    assert by_id["later"]["state"] == "blocked"
    assert st["stalled"] is True
    assert repo.run("claim", "r", "--worker", "w1").code == 3
    plan_log = events(repo, "r", "_plan")
    failed = [e for e in plan_log if e["type"] == "plan.task_failed"]
    assert len(failed) == 1 and failed[0]["data"]["task"] == "flaky"
    assert failed[0]["data"]["error"] == "boom"
    assert trailers(repo)["Flow-Event"] == "failed"
    assert files_in(repo) == [".flow/plans/r/events/_plan.jsonl", ".flow/plans/r/events/flaky.jsonl"]


def test_fail_without_retry_is_final(repo: Repo) -> None:
    repo.plan("r", RETRY)
    claim(repo, "r/flaky", "w1")
    res = repo.ok("fail", "r/flaky", "--worker", "w1", "--error", "bad", "--json").json
    assert res["state"] == "failed"
    assert state(repo, "r", "flaky") == "failed" and state(repo, "r", "after") == "blocked"
    assert any(e["type"] == "plan.task_failed" for e in events(repo, "r", "_plan"))
    assert repo.run("claim", "r/flaky", "--worker", "w2").code == 1


def test_task_policy_overrides_plan_policy(repo: Repo, wall_clock: WallClock) -> None:
    repo.plan("o", """\
id: o
title: Task-level policies
retry: {strategy: exponential, base: 1, max_attempts: 3}
tasks:
  - {id: fix, title: Fixed, retry: {strategy: fixed, base: 7}}
  - {id: fib, title: Fibonacci, retry: {strategy: fibonacci, base: 60, cap: 1800}}
  - {id: once, title: One attempt, retry: {max_attempts: 1}}
""")
    for task, expect in (("fix", 7.0), ("fib", 60.0)):
        claim(repo, f"o/{task}", "w1")
        res, t0 = _fail_retry(repo, f"o/{task}", "w1", wall_clock)
        assert res["state"] == "retry_wait"
        assert parse_time(res["retry_at"]) - t0 == pytest.approx(expect, abs=0.4)
    claim(repo, "o/once", "w1")
    res, _ = _fail_retry(repo, "o/once", "w1", wall_clock)
    assert res["state"] == "failed" and res["max_attempts"] == 1


@pytest.mark.parametrize(("policy", "expected"), [
    pytest.param(RetryPolicy("exponential", 1, 1800, 5), [1, 2, 4, 8, 16], id="exponential-seconds"),
    pytest.param(RetryPolicy("exponential", 1, 10, 9), [1, 2, 4, 8, 10, 10], id="exponential-capped"),
    pytest.param(RetryPolicy("fibonacci", 60, 1800, 12),
                 [60, 120, 180, 300, 480, 780, 1260, 1800, 1800], id="fibonacci-minutes-cap-30"),
    pytest.param(RetryPolicy("fibonacci", 1, 1800, 9), [1, 2, 3, 5, 8, 13, 21], id="fibonacci-seconds"),
    pytest.param(RetryPolicy("fixed", 5, 1800, 3), [5, 5, 5, 5], id="fixed"),
    pytest.param(RetryPolicy("fixed", 50, 30, 3), [30, 30], id="fixed-capped"),
])
def test_retry_delay_sequences(policy: RetryPolicy, expected: list[float]) -> None:
    assert [retry.delay(policy, n) for n in range(1, len(expected) + 1)] == expected


def test_retry_exhausted() -> None:
    policy = RetryPolicy("exponential", 1, 1800, 5)
    assert [retry.exhausted(policy, n) for n in range(1, 7)] == [False] * 4 + [True] * 2
    assert retry.delay(policy, 200) == 1800  # no overflow on huge attempt numbers


# ----- skipping -----------------------------------------------------------------------------------

SKIP = """\
id: s
title: Skips
tasks:
  - {id: s1, title: S1}
  - {id: s2, title: S2, depends_on: [s1]}
  - {id: k1, title: K1}
  - {id: k2, title: K2, depends_on: [k1]}
  - {id: k3, title: K3, depends_on: [k2]}
  - {id: k4, title: K4, depends_on: [k3, s2]}
  - {id: free, title: Free}
"""


def test_skip_lets_dependents_go_on(repo: Repo) -> None:
    repo.plan("s", SKIP)
    claim(repo, "s/s1", "w1")
    res = repo.ok("fail", "s/s1", "--worker", "w1", "--error", "not needed", "--skip", "--json").json
    assert res["state"] == "skipped" and res["dependents_skipped"] is False
    assert state(repo, "s", "s1") == "skipped"
    assert state(repo, "s", "s2") == "ready"
    assert trailers(repo)["Flow-Event"] == "skipped"
    # a ready task may be skipped without a claim; held by someone else it may not
    claim(repo, "s/free", "w2")
    res = repo.run("fail", "s/free", "--worker", "w1", "--error", "x", "--skip")
    assert res.code == 1 and "w2" in error(res)


def test_skip_dependents_is_transitive(repo: Repo) -> None:
    repo.plan("s", SKIP)
    claim(repo, "s/k1", "w1")
    res = repo.ok("fail", "s/k1", "--worker", "w1", "--error", "drop", "--skip-dependents", "--json").json
    assert res["dependents_skipped"] is True
    st = {t["id"]: t["state"] for t in status(repo, "s")["tasks"]}
    assert st == {"s1": "ready", "s2": "pending", "k1": "skipped", "k2": "skipped",
                  "k3": "skipped", "k4": "skipped", "free": "ready"}
    assert repo.run("claim", "s/k2", "--worker", "w1").code == 1
    # the rest of the plan finishes; skipped counts as finished
    for task in ("s1", "s2", "free"):
        claim(repo, f"s/{task}", "w1")
        repo.ok("done", f"s/{task}", "--worker", "w1")
    st = status(repo, "s")
    assert st["progress"] == 100 and st["counts"]["skipped"] == 4 and st["counts"]["done"] == 3
    assert repo.run("claim", "s", "--worker", "w1").code == 3


# ----- adding work during execution ---------------------------------------------------------------

def test_task_add_during_execution(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    repo.ok("done", "p/a", "--worker", "w1")
    assert status(repo, "p")["phase"] == "execute"
    res = repo.ok("task", "add", "p", "n1", "--title", "New", "--dep", "a", "--priority", "high",
                  "--json").json
    assert res["state"] == "ready"
    res = repo.ok("task", "add", "p", "n2", "--title", "After new", "--dep", "n1", "--json").json
    assert res["state"] == "pending"
    assert state(repo, "p", "n1") == "ready" and state(repo, "p", "n2") == "pending"
    taken = claim(repo, "p", "w2")["task"]
    assert taken == "p/n1"  # on the longest remaining chain (n1 -> n2)
    repo.ok("done", "p/n1", "--worker", "w2")
    assert state(repo, "p", "n2") == "ready"
    assert "n2" in status(repo, "p")["ready"]
    assert claim(repo, "p/n2", "w2")["task"] == "p/n2"


# ----- commits ------------------------------------------------------------------------------------

@pytest.mark.format1
def test_one_commit_per_transition_with_trailers(repo: Repo) -> None:
    repo.plan("p", TWO)
    log = ".flow/plans/p/events/a.jsonl"
    steps = [
        (("claim", "p/a", "--worker", "w1"), "claimed"),
        (("start", "p/a", "--worker", "w1"), "started"),
        (("heartbeat", "p/a", "--worker", "w1"), "heartbeat"),
        (("release", "p/a", "--worker", "w1"), "released"),
        (("claim", "p/a", "--worker", "w2"), "claimed"),
        (("done", "p/a", "--worker", "w2"), "done"),
    ]
    for i, (args, event) in enumerate(steps):
        before = repo.commits()
        res = repo.ok(*args, "--json").json
        assert repo.commits() == before + 1, args
        assert res["commit"] == repo.git("rev-parse", "HEAD")
        assert repo.git("log", "-1", "--format=%s") == f"flow(p/a): {event}"
        actor = args[-1]
        assert trailers(repo) == {"Flow-Plan": "p", "Flow-Task": "a", "Flow-Event": event,
                                  "Flow-Actor": actor}
        expected = [log, ".flow/plans/p/events/_plan.jsonl"] if i == 0 else [log]
        assert files_in(repo) == sorted(expected)  # the first claim also starts execution
        assert len(events(repo, "p", "a")) == i + 1
    assert repo.git("status", "--porcelain", "--", ".flow") == ""


@pytest.mark.format1
def test_users_staged_changes_stay_staged_and_out(repo: Repo) -> None:
    repo.plan("p", TWO)
    repo.write("README.md", "hello, edited\n")
    repo.write("src/new.txt", "new file\n")
    repo.git("add", "README.md", "src/new.txt")
    repo.write("unstaged.txt", "not added\n")
    staged = repo.git("diff", "--cached", "--name-status")
    claim(repo, "p/a", "w1")
    repo.ok("done", "p/a", "--worker", "w1")
    for rev in ("HEAD", "HEAD~1"):
        assert all(f.startswith(".flow/") for f in files_in(repo, rev)), files_in(repo, rev)
    assert repo.git("show", "HEAD:README.md") == "hello"
    assert repo.run("validate").code == 0
    assert repo.git("diff", "--cached", "--name-status") == staged
    assert sorted(repo.git("diff", "--cached", "--name-only").split()) == ["README.md", "src/new.txt"]
    assert (repo.path / "README.md").read_text() == "hello, edited\n"
    assert "?? unstaged.txt" in repo.git("status", "--porcelain")
    with pytest.raises(subprocess.CalledProcessError):
        repo.git("cat-file", "-e", "HEAD:src/new.txt")


# ----- git operations in progress -----------------------------------------------------------------

def _diverge(repo: Repo, branch: str) -> None:
    """`branch` and main both change README.md differently from the current commit."""
    repo.git("branch", branch)
    repo.git("checkout", "-q", branch)
    repo.write("README.md", f"{branch} side\n")
    repo.git("commit", "-q", "--no-verify", "-am", f"{branch} edit")
    repo.git("checkout", "-q", "main")
    repo.write("README.md", "main side\n")
    repo.git("commit", "-q", "--no-verify", "-am", "main edit")


def _assert_refused(repo: Repo, what: str, *args: str) -> None:
    head = repo.git("rev-parse", "HEAD")
    snap = flow_snapshot(repo)
    st = repo.git("status", "--porcelain", "--", ".flow")
    for json_flag in ((), ("--json",)):
        res = repo.run(*args, *json_flag)
        assert res.code != 0, (args, res)
        assert res.code in (1, 4)
        msg = res.json["error"]["message"] if json_flag else error(res)
        assert what in msg, msg
    proc = repo.proc(*args)
    assert proc.returncode not in (0, 2, 3) and what in proc.stderr and "Traceback" not in proc.stderr
    assert repo.git("rev-parse", "HEAD") == head
    assert flow_snapshot(repo) == snap
    assert repo.git("status", "--porcelain", "--", ".flow") == st
    assert not (repo.path / ".git" / "flowgit-journal").exists()


def test_merge_in_progress_refuses_and_writes_nothing(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    _diverge(repo, "other")
    proc = subprocess.run(["git", "merge", "other"], cwd=repo.path, capture_output=True, text=True)
    assert proc.returncode != 0 and (repo.path / ".git" / "MERGE_HEAD").exists()
    _assert_refused(repo, "merge", "claim", "p", "--worker", "w2")
    _assert_refused(repo, "merge", "claim", "--worker", "w2")
    _assert_refused(repo, "merge", "done", "p/a", "--worker", "w1")
    _assert_refused(repo, "merge", "fail", "p/a", "--worker", "w1", "--error", "x", "--retry")
    repo.git("merge", "--abort")
    repo.ok("done", "p/a", "--worker", "w1")


def test_rebase_in_progress_refuses_and_writes_nothing(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_EDITOR", "true")
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    _diverge(repo, "side")
    repo.git("checkout", "-q", "side")
    proc = subprocess.run(["git", "rebase", "main"], cwd=repo.path, capture_output=True, text=True)
    assert proc.returncode != 0
    assert (repo.path / ".git" / "rebase-merge").exists() or (repo.path / ".git" / "rebase-apply").exists()
    _assert_refused(repo, "rebase", "claim", "p", "--worker", "w2")
    _assert_refused(repo, "rebase", "done", "p/a", "--worker", "w1")
    repo.git("rebase", "--abort")
    repo.ok("done", "p/a", "--worker", "w1")


def test_cherry_pick_in_progress_refuses(repo: Repo) -> None:
    repo.plan("p", TWO)
    _diverge(repo, "cp")
    proc = subprocess.run(["git", "cherry-pick", "cp"], cwd=repo.path, capture_output=True, text=True)
    assert proc.returncode != 0
    _assert_refused(repo, "cherry-pick", "claim", "p", "--worker", "w2")
    repo.git("cherry-pick", "--abort")
    claim(repo, "p", "w2")


# ----- the lock -----------------------------------------------------------------------------------

def test_lock_timeout_exits_4(repo: Repo) -> None:
    repo.plan("p", TWO)
    set_config(repo, lock_timeout=1)
    head = repo.git("rev-parse", "HEAD")
    with HeldLock(repo.path / ".git"):
        t0 = time.monotonic()
        proc = repo.proc("claim", "p", "--worker", "w1")
        elapsed = time.monotonic() - t0
        assert proc.returncode == 4, proc
        assert "timed out" in proc.stderr and "Traceback" not in proc.stderr
        assert 0.9 <= elapsed < 10
        proc = repo.proc("--json", "status", "p")  # reads take no lock
        assert proc.returncode == 0
        proc = repo.proc("claim", "p", "--worker", "w1", "--json")
        assert proc.returncode == 4 and json.loads(proc.stdout)["error"]["code"]
    assert repo.git("rev-parse", "HEAD") == head
    claim(repo, "p", "w1")


def test_lock_path_symlink_is_refused(repo: Repo, tmp_path: Path) -> None:
    repo.plan("p", TWO)
    target = tmp_path / "elsewhere.lock"
    link = repo.path / ".git" / "flowgit.lock"
    link.unlink(missing_ok=True)
    os.symlink(target, link)
    head = repo.git("rev-parse", "HEAD")
    res = repo.run("claim", "p", "--worker", "w1")
    assert res.code == 1  # a user-fixable problem, not a race that retrying may win
    assert "symlink" in error(res)
    assert not target.exists()
    target.write_text("")
    res = repo.run("claim", "p", "--worker", "w1")
    assert res.code == 1 and "symlink" in error(res)
    assert repo.git("rev-parse", "HEAD") == head
    link.unlink()
    claim(repo, "p", "w1")


def test_worktree_shares_the_lock(repo: Repo) -> None:
    repo.plan("p", TWO)
    set_config(repo, lock_timeout=1)
    wt = repo.path.parent / "wt"
    repo.git("worktree", "add", "-q", "-b", "wt", str(wt))
    flow = FlowRepo(wt)
    assert flow.dirs.common_dir == (repo.path / ".git").resolve()
    assert flow.dirs.git_dir != flow.dirs.common_dir
    assert flow.lock().path == (repo.path / ".git" / "flowgit.lock").resolve()
    wrepo = Repo(wt)
    with HeldLock(repo.path / ".git"):
        proc = wrepo.proc("claim", "p", "--worker", "w1")
        assert proc.returncode == 4, proc
    assert not (flow.dirs.git_dir / "flowgit.lock").exists()
    res = wrepo.ok("claim", "p", "--worker", "w1", "--json").json
    assert git(wt, "log", "-1", "--format=%s", transitions(repo)) == f"flow({res['task']}): claimed"
    assert git(wt, "rev-parse", "--abbrev-ref", "HEAD") == "wt"
    assert repo.git("log", "-1", "--format=%s", "main").startswith("config")
    # a merge in progress in the main work tree does not stop the worktree
    _diverge(repo, "other")
    assert subprocess.run(["git", "merge", "other"], cwd=repo.path, capture_output=True).returncode != 0
    assert wrepo.ok("claim", "p", "--worker", "w2", "--json").json["task"]
    assert repo.run("claim", "p", "--worker", "w3").code == 1
    repo.git("merge", "--abort")


# ----- crashes and doctor -------------------------------------------------------------------------

def _append_orphan(repo: Repo, plan: str, task: str, actor: str, type_: str = "task.claimed",
                   journal: bool = True) -> dict[str, Any]:
    """What a command that crashed between append and commit leaves behind."""
    existing = events(repo, plan, task)
    clock = max((e["clock"] for e in existing), default=0) + 1
    now = time.time()
    data = {"lease_until": None, "lease_seconds": 900} if type_ == "task.claimed" else {"text": "hi"}
    if type_ == "task.claimed":
        data["lease_until"] = format_time(now + 900)
    ev = make_event(type_, plan, task, actor, clock, data, now)
    path = log_path(repo, plan, task)
    rel = path.relative_to(repo.path).as_posix()
    if journal:
        (repo.path / ".git" / "flowgit-journal").write_text(json.dumps({"paths": [rel]}))
    with open(path, "a") as fh:
        fh.write(ev.to_line())
    return ev.to_dict()


@pytest.mark.format1
def test_crash_between_append_and_commit_is_recovered_by_next_claim(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    ev = _append_orphan(repo, "p", "c", "w9")
    assert ".flow/plans/p/events/c.jsonl" in repo.git("status", "--porcelain")
    before = repo.commits()
    doc = repo.run("doctor", "--json")
    assert doc.code == 1
    kinds = {p["kind"] for p in doc.json["problems"]}
    assert {"journal", "uncommitted"} <= kinds
    # the next transition commits the orphan first, then its own event
    res = repo.run("claim", "p", "--worker", "w2", "--json")
    assert res.code == 3  # a is held by w1, b waits on a, c is held by the crashed w9
    assert repo.commits() == before + 1
    assert "recover" in repo.git("log", "-1", "--format=%s")
    assert files_in(repo) == [".flow/plans/p/events/c.jsonl"]
    assert not (repo.path / ".git" / "flowgit-journal").exists()
    assert repo.git("status", "--porcelain", "--", ".flow") == ""
    assert events(repo, "p", "c")[-1]["id"] == ev["id"]
    r = row(repo, "p", "c")
    assert r["state"] == "claimed" and r["worker"] == "w9"
    assert repo.ok("doctor").code == 0


@pytest.mark.format1
def test_recovered_commit_comes_before_the_next_transition(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    _append_orphan(repo, "p", "a", "w1", "task.note")
    before = repo.commits()
    repo.ok("done", "p/a", "--worker", "w1")
    assert repo.commits() == before + 2
    assert repo.git("log", "-1", "--format=%s") == "flow(p/a): done"
    assert "recover" in repo.git("log", "-1", "--format=%s", "HEAD~1")
    assert [e["type"] for e in events(repo, "p", "a")] == ["task.claimed", "task.note", "task.done"]
    assert repo.git("status", "--porcelain") == ""


@pytest.mark.format1
def test_torn_line_is_repaired_by_next_writer(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    path = log_path(repo, "p", "a")
    good = path.read_bytes()
    rel = path.relative_to(repo.path).as_posix()
    (repo.path / ".git" / "flowgit-journal").write_text(json.dumps({"paths": [rel]}))
    with open(path, "ab") as fh:
        fh.write(b'{"id":"01JD0000000000000000000000","type":"task.do')
    assert state(repo, "p", "a") == "claimed"  # a torn line is never parsed as data
    repo.ok("done", "p/a", "--worker", "w1")
    data = path.read_bytes()
    assert data.startswith(good) and data.endswith(b"\n")
    assert [e["type"] for e in events(repo, "p", "a")] == ["task.claimed", "task.done"]
    assert repo.git("status", "--porcelain") == ""
    assert repo.ok("doctor").code == 0


@pytest.mark.format1
def test_doctor_torn_line(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    path = log_path(repo, "p", "a")
    good = path.read_bytes()
    with open(path, "ab") as fh:
        fh.write(b'{"id":"01JD00000000')
    res = repo.run("doctor", "--json")
    assert res.code == 1
    problems = res.json["problems"]
    assert any(p["kind"] == "torn" and p["path"].endswith("p/events/a.jsonl") for p in problems)
    assert res.json["ok"] is False
    res = repo.run("doctor")
    assert res.code == 1 and "torn" in res.out and "--fix" in res.out
    res = repo.run("doctor", "--fix", "--json")
    assert res.code == 0, res
    assert path.read_bytes() == good
    assert repo.git("status", "--porcelain") == ""
    assert repo.run("doctor").code == 0
    repo.ok("done", "p/a", "--worker", "w1")


@pytest.mark.format1
def test_doctor_uncommitted_event(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    ev = _append_orphan(repo, "p", "a", "w1", "task.note", journal=False)
    res = repo.run("doctor", "--json")
    assert res.code == 1
    assert [p["kind"] for p in res.json["problems"]] == ["uncommitted"]
    before = repo.commits()
    assert repo.run("doctor", "--fix").code == 0
    assert repo.commits() == before + 1
    assert repo.git("status", "--porcelain") == ""
    assert repo.git("show", "HEAD:.flow/plans/p/events/a.jsonl").count(ev["id"]) == 1
    assert repo.run("doctor").code == 0


@pytest.mark.format1
def test_doctor_duplicate_event_ids(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    repo.ok("start", "p/a", "--worker", "w1")
    path = log_path(repo, "p", "a")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1] + lines[0])  # a bad hand merge, committed
    repo.git("commit", "-q", "--no-verify", "-am", "bad merge")
    res = repo.run("doctor", "--json")
    assert res.code == 1
    assert any(p["kind"] == "duplicates" for p in res.json["problems"])
    assert repo.run("doctor", "--fix").code == 0
    ids = [e["id"] for e in events(repo, "p", "a")]
    assert len(ids) == len(set(ids)) == 2
    assert repo.git("status", "--porcelain") == ""
    assert repo.run("doctor").code == 0
    assert repo.run("validate").code == 0
    repo.ok("done", "p/a", "--worker", "w1")


def test_doctor_journal_only(repo: Repo) -> None:
    repo.plan("p", TWO)
    (repo.path / ".git" / "flowgit-journal").write_text(json.dumps({"paths": [".flow/plans/p/events/a.jsonl"]}))
    res = repo.run("doctor", "--json")
    assert res.code == 1 and [p["kind"] for p in res.json["problems"]] == ["journal"]
    assert repo.run("doctor", "--fix").code == 0
    assert not (repo.path / ".git" / "flowgit-journal").exists()
    assert repo.run("doctor").code == 0


def test_doctor_clean_repo_exits_0(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    res = repo.run("doctor", "--json")
    assert res.code == 0 and res.json["ok"] is True and res.json["problems"] == []


# ----- git's own locks ----------------------------------------------------------------------------

def _journal(repo: Repo, *rels: str) -> Path:
    path = repo.path / ".git" / "flowgit-journal"
    path.write_text(json.dumps({"paths": list(rels)}))
    return path


@pytest.mark.format1
def test_index_held_by_another_git_command_exits_4_and_writes_nothing(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    head = repo.git("rev-parse", "HEAD")
    snap = flow_snapshot(repo)
    index_lock = repo.path / ".git" / "index.lock"
    index_lock.write_text("")  # a user's `git add` running right now
    for args in (("done", "p/a", "--worker", "w1"), ("claim", "p/c", "--worker", "w2")):
        res = repo.run(*args)
        assert res.code == 4, res
        msg = error(res)
        assert "index.lock" in msg and "retry" in msg
        assert repo.git("rev-parse", "HEAD") == head
        assert flow_snapshot(repo) == snap  # the appended event was taken back
        assert not (repo.path / ".git" / "flowgit-journal").exists()
    assert index_lock.exists()  # not ours to remove
    index_lock.unlink()
    repo.ok("done", "p/a", "--worker", "w1")
    assert [e["type"] for e in events(repo, "p", "a")] == ["task.claimed", "task.done"]
    assert not log_path(repo, "p", "c").exists()
    assert repo.git("status", "--porcelain") == ""


@pytest.mark.format1
def test_stale_git_locks_of_a_killed_command_are_cleared(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    # killed in `git commit`: appended, journal written, git's locks left behind
    _append_orphan(repo, "p", "c", "w9")
    locks = [repo.path / ".git" / "index.lock", repo.path / ".git" / "next-index-999999.lock",
             repo.path / ".git" / "refs" / "heads" / "main.lock"]
    for lock in locks:
        lock.write_text("partial")
    res = repo.run("done", "p/a", "--worker", "w1")
    assert res.code == 0, res
    assert not any(lock.exists() for lock in locks)
    assert repo.git("log", "-1", "--format=%s") == "flow(p/a): done"
    assert "recover" in repo.git("log", "-1", "--format=%s", "HEAD~1")
    assert repo.git("status", "--porcelain") == ""
    assert repo.ok("doctor").code == 0


@pytest.mark.format1
def test_git_lock_older_than_the_journal_is_left_alone(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    index_lock = repo.path / ".git" / "index.lock"
    index_lock.write_text("")
    old = time.time() - 60
    os.utime(index_lock, (old, old))
    _append_orphan(repo, "p", "c", "w9")
    res = repo.run("done", "p/a", "--worker", "w1")
    assert res.code == 4 and "index.lock" in error(res)
    assert index_lock.exists()
    index_lock.unlink()
    repo.ok("done", "p/a", "--worker", "w1")
    assert events(repo, "p", "c")[-1]["actor"] == "w9"  # the orphan was recovered too
    assert repo.git("status", "--porcelain") == ""


@pytest.mark.format1
def test_commit_cut_off_after_head_moved_is_not_recommitted(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    rel = ".flow/plans/p/events/a.jsonl"
    # HEAD has the claim, the index still has the file as before it (killed before the
    # index was written back), and the journal is still there
    repo.git("reset", "-q", "HEAD~1", "--", rel)
    _journal(repo, rel)
    assert rel in repo.git("status", "--porcelain")
    before = repo.commits()
    res = repo.run("done", "p/a", "--worker", "w1")
    assert res.code == 0, res
    assert repo.commits() == before + 1
    assert repo.git("log", "-1", "--format=%s") == "flow(p/a): done"
    assert repo.git("status", "--porcelain") == ""


@pytest.mark.format1
def test_doctor_reports_a_git_lock_and_fixes_one_left_by_a_killed_command(repo: Repo) -> None:
    repo.plan("p", TWO)
    claim(repo, "p/a", "w1")
    index_lock = repo.path / ".git" / "index.lock"
    index_lock.write_text("")
    res = repo.run("doctor", "--json")
    assert res.code == 1 and [p["kind"] for p in res.json["problems"]] == ["git_lock"]
    # no journal: nothing says a flowgit command left it, so --fix leaves it
    res = repo.run("doctor", "--fix", "--json")
    assert res.code == 1 and index_lock.exists()
    index_lock.unlink()
    # killed mid-commit: the journal, the appended event and git's lock
    _append_orphan(repo, "p", "c", "w9")
    index_lock.write_text("")
    res = repo.run("doctor", "--json")
    assert res.code == 1
    assert {p["kind"] for p in res.json["problems"]} == {"git_lock", "journal", "uncommitted"}
    res = repo.run("doctor", "--fix", "--json")
    assert res.code == 0, res.out
    assert not index_lock.exists()
    assert repo.git("status", "--porcelain") == ""
    assert repo.run("doctor").code == 0


def test_who_acts_is_worker_then_flowgit_actor_then_git_email(repo: Repo) -> None:
    repo.plan("p", TWO)
    env = {**os.environ, "FLOWGIT_ACTOR": "agent-7"}
    res = repo.proc("claim", "p/a", "--json", env=env)
    assert res.returncode == 0 and json.loads(res.stdout)["worker"] == "agent-7"
    assert trailers(repo)["Flow-Actor"] == "agent-7"
    env.pop("FLOWGIT_ACTOR")
    email = repo.git("config", "user.email")
    res = repo.proc("claim", "p/c", "--json", env=env)
    assert res.returncode == 0 and json.loads(res.stdout)["worker"] == email
    res = repo.proc("done", "p/a", "--worker", "agent-7", env={**env, "FLOWGIT_ACTOR": "someone-else"})
    assert res.returncode == 0, res.stderr
