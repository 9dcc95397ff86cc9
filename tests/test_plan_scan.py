"""Issue 17: the first edit of a big plan.yaml that flowgit did not write (a pull, a hand edit)
finds the tasks' lines with a line scanner (`planslice.scan`) instead of the YAML composer, and
checks that version with the parse `load_plan` made instead of parsing it again. The scanner
must find exactly what the composer finds (`planslice.read`), or nothing: tested here on random
hand-written layouts (comments, blank lines, block scalars and their chomping, quoted and flow
values over several lines, anchors, nulls, CRLF, a byte order mark, several indentations), and
through the CLI, where the result must be the round-trip editor's, byte for byte."""
from __future__ import annotations

import random
from typing import Any

import pytest
from helpers import Repo

from flowgit.errors import InvalidFile
from flowgit.formats import planslice, yamlio
from flowgit.store import planedit, plansplice


def _description(rng: random.Random, ind: str, wild: bool) -> list[str]:
    kind = rng.randrange(11 if wild else 7)
    kind = kind if wild or kind < 3 else kind + 4
    if kind == 0:
        return [f"{ind}description: plain words, it's fine"]
    if kind == 1:
        return [f"{ind}description: 'single ''quoted'' # not a comment'"]
    if kind == 2:
        return [f'{ind}description: "double \\" quoted: yes"   # a comment']
    if kind == 3:
        return [f'{ind}description: "two', f'{ind}  lines"']
    if kind == 4:
        return [f"{ind}description: '- id: fake", f"{ind}  still quoted'"]
    chomp = rng.choice(["", "-", "+"])
    style = rng.choice(["|", ">"])
    body = [f"{ind}  # not a comment", f"{ind}  - not an item", f"{ind}    deeper"]
    rng.shuffle(body)
    out = [f"{ind}description: {style}{chomp}", f"{ind}  line one", *body]
    if rng.random() < 0.5:
        out += [""] * rng.randrange(1, 3)
    if rng.random() < 0.3:
        out.append(f"{ind[:-2]}# a comment after the text")
    return out


def layout_text(rng: random.Random, n: int, wild: bool) -> str:
    """A hand-written plan file of n tasks, laid out at random; `wild`: with quoted or flow
    values over lines, anchors, tags and nulls too."""
    column = rng.choice([0, 2, 2, 4])
    gap = rng.choice([" ", " ", "   "])
    ind = " " * (column + 1 + len(gap))
    out = ["# a plan written by hand", "id: p", "title: Random layout"]
    if rng.random() < 0.3:
        out += ["goal: |", "  A goal over lines", "  tasks: not the key"]
    out.append("tasks:" + ("  # the list" if rng.random() < 0.2 else ""))
    for i in range(n):
        if rng.random() < 0.15:
            out.append(" " * rng.choice([0, column, column + 2]) + "# between tasks")
        if rng.random() < 0.1:
            out.append("")
        dash = " " * column + "-" + gap
        if rng.random() < 0.85:
            out.append(f"{dash}id: t{i}" + ("  # its id" if rng.random() < 0.05 else ""))
            out.append(f"{ind}title: Task {i}")
        else:
            out.append(f"{dash}title: Task {i}")
            out.append(f"{ind}id: t{i}")
        deps = [f"t{rng.randrange(i)}" for _ in range(rng.randrange(3))] if i else []
        if deps:
            shape = rng.choice([0, 1, 2] if wild else [0, 2])
            if shape == 0:
                out.append(f"{ind}depends_on: [{', '.join(deps)}]")
            elif shape == 1:
                out += [f"{ind}depends_on: [{deps[0]},", f"{ind}  {', '.join(deps[1:]) or deps[0]}]"]
            else:
                out += [f"{ind}depends_on:"] + [f"{ind}  - {d}" for d in deps]
        extra = rng.randrange(12 if wild else 5)
        if extra < 4:
            out += _description(rng, ind, wild)
        elif extra == 4:
            out.append(f"{ind}files: &f{i} [src/a.py]")
        elif extra == 5:
            out.append(f"{ind}estimate:")
        elif extra == 6:
            out.append(f"{ind}priority: !!str high")
        elif extra == 7:
            out += [f"{ind}title2: a plain scalar", f"{ind}  over two lines"]
    if rng.random() < 0.5:
        out += ["", "checkpoints:", "  - id: cp", "    after: [t0]"]
    text = "\n".join(out) + "\n" * rng.randrange(1, 3)
    if rng.random() < 0.15:
        text = text.replace("\n", "\r\n")
    if rng.random() < 0.1:
        text = "\ufeff" + text
    return text


