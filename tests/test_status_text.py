"""Compact `status` text (issue 15): titles, a big plan grouped (running, ready, failed, what
blocks), `--limit N` and `--all`; `status --json` keeps every field and the full task list."""
from __future__ import annotations

import pytest
from helpers import Repo


def big_plan(n: int) -> str:
    lines = ["id: big", "title: A big plan", "tasks:"]
    for i in range(n):
        lines += [f"  - id: T{i:03d}", f"    title: Task {i} with a title"]
        if i >= 5 and i % 3:
            lines.append(f"    depends_on: [T{i % 5:03d}]")
    return "\n".join(lines) + "\n"


@pytest.fixture
def big(repo: Repo) -> Repo:
    repo.plan("big", big_plan(200))
    repo.ok("claim", "big/T000", "--worker", "w1")
    repo.ok("fail", "big/T000", "--worker", "w1", "--error", "disk full")
    repo.ok("claim", "big/T001", "--worker", "w2")
    return repo


def test_a_big_plan_is_grouped_with_titles(big: Repo) -> None:
    out = big.ok("status", "big").out
    lines = out.splitlines()
    assert len(lines) < 30, out
    assert lines[:3] == ["big: A big plan", "phase: execute   [" + "-" * 30 + "] 0%",
                         "tasks: 104 pending, 68 ready, 1 claimed, 1 failed, 26 blocked"]
    assert "running (1):" in lines
    assert "  claimed      T001  Task 1 with a title (w2)" in lines
    assert "ready, best first (68):" in lines
    assert "  T002  Task 2 with a title" in lines
    assert "  ... 58 more" in lines  # ten shown
    assert "  T000  Task 0 with a title (error: disk full)" in lines
    assert "blocked (26): T000 (failed) blocks 26" in lines
    assert "`flowgit retry big/TASK` makes a failed task (or those blocking one) ready again" in lines
    assert lines[-1].startswith("200 tasks: `flowgit status big --all` lists every one")


def test_limit_and_all(big: Repo) -> None:
    short = big.ok("status", "big", "--limit", "3").out.splitlines()
    assert "  ... 65 more" in short and len(short) < 18  # the header, the executors line, 3 per group and the blocked line
    every = big.ok("status", "big", "--all").out.splitlines()
    rows = [ln for ln in every if ln.startswith("  ") and " T" in ln]
    assert len(rows) == 200
    assert "  failed       T000  Task 0 with a title (error: disk full)" in every
    assert "  blocked      T010  Task 10 with a title (on T000)" in every
    for bad in ("0", "-2", "x"):
        res = big.run("status", "big", "--limit", bad)
        assert res.code == 2 and "Traceback" not in res.err


def test_a_small_plan_is_listed_whole_with_titles(repo: Repo) -> None:
    repo.plan("s", "id: s\ntitle: Small\ntasks:\n  - {id: a, title: First thing}\n"
              "  - {id: b, title: Second thing, depends_on: [a]}\n")
    out = repo.ok("status", "s").out.splitlines()
    assert "ready: a" in out
    assert "  ready        a  First thing" in out
    assert "  pending      b  Second thing (on a)" in out
    overview = repo.ok("status").out
    assert overview.rstrip().endswith("Small")


def test_json_keeps_every_field_and_every_task(big: Repo) -> None:
    for extra in ((), ("--limit", "2"), ("--all",)):
        data = big.ok("status", "big", "--json", *extra).json
        assert {"plan", "phase", "progress", "counts", "ready", "stalled", "tasks"} <= set(data)
        assert len(data["tasks"]) == 200 and len(data["ready"]) == 68
        assert {"id", "state", "worker", "attempts"} <= set(data["tasks"][0])
        assert "title" not in data["tasks"][0]  # the rows are as before
