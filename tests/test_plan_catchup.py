"""Issue 17: the first `task add` or `task edit` after plan.yaml changed outside flowgit (a pull,
a teammate's commit) checks only the tasks that changed against the last version this clone
checked (store/plancatch.py). Whatever it vouches for must be what the full check (the whole
file parsed and checked) says: each case here runs the same command on two copies of one
repository, one with the catch-up and one without, and compares the exit code, the message,
the file written and the status after, on generated, mutated and hostile pulled plans."""
from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from helpers import Repo, copy_repo, init_repo, prebuilt
from test_plan_splice import OTHER, plan_text

from flowgit.store import plancatch

PLAN = ".flow/plans/p/plan.yaml"


def _plan_other(repo: Repo) -> None:
    (repo.path / ".flow" / "adrs").mkdir(exist_ok=True)
    repo.write(".flow/adrs/ADR-0001-first.yaml", "id: ADR-0001\ntitle: First\nstatus: accepted\n")
    repo.git("add", ".flow/adrs")
    repo.git("commit", "-q", "--no-verify", "-m", "an ADR")
    repo.plan("other", OTHER)


def _edit_once(repo: Repo) -> None:
    _plan_other(repo)
    repo.plan("p", plan_text(random.Random(5), 40))
    repo.ok("task", "add", "p", "first", "--title", "First add", "--dep", "t5")


@pytest.fixture(scope="module")
def _planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prebuilt(tmp_path_factory, _plan_other)


@pytest.fixture(scope="module")
def _edited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prebuilt(tmp_path_factory, _edit_once)


@pytest.fixture
def planned(_planned: Path, tmp_path: Path) -> Repo:
    """An ADR and plan `other` (a copy of the module's: tests change it)."""
    return copy_repo(_planned, tmp_path / "repo")


def _task(text: str, ident: str) -> tuple[int, int]:
    """Where task `ident`'s lines are (up to the next task, or the `checkpoints:` key)."""
    start = text.index(f"  - id: {ident}\n")
    nxt = re.compile(r"^(  - id: |checkpoints:)", re.M).search(text, start + 1)
    assert nxt is not None
    return start, nxt.start()


def _swap(text: str, a: str, b: str) -> str:
    (s1, e1), (s2, e2) = sorted([_task(text, a), _task(text, b)])
    return text[:s1] + text[s2:e2] + text[e1:s2] + text[s1:e1] + text[e2:]


def _drop(text: str, ident: str) -> str:
    s, e = _task(text, ident)
    return text[:s] + text[e:]