def _ids(text: str) -> list[str] | None:
    try:
        data = yamlio.loads(text.lstrip("\ufeff"), "plan.yaml")
    except InvalidFile:
        return None
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, list):
        return None
    return [str(t.get("id")) for t in tasks if isinstance(t, dict)]


@pytest.mark.parametrize("seed", range(40))
def test_the_scanner_finds_what_the_composer_finds_or_nothing(seed: int) -> None:
    rng = random.Random(seed)
    found = 0
    for k in range(25):
        text = layout_text(rng, rng.randrange(1, 12), wild=k % 2 == 1)
        ids = _ids(text)
        if ids is None:
            continue  # not YAML at all: load_plan refuses it before any edit
        composed = planslice.read(text, "plan.yaml")
        slow = planslice.scan(text, ids, fast=False)
        fast = planslice.scan(text, ids)
        assert slow is None or slow == composed, (seed, k, text)
        assert fast is None or fast == composed, (seed, k, text)
        if fast is not None and slow is not None:
            assert fast == slow
        found += slow is not None
        if composed is not None and ids:
            assert planslice.scan(text, list(reversed(ids)) if len(ids) > 1 else ["other"]) is None
    assert found, "the scanner never read a layout"


def test_plain_layouts_are_read_without_the_composer() -> None:
    rng = random.Random(7)
    text = "id: p\ntitle: Plain\ntasks:\n" + "".join(
        f"  - id: t{i}\n    title: Task {i}\n" + (f"    depends_on: [t{i - 1}]\n" if i else "")
        + ("    # a note\n\n" if rng.random() < 0.2 else "") for i in range(200)) + "checkpoints: []\n"
    ids = [f"t{i}" for i in range(200)]
    composed = planslice.read(text, "plan.yaml")
    assert composed is not None
    assert planslice.scan(text, ids) == composed == planslice.scan(text, ids, fast=False)
    # what makes a line-by-line reading unsure sends it to the composer
    for unsure in ("    title: 'two\n      lines'\n", "    title: !!str tagged\n", "    estimate:\n",
                   "    title: |\n      text\n", "    title: a\ttab\n"):
        changed = text.replace("    title: Task 199\n", unsure)
        assert planslice.scan(changed, ids, fast=True) in (None, planslice.read(changed, "plan.yaml"))


def _big(n: int) -> str:
    return "id: p\ntitle: Big\ngoal: Edited by hand\ntasks:\n" + "".join(
        f"  - id: t{i}\n    title: Task number {i}\n" + (f"    depends_on: [t{i - 3}]\n" if i >= 3 else "")
        for i in range(n))


