"""Issue 17: `task add` and `task edit` on a big plan splice the task's lines over a cached index
of the file and check only what the change can break. Whatever they write or refuse, and the
message, is what the full check (parse the whole file, `validate`'s rules) gives: tested on
random edits of generated plans, valid and not, and through the CLI."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

import pytest
from helpers import Repo, copy_repo, prebuilt
from helpers.cache import drop_derived

from flowgit.errors import FlowError, InvalidFile
from flowgit.formats import yamlio
from flowgit.store import planedit, plansplice
from flowgit.store.repo import FlowRepo

OTHER = """\
id: other
title: Another plan
tasks:
  - id: o1
    title: One
"""


def plan_text(rng: random.Random, n: int) -> str:
    """A plan of n tasks written by hand: comments, blank lines, flow or block lists."""
    out = ["# generated", "id: p", "title: Random plan", "adrs: [ADR-0001]", "tasks:"]
    flow = rng.random() < 0.5
    for i in range(n):
        if rng.random() < 0.2:
            out.append("  # a comment between tasks")
        out.append(f"  - id: t{i}")
        out.append(f"    title: Task {i}" + ("   # trailing" if rng.random() < 0.1 else ""))
        deps = sorted({f"t{rng.randrange(i)}" for _ in range(rng.randrange(3))}) if i else []
        if i == 3:
            deps.append("other/o1")
        if deps:
            out += ([f"    depends_on: [{', '.join(deps)}]"] if flow else
                    ["    depends_on:"] + [f"      - {d}" for d in deps])
        if rng.random() < 0.3:
            out += ["    description: |", f"      line one of {i}", "      line two"]
        if rng.random() < 0.2:
            out.append("")
    out += ["checkpoints:", "  - id: cp", "    title: Gate", "    after: [t1]",
            "milestones:", "  - id: m1", "    tasks: [t0]"]
    return "\n".join(out) + "\n"


def random_fields(rng: random.Random, ids: list[str]) -> dict[str, Any]:
    """Fields of a task: mostly valid, sometimes not (unknown or cross-plan dependencies, a
    cycle, an ADR that is not there, a bad priority, a path the rules refuse, an empty title)."""
    pool = ids + ["nope", "other/o1", "other/zz", "p", "p/t0", "missing-plan/x", "cp"]
    fields: dict[str, Any] = {}
    if rng.random() < 0.6:
        fields["depends_on"] = rng.sample(pool if rng.random() < 0.3 else ids, rng.randrange(1, 3))
    if rng.random() < 0.2:
        fields["adrs"] = [rng.choice(["ADR-0001", "ADR-0099"])]
    if rng.random() < 0.1:
        fields["priority"] = rng.choice(["high", "urgent"])
    if rng.random() < 0.1:
        fields["files"] = [rng.choice(["src/ok.py", "../up.py"])]
    if rng.random() < 0.05:
        fields["title"] = ""
    if rng.random() < 0.2:
        fields["description"] = "two\nlines"
    return fields


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except FlowError as exc:
        return "refused", exc.message


def _plan_other(repo: Repo) -> None:
    (repo.path / ".flow" / "adrs").mkdir(exist_ok=True)
    repo.write(".flow/adrs/ADR-0001-first.yaml", "id: ADR-0001\ntitle: First\nstatus: accepted\n")
    repo.git("add", ".flow/adrs")
    repo.git("commit", "-q", "--no-verify", "-m", "an ADR")
    repo.plan("other", OTHER)


@pytest.fixture(scope="module")
def _planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prebuilt(tmp_path_factory, _plan_other)


@pytest.fixture
def planned(_planned: Path, tmp_path: Path) -> Repo:
    return copy_repo(_planned, tmp_path / "repo")


@pytest.mark.parametrize("seed", range(6))
def test_incremental_check_agrees_with_the_full_one(planned: Repo, seed: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    path = planned.write(".flow/plans/p/plan.yaml", plan_text(rng, 30 + seed * 7))
    full_checks = []
    real_check = plansplice.check_plan_text

    def counted(*args: Any) -> Any:
        full_checks.append(args[1])
        return real_check(*args)
    monkeypatch.setattr(plansplice, "check_plan_text", counted)
    repo = FlowRepo(planned.path)
    fast_ok = 0
    for step in range(40):
        loaded = repo.load_plan("p")
        text = path.read_text()
        ids = [t.id for t in loaded.plan.tasks]
        display = repo.rel(path)
        if rng.random() < 0.5:
            new_id = rng.choice([f"n{seed}-{step}", "T0", "cp2"])
            task = {"id": new_id, "title": f"Added {step}", **random_fields(rng, ids)}
            if new_id in ids:
                continue
            fast = outcome(lambda: plansplice.add_task(repo, loaded, text, display, task))
            full = outcome(lambda: planedit.check_plan_text(
                repo, planedit.append_tasks(text, display, [task]), display, "p"))
            target = new_id
        else:
            target = rng.choice(ids)
            changes = random_fields(rng, ids)
            if not changes:
                changes = {"title": f"Renamed {step}"}
            fast = outcome(lambda: plansplice.edit_task(repo, loaded, text, display, target, changes))
            full_text = planedit.edit_task_text(text, display, target, changes)
            full = outcome(lambda: planedit.check_plan_text(repo, full_text, display, "p"))
            if fast[0] == "ok":
                assert fast[1].text == full_text
        assert fast[0] == full[0], (step, fast, full)
        if fast[0] == "refused":
            assert fast[1] == full[1]
            continue
        edited = fast[1]
        assert edited.plan == full[1]
        before = len(full_checks)
        path.write_text(edited.text)
        plansplice.remember(repo, edited, loaded.hash, target)
        repo.forget("p")
        fast_ok += before == len(full_checks)
    assert fast_ok >= 3, fast_ok  # after the first (which checks it all), the edits check only themselves
    # what the edits cached is what a fresh read of the file gives
    fresh = FlowRepo(planned.path)
    fresh.cache.drop_all()
    fresh.plan_cache.drop_all()
    drop_derived(planned.path)
    assert fresh.load_plan("p").plan == repo.load_plan("p").plan


def test_the_fast_path_is_taken_and_parses_nothing_whole(planned: Repo,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    planned.plan("p", plan_text(random.Random(1), 60))
    planned.ok("task", "add", "p", "first", "--title", "First add", "--dep", "t5")
    sizes: list[int] = []
    real_loads = yamlio.loads

    def spy(text: str, path: str) -> Any:
        sizes.append(len(text))
        return real_loads(text, path)
    monkeypatch.setattr(yamlio, "loads", spy)
    planned.ok("task", "add", "p", "second", "--title", "Second add", "--dep", "first")
    planned.ok("task", "edit", "p/t7", "--title", "Seventh, renamed", "--dep", "t2")
    whole = len((planned.path / ".flow/plans/p/plan.yaml").read_text())
    assert sizes and max(sizes) < whole / 10, sizes
    assert "- id: second\n    title: Second add\n    depends_on:" in (planned.path / ".flow/plans/p/plan.yaml").read_text()
    states = {t["id"]: t["state"] for t in planned.ok("status", "p", "--json").json["tasks"]}
    assert states["second"] == states["first"] == "pending"
    # refused by the rules the full check has, with its message, nothing written
    head = planned.git("rev-parse", "HEAD")
    res = planned.run("task", "edit", "p/t1", "--dep", "second")
    assert res.code == 1 and "dependency cycle" in res.err
    assert planned.git("rev-parse", "HEAD") == head
    monkeypatch.setattr(yamlio, "loads", real_loads)
    assert planned.ok("validate", "--json").json["ok"]


def test_an_outside_change_is_read_whole_again(planned: Repo) -> None:
    planned.plan("p", plan_text(random.Random(2), 20))
    planned.ok("task", "add", "p", "x1", "--title", "One")
    path = planned.path / ".flow/plans/p/plan.yaml"
    path.write_text(path.read_text().replace("title: Task 4\n", "title: Task four\n"))
    planned.git("commit", "-qam", "edited by hand")
    planned.ok("task", "edit", "p/t6", "--title", "Six")
    text = path.read_text()
    assert "title: Task four\n" in text and "title: Six\n" in text
    planned.ok("task", "add", "p", "x2", "--title", "Two", "--dep", "t4")
    assert planned.ok("task", "show", "p/t4", "--json").out.count("Task four") >= 1


def test_an_index_of_another_version_is_not_used(tmp_path: Path) -> None:
    from flowgit.formats import planslice

    text = plan_text(random.Random(3), 5)
    layout = planslice.read(text, "plan.yaml")
    assert layout is not None
    index = planslice.index_of(layout, planslice.digest_of(text))
    entry = planslice.to_cache(index)
    assert planslice.from_cache(entry, planslice.digest_of(text)) == index
    assert planslice.from_cache(entry, planslice.digest_of(text + "#\n")) is None
    assert planslice.from_cache({**entry, "index_version": 0}, index.digest) is None
    for start, end, ident in zip(index.starts, index.ends, index.ids):
        assert text[start:end].lstrip().startswith(f"- id: {ident}\n")


def test_a_plan_that_is_invalid_elsewhere_is_still_refused(planned: Repo) -> None:
    planned.plan("p", plan_text(random.Random(4), 10))
    planned.ok("task", "add", "p", "y1", "--title", "Warm the index")
    path = planned.path / ".flow/plans/p/plan.yaml"
    path.write_text(path.read_text().replace("adrs: [ADR-0001]", "adrs: [ADR-0001, ADR-0042]"))
    planned.git("commit", "-q", "--no-verify", "-am", "names an ADR that is not there")
    with pytest.raises(InvalidFile):
        repo = FlowRepo(planned.path)
        loaded = repo.load_plan("p")
        plansplice.add_task(repo, loaded, path.read_text(), repo.rel(path), {"id": "y2", "title": "t"})
    res = planned.run("task", "add", "p", "y3", "--title", "Three")
    assert res.code == 1 and "ADR-0042" in res.err
    (planned.path / ".flow/adrs/ADR-0001-first.yaml").unlink()
    planned.git("commit", "-q", "--no-verify", "-am", "ADR gone")
    res = planned.run("task", "edit", "p/t2", "--title", "Still checked")
    assert res.code == 1 and "ADR-0001" in res.err


def test_a_version_validate_checked_is_not_parsed_again_by_the_first_edit(
        planned: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    planned.plan("p", plan_text(random.Random(5), 60))
    path = planned.path / ".flow/plans/p/plan.yaml"
    path.write_text(path.read_text().replace("title: Task 4\n", "title: Task four\n"))
    planned.git("commit", "-qam", "edited by hand")  # the hook validates the staged plan
    planned.ok("validate")
    sizes: list[int] = []
    real_loads = yamlio.loads

    def spy(text: str, where: str) -> Any:
        sizes.append(len(text))
        return real_loads(text, where)
    monkeypatch.setattr(yamlio, "loads", spy)
    planned.ok("task", "add", "p", "after-validate", "--title", "First edit", "--dep", "t4")
    assert sizes and max(sizes) < len(path.read_text()) / 10, sizes
    # and what it refuses is still what the full check refuses
    res = planned.run("task", "edit", "p/t2", "--dep", "after-validate", "--dep", "nowhere")
    assert res.code == 1 and "nowhere" in res.err
    monkeypatch.setattr(yamlio, "loads", real_loads)
    assert planned.ok("validate", "--json").json["ok"]