def _sub(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    def change(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, count)
    return change


def _deps(text: str, ident: str) -> list[str]:
    s, e = _task(text, ident)
    block = text[s:e]
    flow = re.search(r"depends_on: \[(.*)\]", block)
    if flow:
        return [d.strip() for d in flow.group(1).split(",") if d.strip()]
    return re.findall(r"^      - (\S+)$", block, re.M)


def _set_deps(ident: str, deps: list[str]) -> Callable[[str], str]:
    def change(text: str) -> str:
        s, e = _task(text, ident)
        block = re.sub(r"    depends_on:(?: \[.*\]\n|\n(?:      - .*\n)*)", "", text[s:e])
        head, nl, rest = block.partition("\n")
        title, nl2, rest2 = rest.partition("\n")
        new = f"{head}{nl}{title}\n    depends_on: [{', '.join(deps)}]\n{rest2}"
        return text[:s] + new + text[e:]
    return change


def _two_copies(planned: Repo, tmp_path: Path) -> tuple[Repo, Repo]:
    """The repository as it is, and a copy of it (its derived caches too)."""
    copy = tmp_path / "copy"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(planned.path, copy, symlinks=True)
    return planned, Repo(copy)


def _normal(result: Any) -> tuple[int, str, str]:
    hexes = re.compile(r"\b[0-9a-f]{40}\b")
    return result.code, hexes.sub("SHA", result.out), hexes.sub("SHA", result.err)


def compare(planned: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Callable[[str], str],
            command: tuple[str, ...] = ("task", "add", "p", "added", "--title", "Added", "--dep", "t2"),
            ) -> tuple[bool, tuple[int, str, str]]:
    """A teammate's commit changes plan.yaml; then `command` with the catch-up and without.
    Returns whether the catch-up vouched for the pulled version, and the outcome."""
    path = planned.path / PLAN
    path.write_text(change(path.read_text()))
    planned.git("commit", "-q", "--no-verify", "--allow-empty", "-am", "a teammate's edit")
    fast, full = _two_copies(planned, tmp_path)
    took: list[bool] = []
    real = plancatch.catch_up

    def spy(repo: Any, plan_id: str) -> bool:
        took.append(real(repo, plan_id))
        return took[-1]
    monkeypatch.setattr(plancatch, "catch_up", spy)
    got = fast.run(*command)
    monkeypatch.setattr(plancatch, "catch_up", lambda repo, plan_id: False)
    want = full.run(*command)
    monkeypatch.setattr(plancatch, "catch_up", real)
    assert _normal(got) == _normal(want)
    assert "Traceback" not in got.err
    assert (fast.path / PLAN).read_bytes() == (full.path / PLAN).read_bytes()
    assert fast.git("rev-parse", "HEAD:" + PLAN) == full.git("rev-parse", "HEAD:" + PLAN)
    if got.code == 0:
        assert fast.ok("status", "p", "--json").json["tasks"] == full.ok("status", "p", "--json").json["tasks"]
        assert fast.ok("validate", "--json").json == full.ok("validate", "--json").json
    return any(took), _normal(got)


@pytest.fixture
def edited(_edited: Path, tmp_path: Path) -> Repo:
    """A plan flowgit edited once (the version the next pull is compared with)."""
    return copy_repo(_edited, tmp_path / "repo")


CLEAN: dict[str, Callable[[str], str]] = {
    "retitled": _sub("title: Task 20\n", "title: Task twenty, by a teammate\n"),
    "two tasks far apart": lambda t: _sub("title: Task 3\n", "title: Three\n")(
        _sub("title: Task 33\n", "title: Thirty-three\n")(t)),
    "a task moved": lambda t: _swap(t, "t10", "t30"),
    "a task nobody waits on deleted": lambda t: _drop(t, "first"),
    "a task inserted in the middle": _sub("  - id: t12\n", "  - id: mid\n    title: Inserted\n    depends_on: [t4]\n"
                                          "  - id: t12\n"),
    "a comment between tasks": _sub("  - id: t15\n", "  # a teammate's note\n\n  - id: t15\n"),
    "the last task changed": _sub("title: First add\n", "title: First, retitled\n"),
    "a new dependency, no cycle": lambda t: _set_deps("t30", ["t2", "t7"])(t),
    "a dependency on another plan": lambda t: _set_deps("t25", ["other/o1"])(t),
    "a description block added": lambda t: _described(t, next(
        f"t{i}" for i in range(15, 35) if "description" not in t[slice(*_task(t, f"t{i}"))])),
    "a description block at the end": lambda t: _described(t, "first"),
}


def _described(text: str, ident: str) -> str:
    s, e = _task(text, ident)
    block = text[s:e]
    at = block.index("\n", block.index("title:")) + 1
    return text[:s] + block[:at] + "    description: |\n      two\n\n      lines\n" + block[at:] + text[e:]


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_a_clean_pull_is_checked_by_what_changed(edited: Repo, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    took, (code, _, err) = compare(edited, tmp_path, monkeypatch, CLEAN[name])
    assert code == 0, err
    assert took, "the catch-up vouched for a clean change"


HOSTILE: dict[str, Callable[[str], str]] = {
    "a cycle": lambda t: _set_deps("t2", ["t30"])(_set_deps("t30", ["t2"])(t)),
    "a cycle through one changed task": lambda t: _set_deps("t5", ["first"])(t),  # first waits on t5
    "a self dependency": lambda t: _set_deps("t8", ["t8"])(t),
    "a duplicate id": _sub("  - id: t20\n", "  - id: t21\n"),
    "a case twin id": _sub("  - id: t20\n", "  - id: T21\n"),
    "a duplicate of a checkpoint": _sub("  - id: t20\n", "  - id: cp\n"),
    "a schema violation": _sub("title: Task 20\n", "title: Task 20\n    priority: urgent\n"),
    "an unknown key": _sub("title: Task 20\n", "title: Task 20\n    colour: red\n"),
    "an empty title": _sub("title: Task 20\n", "title: ''\n"),
    "a dangling dependency": lambda t: _set_deps("t11", ["nope"])(t),
    "a dependency on a missing plan": lambda t: _set_deps("t11", ["ghost/x"])(t),
    "a deleted task others wait on": lambda t: _drop(t, "t5"),
    "a deleted task a checkpoint gates": lambda t: _drop(t, "t1"),
    "a deleted task a milestone lists": lambda t: _drop(t, "t0"),
    "an ADR that is not there": _sub("title: Task 20\n", "title: Task 20\n    adrs: [ADR-0042]\n"),
    "a quote left open": _sub("title: Task 20\n", "title: \"Task 20\n"),
    "a quote running on": _sub("title: Task 20\n", "title: \"Task 20\n  - id: t99\n    title: x\"\n"),
    "an anchor and an alias": _sub("title: Task 20\n", "title: &t Task 20\n    description: *t\n"),
    "a tag": _sub("title: Task 20\n", "title: !!str Task 20\n"),
    "a document marker": _sub("  - id: t20\n", "...\n  - id: t20\n"),
    "a tab": _sub("title: Task 20\n", "title:\tTask 20\n"),
    "the plan's title": _sub("title: Random plan\n", "title: Renamed plan\n"),
    "the plan's id": _sub("id: p\n", "id: q\n"),
    "a checkpoint after a missing task": _sub("after: [t1]", "after: [t999]"),
    "a task at another indentation": _sub("  - id: t20\n    title: Task 20\n", "    - id: t20\n      title: Task 20\n"),
    "a key at the top level in the list": _sub("  - id: t20\n", "goal: sneaky\n  - id: t20\n"),
    "a task without an id": _sub("  - id: t20\n", "  - name: t20\n"),
    "a list where a task was": _sub("  - id: t20\n    title: Task 20\n", "  - - t20\n"),
    "a block scalar eating the next task": _sub("  - id: t20\n    title: Task 20\n",
                                                "  - id: t20\n    title: Task 20\n    description: |\n"),
    "the last task's text runs into the checkpoints": _sub("title: First add\n",
                                                           "title: First add\n    description: |\n      x\n"
                                                           "checkpoints2:\n"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_pull_is_refused_as_the_full_check_refuses(edited: Repo, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    took, (code, _, err) = compare(edited, tmp_path, monkeypatch, HOSTILE[name])
    if name == "a quote running on":  # sound YAML, and closed within its task: either way
        assert code == 0
    elif name in ("a tag", "the plan's title", "a tab"):  # sound, but not what the catch-up vouches for
        assert code == 0 and not took
    else:
        assert code != 0
        assert not took, "the catch-up never vouches for a version the full check refuses"
        assert ".flow/plans/p/plan.yaml" in err.splitlines()[0], err


def test_task_edit_after_a_pull(edited: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    took, (code, _, _) = compare(edited, tmp_path, monkeypatch, CLEAN["retitled"],
                                 ("task", "edit", "p/t30", "--title", "Edited after a pull"))
    assert code == 0 and took
    took, (code, _, err) = compare(edited, tmp_path, monkeypatch, HOSTILE["a cycle"],
                                   ("task", "edit", "p/t31", "--title", "Edited after a bad pull"))
    assert code != 0 and not took and "cycle" in err


def test_pulls_in_a_row_each_against_the_last(edited: Repo, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Each catch-up and each edit records the version it checked: the next pull is compared
    with that one (no edit in between needed)."""
    for k in range(4):
        took, (code, _, err) = compare(edited, tmp_path, monkeypatch,
                                       _sub(f"title: Task {10 + k}", f"title: Pulled {k}"),
                                       ("task", "add", "p", f"added{k}", "--title", f"Added {k}"))
        assert code == 0 and took, err


def _mutate(rng: random.Random, text: str) -> str:
    """A random change to the lines of the task list: deleted, doubled, swapped, re-indented,
    a character changed, a line from elsewhere."""
    lines = text.splitlines(keepends=True)
    first = next(n for n, line in enumerate(lines) if line.startswith("tasks:")) + 1
    last = next(n for n, line in enumerate(lines) if line.startswith("checkpoints:"))
    for _ in range(rng.randrange(1, 3)):
        n = rng.randrange(first, last)
        kind = rng.randrange(7)
        if kind == 0:
            del lines[n]
            last -= 1
        elif kind == 1:
            lines.insert(n, lines[n])
            last += 1
        elif kind == 2 and n + 1 < last:
            lines[n], lines[n + 1] = lines[n + 1], lines[n]
        elif kind == 3:
            lines[n] = rng.choice(["", " ", "  ", "    "]) + lines[n].lstrip(" ")
        elif kind == 4 and lines[n].strip():
            at = rng.randrange(len(lines[n].rstrip("\n")))
            lines[n] = lines[n][:at] + rng.choice("x:-[]'\"#|>&*! 9") + lines[n][at + 1:]
        elif kind == 5:
            lines.insert(n, lines[rng.randrange(len(lines))])
            last += 1
        else:
            lines[n] = lines[n].replace("t1", "t2", 1)
    return "".join(lines)


@pytest.mark.parametrize("seed", range(24))
def test_random_pulls_agree_with_the_full_check(edited: Repo, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    rng = random.Random(seed)
    compare(edited, tmp_path, monkeypatch, lambda t: _mutate(rng, t))


def test_format_2_with_approvals_after_a_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Execution follows the approved version (recorded in the state): a teammate's commit
    changes the branch's plan.yaml, not that version; whatever the edit does then, the catch-up
    does the same as the full check."""

    r = init_repo(tmp_path / "repo", "2")
    cfg = r.path / ".flow" / "config.yaml"
    cfg.write_text(re.sub(r"approvals:\n(?:  .*\n)+", "approvals: {required: 1}\n", cfg.read_text()))
    r.git("commit", "-q", "-m", "approvals", "--", ".flow/config.yaml")
    r.plan("p", plan_text(random.Random(9), 30).replace("adrs: [ADR-0001]\n", "").replace(
        ", other/o1]", "]").replace("      - other/o1\n", "").replace("[other/o1]", "[]"))
    r.ok("submit", "p")
    r.ok("approve", "p", "--reviewer", "rev")
    r.ok("task", "add", "p", "first", "--title", "First add", "--dep", "t5")
    for k, change in enumerate([_sub("title: Task 12", "title: Task twelve, pulled"),
                                HOSTILE["a cycle through one changed task"]]):
        compare(r, tmp_path, monkeypatch, change, ("task", "add", "p", f"late{k}", "--title", "Late"))
        if k == 0:
            r.ok("approve", "p", "--reviewer", "rev")
            compare(r, tmp_path, monkeypatch, lambda t: _swap(t, "t10", "t20"),
                    ("task", "add", "p", "later", "--title", "Later"))