def test_the_first_edit_after_a_pull_composes_nothing_and_parses_once(
        repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan changed outside flowgit, never validated here: the edit reads it whole once (the
    parse `load_plan` needs anyway), never composes it, and writes what the round-trip editor
    writes."""
    repo.plan("p", _big(300))
    path = repo.path / ".flow/plans/p/plan.yaml"
    path.write_text(path.read_text().replace("title: Task number 7\n", "title: Task seven, by hand\n"))
    repo.git("commit", "-q", "--no-verify", "-am", "a teammate's edit, pulled")
    before = path.read_text()
    loads: list[int] = []
    real_loads = yamlio.loads

    def spy(text: str, where: str) -> Any:
        loads.append(len(text))
        return real_loads(text, where)

    def no_compose(text: str, display: str) -> Any:
        raise AssertionError("composed the whole file")
    monkeypatch.setattr(yamlio, "loads", spy)
    monkeypatch.setattr(planslice, "read", no_compose)
    repo.ok("task", "add", "p", "new1", "--title", "Added after the pull", "--dep", "t7")
    assert sum(1 for size in loads if size >= len(before) / 2) == 1, loads
    monkeypatch.undo()
    expected = planedit.append_tasks(before, "plan.yaml", [
        {"id": "new1", "title": "Added after the pull", "depends_on": ["t7"]}])
    assert path.read_text() == expected
    assert repo.ok("validate", "--json").json["ok"]
    assert repo.ok("task", "show", "p/new1", "--json").json["state"] == "pending"


def test_a_broken_version_pulled_is_still_refused_by_the_full_check(repo: Repo) -> None:
    """The parse `load_plan` made vouches only for what it checks: a version whose schema is
    broken is refused with the full check's message (validate's), and nothing is written."""
    repo.plan("p", _big(40))
    path = repo.path / ".flow/plans/p/plan.yaml"
    path.write_text(path.read_text().replace("title: Task number 5\n", "title: Task number 5\n    priority: urgent\n"))
    repo.git("commit", "-q", "--no-verify", "-am", "a broken edit, pulled")
    head = repo.git("rev-parse", "HEAD")
    res = repo.run("task", "add", "p", "x1", "--title", "One")
    assert res.code == 1 and "urgent" in res.err and "Traceback" not in res.err
    assert repo.git("rev-parse", "HEAD") == head


def test_an_edit_after_a_pull_agrees_with_the_full_check(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random edits of a pulled version: what is written or refused, and the message, is what
    the round-trip editor and the full check give."""
    rng = random.Random(11)
    from flowgit.store.repo import FlowRepo

    for k in range(6):
        text = _big(60).replace("title: Task number 9\n", f"title: Pulled {k}\n")
        path = repo.write(".flow/plans/p/plan.yaml", text)
        fresh = FlowRepo(repo.path)
        loaded = fresh.load_plan("p")
        display = fresh.rel(path)
        dep = rng.choice(["t3", "nope", "t59"])
        task = {"id": f"n{k}", "title": f"New {k}", "depends_on": [dep]}
        try:
            fast: Any = plansplice.add_task(fresh, loaded, text, display, task).text
        except InvalidFile as exc:
            fast = exc.message
        try:
            full: Any = planedit.append_tasks(text, display, [task])
            planedit.check_plan_text(fresh, full, display, "p")
        except InvalidFile as exc:
            full = exc.message
        assert fast == full


def test_a_refused_edit_parses_nothing_whole_and_says_what_the_full_check_says(
        repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit the rules between tasks refuse (an unknown dependency, a cycle) is refused from
    the cached plan with the full check's message (ADR 0012): it used to parse the whole file
    again for the message (9 s at 50,000 tasks)."""
    repo.plan("p", _big(200))
    repo.ok("task", "add", "p", "warm", "--title", "Warms the index")
    path = repo.path / ".flow/plans/p/plan.yaml"
    text = path.read_text()
    refusals = [("task", "add", "p", "bad1", "--title", "Unknown dep", "--dep", "nowhere"),
                ("task", "edit", "p/t1", "--dep", "t199"),  # t199 waits on t1: a cycle
                ("task", "edit", "p/t5", "--dep", "t5")]
    expected = []
    for argv in refusals:
        if argv[1] == "add":
            new = planedit.append_tasks(text, "x", [{"id": argv[3], "title": argv[5], "depends_on": [argv[7]]}])
        else:
            new = planedit.edit_task_text(text, "x", argv[2].split("/")[1], {"depends_on": [argv[4]]})
        from flowgit.store.repo import FlowRepo
        with pytest.raises(InvalidFile) as full:
            planedit.check_plan_text(FlowRepo(repo.path), new, ".flow/plans/p/plan.yaml", "p")
        expected.append(full.value.message)
    sizes: list[int] = []
    real_loads = yamlio.loads

    def spy(text: str, where: str) -> Any:
        sizes.append(len(text))
        return real_loads(text, where)
    monkeypatch.setattr(yamlio, "loads", spy)
    head = repo.git("rev-parse", "HEAD")
    for argv, message in zip(refusals, expected):
        res = repo.run(*argv)
        assert res.code == 1 and message in res.err and "Traceback" not in res.err, (argv, res.err, message)
        assert path.read_text() == text and repo.git("rev-parse", "HEAD") == head
    assert sizes and max(sizes) < len(text) / 10, sizes
