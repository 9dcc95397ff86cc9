"""Tasks of plain fields are built without a message per field (core/plaintask.py, issue 17):
the plan `Plan.from_dict` builds, or the error it raises, is the same with that shortcut and
without it, on generated tasks valid and broken; the case-twin check's shortcut says what the
long way says; and the graph facts read from columns are the ones read from tasks."""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest

from flowgit.core import model, plaintask
from flowgit.errors import InvalidFile
from flowgit.ids import case_twins

VALUES: dict[str, list[Any]] = {
    "id": ["T-1", "T-2", "t-1", "a.b", "CON", "x.", "a..b", "", 5, None, ["T-3"], "é"],
    "title": ["A title", "", None, 3, ["x"], True],
    "description": ["text", "", None, 4, ["x"]],
    "depends_on": [["T-1"], [], None, "T-1", [1], ["T-1", None], [["T-1"]]],
    "priority": ["high", "medium", "low", "urgent", None, 1, ["high"], "High"],
    "estimate": ["2h", "30m", "soon", None, 2, 2.5, -1, True, float("nan"), ["1h"]],
    "acceptance": [["done"], [], None, "done", [3]],
    "tags": [["a"], None, [None]],
    "adrs": [["0001"], None, "0001"],
    "files": [["src/a.py"], ["../x"], None],
    "executor": ["shell", None],
    "x-note": ["anything"],
    "colour": ["red"],
}


def task(rng: random.Random, i: int) -> Any:
    if rng.random() < 0.03:
        return rng.choice([None, "T-1", ["T-1"], 3])
    data: dict[str, Any] = {"id": f"T-{i}", "title": f"Task {i}"}
    for key in rng.sample(sorted(VALUES), rng.randint(0, 4)):
        if rng.random() < 0.7 or key in ("id", "title"):
            data[key] = rng.choice(VALUES[key])
    if rng.random() < 0.05:
        del data[rng.choice(sorted(data))]
    return data


def built(raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch, fast: bool) -> Any:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(plaintask, "plain_values", lambda data: None)
        try:
            plan = model.Plan.from_dict(raw, "plan.yaml")
        except InvalidFile as exc:
            return "error", str(exc)
        return "ok", plan, [t.__dict__ for t in plan.tasks]


@pytest.mark.parametrize("seed", range(6))
def test_plans_build_the_same_with_and_without_the_shortcut(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    shortcut = 0
    for _ in range(300):
        tasks = [task(rng, i) for i in range(rng.randint(0, 5))]
        raw = {"id": "p", "title": "P", "tasks": tasks}
        assert built(raw, monkeypatch, True) == built(raw, monkeypatch, False), tasks
        shortcut += sum(plaintask.plain_values(t) is not None for t in tasks)
    assert shortcut > 200  # the comparison covers the shortcut, not only the long way


def test_the_shortcut_knows_the_priorities_and_keys_of_a_task() -> None:
    assert plaintask._PRIORITIES == model.PRIORITIES
    assert plaintask.PLAIN_KEYS <= model.Task._KEYS


@pytest.mark.parametrize("seed", range(20))
def test_case_twins_shortcut(seed: int) -> None:
    rng = random.Random(seed)
    ids = ["".join(rng.choice("aAbB-ß") for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(0, 8))]
    groups: dict[str, list[str]] = defaultdict(list)
    for ident in ids:
        if ident not in groups[ident.casefold()]:
            groups[ident.casefold()].append(ident)
    assert case_twins(ids) == sorted(sorted(g) for g in groups.values() if len(g) > 1)
    assert case_twins(iter(ids)) == case_twins(ids)


def test_graph_facts_and_cycles_from_columns(repo: Any) -> None:
    """`status` orders and ranks a plan with estimates of every kind, a checkpoint and a
    dependency on another plan; a cycle is refused in one line naming the plan file."""
    repo.plan("other", "id: other\ntitle: Other\ntasks:\n  - id: O-1\n    title: Far\n")
    repo.plan("p", "id: p\ntitle: P\ntasks:\n"
              "  - id: A\n    title: a\n    estimate: 2h\n"
              "  - id: B\n    title: b\n    estimate: 3\n    depends_on: [A, other/O-1]\n"
              "  - id: C\n    title: c\n    estimate: 1d\n    depends_on: [A]\n"
              "checkpoints:\n  - id: CP\n    after: [B, C]\n")
    tasks = {t["id"]: t["state"] for t in repo.ok("--json", "status", "p").json["tasks"]}
    assert tasks == {"A": "ready", "B": "pending", "C": "pending"}
    assert repo.ok("next", "p", "--json").json["task"] == "p/A"
    plan = repo.path / ".flow" / "plans" / "p" / "plan.yaml"
    plan.write_text(plan.read_text().replace("    estimate: 2h\n", "    depends_on: [C]\n"))
    res = repo.run("--json", "status", "p")
    assert res.code == 1 and "Traceback" not in res.out + res.err
    assert "plan.yaml" in res.json["error"]["message"] and "cycle" in res.json["error"]["message"]
