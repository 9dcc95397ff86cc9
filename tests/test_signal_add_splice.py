"""Issue 17: the watcher's `add_tasks` signal (how a planner adds tasks at run time) splices the
tasks after the last one's lines and checks each against the cached plan, as `task add` does,
instead of composing and parsing the whole plan twice; after the write the new version's index
and plan are cached, so the next read parses nothing. What it writes is `append_tasks`'s bytes,
and what it refuses, with the message, is the full check's (tasks that name each other, or
several bad ones, go to the full check, which alone says what they break together)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import Repo, of_type, status

from flowgit.errors import InvalidFile
from flowgit.formats import yamlio
from flowgit.store import planedit
from flowgit.store.repo import FlowRepo
from flowgit.watcher import observer as watch

pytestmark = pytest.mark.usefixtures("venv_on_path")


def _big(n: int) -> str:
    return "id: p\ntitle: Big\n# kept\ntasks:\n" + "".join(
        f"  - id: t{i}\n    title: Task number {i}\n" + (f"    depends_on: [t{i - 3}]\n" if i >= 3 else "")
        for i in range(n))


def _pass(repo: Repo) -> None:
    lines: list[str] = []
    assert watch.one_pass(repo.path, lines.append, watch.extras(None, [])) != -1, lines
    assert not any("Traceback" in line for line in lines), lines


@pytest.fixture
def big(repo: Repo) -> Repo:
    path = repo.path / ".flow" / "config.yaml"
    path.write_text(path.read_text() + "signals:\n  add: {builtin: add_tasks}\n")
    repo.git("commit", "-q", "--no-verify", "-m", "config", "--", ".flow/config.yaml")
    repo.ok("trust")
    repo.plan("p", _big(300))
    repo.ok("submit", "p")
    repo.ok("task", "add", "p", "warm", "--title", "Warms the index")  # a version flowgit wrote
    return repo


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    real = yamlio.loads

    def spy(text: str, where: str) -> Any:
        sizes.append(len(text))
        return real(text, where)
    monkeypatch.setattr(yamlio, "loads", spy)
    return sizes


def test_add_tasks_splices_and_caches(big: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    path = big.path / ".flow/plans/p/plan.yaml"
    before = path.read_text()
    tasks = [{"id": "n1", "title": "New one", "depends_on": ["t7"]},
             {"id": "n2", "title": "After n1", "depends_on": ["n1", "t8"], "priority": "high"},
             {"id": "n3", "title": "Alone"}]
    big.ok("signal", "p", "add", "--data", json.dumps({"tasks": tasks}))
    sizes = _spy(monkeypatch)
    _pass(big)
    rows = {t["id"]: t for t in status(big, "p")["tasks"]}
    assert sizes and max(sizes) < len(before) / 10, sizes  # nothing parsed whole, read after too
    monkeypatch.undo()
    assert path.read_text() == planedit.append_tasks(before, "x", tasks)
    assert of_type(big, "p", "signal.handled")[-1]["data"]["added"] == ["n1", "n2", "n3"]
    assert rows["n3"]["state"] == "ready" and rows["n2"]["state"] == "pending"
    fresh = FlowRepo(big.path)
    assert [t.id for t in fresh.load_plan("p").plan.tasks][-3:] == ["n1", "n2", "n3"]
    assert big.ok("validate", "--json").json["ok"]


@pytest.mark.parametrize("tasks", [
    [{"id": "m1", "title": "Waits on the next", "depends_on": ["m2"]}, {"id": "m2", "title": "Second"}],
    [{"id": "m1", "title": "Bad dep", "depends_on": ["nowhere"]},
     {"id": "m2", "title": "Another bad", "depends_on": ["elsewhere"]}],
    [{"id": "m1", "title": "First"}, {"id": "m2", "title": "A cycle", "depends_on": ["m2"]}],
])
def test_what_the_full_check_says_of_the_batch(big: Repo, tasks: list[dict[str, Any]]) -> None:
    path = big.path / ".flow/plans/p/plan.yaml"
    before = path.read_text()
    full = planedit.append_tasks(before, ".flow/plans/p/plan.yaml", tasks)
    try:
        planedit.check_plan_text(FlowRepo(big.path), full, ".flow/plans/p/plan.yaml", "p")
        expected = None
    except InvalidFile as exc:
        expected = exc.message
    big.ok("signal", "p", "add", "--data", json.dumps({"tasks": tasks}))
    _pass(big)
    final = of_type(big, "p", "signal.handled")[-1]["data"]
    if expected is None:
        assert final["outcome"] == "ok" and path.read_text() == full
    else:
        assert final["outcome"] == "failed" and final["error"] == expected, (final, expected)
        assert path.read_text() == before
    assert big.run("validate").code == 0
