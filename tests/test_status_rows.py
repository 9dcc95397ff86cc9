"""`status PLAN --json` writes its tasks' rows from pieces encoded once per distinct head
(state, worker, attempts, executor) instead of a dict per task (cli/commands/status.py,
issue 17): the text is byte for byte what the JSON encoder writes for the rows as dicts, for
tasks in every state (a lease, a retry, an error, an interruption, a wait, a hold, blockers
in this plan and another), with and without `executors.select` rules."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest

from flowgit.cli.commands import status
from flowgit.store.repo import FlowRepo

PLAN = """id: p
title: Rows of every kind
tags: [web]
retry: {base: 600, cap: 600}
tasks:
  - id: a
    title: Claimed
  - id: b
    title: Done
  - id: c
    title: Failed
  - id: d
    title: Retried later
  - id: e
    title: Blocked by a failure
    depends_on: [c]
  - id: f
    title: Pending on a claim
    depends_on: [a, b]
  - id: g
    title: Its own executor
    executor: shell
  - id: h
    title: Interrupted
  - id: i
    title: Waits on another plan
    depends_on: [q/x]
  - id: j
    title: Skipped
  - id: k
    title: Behind a skip
    depends_on: [j]
  - id: l
    title: A wait condition
    wait:
      run: [sh, -c, "exit 1"]
  - id: m
    title: Tagged
    tags: [big]
    estimate: 3h
  - id: "n"
    title: Held by a bad line
  - id: o
    title: Pending on two
    depends_on: [a, h, b]
"""
OTHER = "id: q\ntitle: Other\ntasks:\n  - id: x\n    title: X\n"


def rows_both_ways(repo: FlowRepo, now: float) -> tuple[str, str, list[dict[str, Any]]]:
    repo.forget_all()
    state = repo.state("p", now)
    plain = status._derived(repo, "p", state)["tasks"]
    encoded = status._derived(repo, "p", state, encoded=True)["tasks"]
    return encoded, json.dumps(plain, ensure_ascii=False), plain


@pytest.mark.parametrize("select", [False, True])
def test_encoded_rows_are_the_encoders_bytes(repo: Any, select: bool) -> None:
    repo.plan("q", OTHER)
    repo.plan("p", PLAN)
    if select:
        config = repo.path / ".flow" / "config.yaml"
        text = config.read_text().replace("executors: {}", "executors:\n  select:\n"
                                          "    - {executor: shell, tags: [big]}\n    - {executor: shell, max_estimate: 2}")
        assert "select" in text
        config.write_text(text)
        repo.git("commit", "-qam", "select rules")
    worker = "wörker \"quoted\" é"
    repo.ok("claim", "p/a", "--worker", worker, "--lease", "600")
    repo.ok("claim", "p/b")
    repo.ok("done", "p/b")
    repo.ok("claim", "p/c")
    repo.ok("fail", "p/c", "--error", "it said \"no\"\tand\u2028then ü")
    repo.ok("claim", "p/d")
    repo.ok("fail", "p/d", "--retry", "--error", "try again")
    repo.ok("claim", "p/h", "--lease", "1")
    repo.ok("claim", "p/j")
    repo.ok("fail", "p/j", "--skip-dependents", "--error", "not needed")
    flow = FlowRepo(repo.path)
    if flow.state_store is None:  # format 1: a bad line in the task's log holds it
        (repo.path / ".flow" / "plans" / "p" / "events" / "n.jsonl").write_text("not json\n")
    now = time.time() + 5
    encoded, dumped, rows = rows_both_ways(flow, now)
    assert encoded == dumped
    states = {r["id"]: r["state"] for r in rows}
    assert states["a"] == "claimed" and states["c"] == "failed" and states["d"] == "retry_wait"
    assert states["e"] == "blocked" and states["f"] == "pending" and states["k"] == "skipped"
    assert any(r.get("interrupted") for r in rows) and any(r.get("error") for r in rows)
    assert any(r.get("waiting_on") for r in rows) and any(len(r.get("blocked_by", ())) > 1 for r in rows)
    for later in (now + 3600, now + 10**6):  # leases run out, retries fall due
        encoded, dumped, _ = rows_both_ways(flow, later)
        assert encoded == dumped
    assert [r.get("executor_why") for r in rows].count(None) == 0


def test_a_big_plans_rows_are_the_encoders_bytes(repo: Any) -> None:
    """Thousands of rows with a handful of distinct heads, and blockers on every other one."""
    lines = ["id: p", "title: Big", "tasks:"]
    for i in range(3000):
        lines += [f"  - id: T-{i:04d}", f"    title: Task {i}"]
        if i % 2:
            lines.append(f"    depends_on: [T-{i - 1:04d}]")
    repo.plan("p", "\n".join(lines) + "\n")
    for i in range(0, 40, 2):
        repo.ok("claim", f"p/T-{i:04d}")
        if i % 4:
            repo.ok("done", f"p/T-{i:04d}")
    encoded, dumped, rows = rows_both_ways(FlowRepo(repo.path), time.time())
    assert encoded == dumped and len(rows) == 3000
