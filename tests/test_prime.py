"""`flowgit prime`: how to work in this repository now, in at most 8,000 bytes (text or JSON)
whatever the size of the plans."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import WEBHOOKS, Repo, make_git_repo

from flowgit.ops.prime import PRIME_MAX_BYTES, bounded, fit, prime_text


def big_plan(plan_id: str, n: int, title: str = "Task {i}: a title long enough to be cut at "
             "seventy-two characters, as prime does") -> str:
    lines = [f"id: {plan_id}", f"title: A plan of {n} tasks", "goal: Many tasks", "tasks:"]
    for i in range(n):
        lines += [f"  - id: T-{i:04d}", f"    title: {json.dumps(title.format(i=i))}"]
        if i % 4 == 3:
            lines.append(f"    depends_on: [T-{i - 1:04d}]")
    return "\n".join(lines) + "\n"


def test_prime_says_what_is_in_play_ready_and_held(repo: Repo) -> None:
    repo.plan("webhooks", WEBHOOKS)
    repo.plan("later", "id: later\ntitle: Later work\ntasks:\n  - id: L-1\n    title: One\n")
    repo.ok("submit", "webhooks")
    repo.ok("claim", "webhooks", "--worker", "w1")
    out = repo.ok("prime", "--worker", "w1").out
    assert out.startswith("# flowgit: how to work in this repository\n")
    assert "- webhooks [execute, 0% of 6]: Webhook delivery with retry" in out
    assert "- later [draft, 0% of 1]: Later work - draft: `flowgit submit later`" in out
    assert "## Held by w1 (1)\n- webhooks/T-WH-01 (claimed, lease until " in out
    assert "`flowgit claim [PLAN] --worker w1 --context`" in out
    assert '`flowgit done PLAN/TASK --worker w1 --note "what changed"`' in out
    assert "Never edit .flow/ by hand" in out and "Claim before you work" in out
    assert "`done` and a note" in out and "Approvals are for people" in out
    # another worker holds nothing, and what w1 holds is not ready for anyone
    other = repo.ok("prime", "--worker", "w2").out
    assert "## Held by w2 (0)\n- nothing: claim a task first" in other
    assert "## Ready (0)" in other


def test_prime_json(repo: Repo) -> None:
    repo.plan("webhooks", WEBHOOKS)
    repo.ok("submit", "webhooks")
    repo.ok("claim", "webhooks", "--worker", "w1")
    data = repo.ok("--json", "prime", "--worker", "w1").json
    assert data["worker"] == "w1" and data["initialized"] is True
    assert data["plans"] == [{"plan": "webhooks", "title": "Webhook delivery with retry", "phase": "execute",
                              "progress": 0, "tasks": 6, "ready": 0, "next": "nothing ready now"}]
    assert data["held"][0]["task"] == "webhooks/T-WH-01" and data["held"][0]["state"] == "claimed"
    assert data["totals"] == {"plans": 1, "complete": 0, "ready": 0, "held": 1}
    assert data["loop"][0]["command"] == "flowgit claim [PLAN] --worker w1 --context"
    assert len(data["rules"]) == 4


@pytest.mark.parametrize("n", [200, 2000])
def test_prime_stays_under_8000_bytes_whatever_the_plan_size(repo: Repo, n: int) -> None:
    repo.plan("big", big_plan("big", n))
    repo.ok("submit", "big")
    for _ in range(8):  # more than prime lists
        repo.ok("claim", "big", "--worker", "agent-1")
    text = repo.ok("prime", "--worker", "agent-1").out
    raw = repo.ok("--json", "prime", "--worker", "agent-1").out
    assert len(text.encode()) <= PRIME_MAX_BYTES and len(raw.encode()) <= PRIME_MAX_BYTES + 1
    ready = n - n // 4 - 8
    assert f"## Ready ({ready})" in text and f"... {ready - 10} more: `flowgit status big`" in text
    assert "## Held by agent-1 (8)" in text and "... 3 more: `flowgit status`" in text
    data = json.loads(raw)
    assert data["totals"]["ready"] == ready and len(data["ready"]) == 10 and len(data["held"]) == 5
    assert all(len(r["title"]) <= 72 for r in data["ready"])


def test_many_plans_long_ids_and_titles_still_fit(repo: Repo) -> None:
    title = "Ünïcödé " * 20
    for i in range(14):
        pid = f"p{i:02d}-" + "x" * 58
        repo.plan(pid, big_plan(pid, 12, title=title + "{i}"))
        repo.ok("submit", pid)
    worker = "w" * 200
    for _ in range(6):
        repo.ok("claim", "--worker", worker)
    text = repo.ok("prime", "--worker", worker).out
    raw = repo.ok("--json", "prime", "--worker", worker).out
    assert len(text.encode()) <= PRIME_MAX_BYTES and len(raw.encode()) <= PRIME_MAX_BYTES + 1
    assert "## Plans in play (14 of 14; 0 complete)" in text and "... 4 more: `flowgit plan list`" in text
    assert json.loads(raw)["totals"]["plans"] == 14


def test_the_guards_cut_at_a_line_and_drop_list_items() -> None:
    text = "".join(f"line {i:05d} " + "é" * 40 + "\n" for i in range(400))
    cut = fit(text)
    assert len(cut.encode()) <= PRIME_MAX_BYTES and cut.endswith("(cut to fit; `flowgit status` shows the rest)\n")
    assert all(line.startswith("line ") for line in cut.splitlines()[:-1])
    data = {"plans": [{"plan": "p" * 60, "x": "y" * 500}] * 30, "ready": [{"task": "t" * 500}] * 30,
            "held": [], "totals": {}}
    out = bounded(data)
    assert len(json.dumps(out).encode()) <= PRIME_MAX_BYTES and out["cut"] is True
    assert data["plans"] and len(data["plans"]) == 30  # the input is left alone
    assert prime_text({"worker": None, "initialized": True, "plans": [], "ready": [], "held": [],
                       "totals": {"plans": 0, "complete": 0, "ready": 0, "held": 0}, "loop": [],
                       "rules": []}).count("\n") > 5


def test_prime_before_init_and_without_an_actor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = Repo(make_git_repo(tmp_path / "bare"))
    bare.git("config", "--unset", "user.email")
    res = bare.ok("prime")
    assert "flowgit is not set up here yet: a person runs `flowgit init`." in res.out
    assert "## Held by you (no --worker, FLOWGIT_ACTOR or git user.email)" in res.out
    assert "--worker NAME --context" in res.out
    assert not (bare.path / ".flow").exists()
    assert bare.ok("--json", "prime").json["worker"] is None


def test_prime_writes_nothing(repo: Repo) -> None:
    repo.plan("webhooks", WEBHOOKS)
    repo.ok("submit", "webhooks")
    head, status = repo.git("rev-parse", "HEAD"), repo.git("status", "--porcelain")
    repo.ok("prime")
    assert repo.git("rev-parse", "HEAD") == head and repo.git("status", "--porcelain") == status


def test_a_complete_plan_is_counted_not_listed(repo: Repo) -> None:
    repo.plan("tiny", "id: tiny\ntitle: Tiny\ntasks:\n  - id: T-1\n    title: One\n")
    repo.ok("submit", "tiny")
    repo.ok("claim", "tiny", "--worker", "w")
    repo.ok("done", "tiny/T-1", "--worker", "w", "--note", "did it")
    assert "- tiny [execute, 100% of 1]: Tiny - every task finished: `flowgit advance tiny`" in repo.ok("prime").out
    repo.ok("advance", "tiny")
    assert "- tiny [finish, 100% of 1]: Tiny - all done: `flowgit finish tiny`" in repo.ok("prime").out
    repo.ok("finish", "tiny")
    out = repo.ok("prime").out
    assert "## Plans in play (0 of 1; 1 complete)" in out and "- tiny" not in out


def test_a_broken_plan_is_said_and_the_others_still_shown(repo: Repo) -> None:
    repo.plan("webhooks", WEBHOOKS)
    repo.ok("submit", "webhooks")
    repo.write(".flow/plans/broken/plan.yaml", "id: broken\ntitle: [unclosed\n")
    res = repo.ok("prime")
    line = next(x for x in res.out.splitlines() if x.startswith("- broken"))
    assert line.startswith("- broken [unreadable]: .flow/plans/broken/plan.yaml") and line.endswith("(`flowgit validate`)")
    assert "- webhooks [execute, 0% of 6]" in res.out and "## Ready (1)" in res.out
    assert repo.ok("--json", "prime").json["plans"][0]["phase"] == "unreadable"
