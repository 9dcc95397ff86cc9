"""formats/plaindump writes new tasks without ruamel: the same bytes as the round-trip dumper
whenever it writes anything, and a `task add` through it leaves the plan the round-trip
editor would."""
from __future__ import annotations

import random
from typing import Any

import pytest
from helpers import Repo

from flowgit.formats import yamlio
from flowgit.formats.plaindump import dump_tasks
from flowgit.formats.planslice import _block

SAFE = ["T-1", "t_2", "Added 3", "fix the (old) path/to.x", "a+b", "12abc", "e5", "T-00010", "x.y"]
WORDS = ["T-1", "t_2", "Added 3", "fix the (old) path/to.x", "a+b", "yes", "No", "on", "null", "~",
         "1.5", "0x1F", "1_000", "2026-01-01", "true", "a: b", "x #y", "-lead", " lead", "trail ",
         "two  spaces", "comma, here", "[x]", "{y}", "it's", 'say "hi"', "é accent", "", "=", "<<",
         "12abc", ".inf", "e5", "x" * 1200, "NaN", "@at", "%pct", "`tick`", "a\tb", "*star", "&amp"]


def word(rng: random.Random) -> str:
    return rng.choice(SAFE) if rng.random() < 0.85 else rng.choice(WORDS)


def rt(like: str, tasks: list[dict[str, Any]]) -> str:
    flow = any(line.split(": ", 1)[1].startswith("[") for line in like.splitlines()[1:] if ": " in line)
    doc = yamlio.rt_load("tasks: []\n", "x")
    doc["tasks"] = [_block(t, flow) for t in tasks]
    return yamlio.rt_dump(doc, like=like)


def likes() -> list[str]:
    out = []
    for dash in (0, 2, 4):
        pad, more = " " * dash, " " * (dash + 2)
        out.append(f"tasks:\n{pad}- id: A\n{more}title: Alpha\n")
        out.append(f"tasks:\n{pad}- id: A\n{more}title: Alpha\n{more}depends_on: [B, C]\n")
        out.append(f"tasks:\n{pad}- id: A\n{more}depends_on: [B]\n{more}files: [src/a.py, b]\n")
    return out


@pytest.mark.parametrize("seed", range(6))
def test_what_it_writes_is_what_the_round_trip_dumper_writes(seed: int) -> None:
    rng = random.Random(seed)
    fast = 0
    for _ in range(300):
        like = rng.choice(likes())
        tasks = []
        for _ in range(rng.randint(1, 3)):
            task: dict[str, Any] = {"id": word(rng), "title": word(rng)}
            if rng.random() < 0.6:
                task["depends_on"] = [word(rng) for _ in range(rng.randint(0, 3))]
            tasks.append(task)
        got = dump_tasks(like, tasks)
        if got is not None:
            fast += 1
            assert got == rt(like, tasks), (like, tasks)
    assert fast > 10  # the fast path was taken, and held to the dumper


def test_plain_tasks_after_plain_lines_are_written_without_ruamel() -> None:
    like = "tasks:\n  - id: A\n    title: Alpha\n    depends_on: [B]\n"
    tasks = [{"id": "N-1", "title": "Added (one)", "depends_on": ["A", "T-00010"]}]
    assert dump_tasks(like, tasks) == rt(like, tasks)
    assert dump_tasks(like, tasks) is not None
    for odd in ("tasks:\n  - id: A  # note\n", "tasks:\r\n  - id: A\r\n", "tasks:\n  - id: 'A'\n",
                "tasks:\n  - id: A\n    notes: |\n      text\n", "tasks:\n  - {id: A}\n"):
        assert dump_tasks(odd, tasks) is None, odd  # the dumper's turn
    assert dump_tasks("tasks:\n  - id: A\n", tasks) is None  # lists: block or flow? ask ruamel


def test_task_add_writes_what_the_round_trip_editor_writes(repo: Repo) -> None:
    plan = "id: p\ntitle: P\ntasks:\n  - id: A\n    title: Alpha\n    depends_on: []\n  - id: B\n    title: Beta\n    depends_on: [A]\n"
    repo.plan("p", plan)
    repo.ok("validate")  # the plan known to flowgit: the next add splices
    repo.ok("task", "add", "p", "C", "--title", "Gamma (third)", "--dep", "A", "--dep", "B")
    text = (repo.path / ".flow" / "plans" / "p" / "plan.yaml").read_text()
    assert text == plan + "  - id: C\n    title: Gamma (third)\n    depends_on: [A, B]\n"
    repo.ok("task", "add", "p", "D", "--title", "Delta: #4", "--dep", "C")  # ruamel's to quote
    text = (repo.path / ".flow" / "plans" / "p" / "plan.yaml").read_text()
    like = "tasks:\n  - id: C\n    title: Gamma (third)\n    depends_on: [A, B]\n"
    assert text.endswith(rt(like, [{"id": "D", "title": "Delta: #4", "depends_on": ["C"]}])[len("tasks:\n"):])
    assert "title: 'Delta: #4'" in text
