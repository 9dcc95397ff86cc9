"""`task edit` and `task remove` (issue 15): one task's lines of plan.yaml changed or cut in
place, every other byte kept; checked as `validate` checks before anything is written; one
commit through the write door; refused over uncommitted plan.yaml edits (ADR 0008). `task add`
splices the same way."""
from __future__ import annotations

from typing import Any

import pytest
from helpers import Repo, events, trailers

from flowgit.errors import InvalidFile
from flowgit.formats import planslice

PLAN = """\
# The plan, by hand.
id: p
title: Edited by hand   # a comment
goal: Keep my layout

tasks:
  # first the base
  - id: a
    title: "Base"
    files: [src/a.py]   # where
    acceptance:
      - it works

  - id: b
    title: Second
    depends_on: [a]
    description: |
      Two lines
      of text.
  # a comment between tasks
  -
    id: c
    title: Third
    depends_on: [b]
  - {id: d, title: Flow style task}
# after the tasks
checkpoints:
  - id: CP
    after: [c]
"""


def one_line(res: Any) -> str:
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.err, res.err
    return lines[0]


def plan_text(repo: Repo) -> str:
    return (repo.path / ".flow/plans/p/plan.yaml").read_text()


@pytest.fixture
def plan(repo: Repo) -> Repo:
    repo.plan("p", PLAN)
    assert plan_text(repo) == PLAN
    return repo


def kept_around(old: str, new: str, first: str, after: str) -> None:
    """Every byte before the line starting `first` and from the line starting `after` on is kept."""
    start = old.index(first)
    end = old.index(after)
    assert new.startswith(old[:start]) and new.endswith(old[end:]), new


def test_edit_changes_one_task_and_keeps_every_other_byte(plan: Repo) -> None:
    repo = plan
    before = repo.commits()
    res = repo.ok("task", "edit", "p/b", "--title", "Second, renamed", "--dep", "a", "--dep", "d",
                  "--file", "src/b.py", "--json").json
    assert res["task"] == "p/b" and res["changed"] == ["title", "depends_on", "files"] and res["commit"]
    assert repo.commits() == before + 1
    edited = trailers(repo, repo.git("rev-parse", "HEAD"))  # the branch's commit, in either format
    assert edited["Flow-Event"] == "edited" and edited["Flow-Task"] == "b"
    new = plan_text(repo)
    kept_around(PLAN, new, "  - id: b", "  # a comment between tasks")
    assert "    title: Second, renamed\n    depends_on: [a, d]\n" in new  # a flow list stays one
    assert "    description: |\n      Two lines\n      of text.\n" in new
    assert "    files:\n      - src/b.py\n" in new
    shown = repo.ok("plan", "show", "p", "--json").json["definition"]["tasks"][1]
    assert shown["depends_on"] == ["a", "d"] and shown["files"] == ["src/b.py"]


def test_edit_a_task_whose_dash_is_on_its_own_line_and_a_flow_task(plan: Repo) -> None:
    repo = plan
    repo.ok("task", "edit", "c", "--priority", "high")
    new = plan_text(repo)
    kept_around(PLAN, new, "  -\n    id: c", "  - {id: d")
    repo.ok("task", "edit", "d", "--accept", "done when done")
    newer = plan_text(repo)
    assert "  - {id: d, title: Flow style task, acceptance: [done when done]}\n# after the tasks\n" in newer


def test_clear_and_multiline_description(plan: Repo) -> None:
    repo = plan
    repo.ok("task", "edit", "p/a", "--clear", "files", "--clear", "acceptance",
            "--description", "first\nsecond")
    new = plan_text(repo)
    assert "  - id: a\n    title: \"Base\"\n    description: |-\n      first\n      second\n\n  - id: b" in new
    res = repo.run("task", "edit", "p/a", "--clear", "files", "--file", "x.py")
    assert res.code == 2 and "exclude each other" in one_line(res)


@pytest.mark.parametrize("args, code, words", [
    (["p/b"], 2, "nothing to change"),
    (["p/b", "--title", ""], 2, "--title must not be empty"),
    (["p/a", "--dep", "c"], 1, "dependency cycle"),
    (["p/a", "--file", "../etc/passwd"], 1, "--file: invalid path"),
    (["p/CP", "--title", "x"], 1, "p/CP is a checkpoint"),
    (["p/zz", "--title", "x"], 1, "plan p has no task 'zz'"),
    (["p/b", "--priority", "urgent"], 2, "urgent"),
    (["p/b", "--clear", "title"], 2, "title"),
])
def test_bad_edits_write_nothing(plan: Repo, args: list[str], code: int, words: str) -> None:
    repo = plan
    before = repo.commits()
    res = repo.run("task", "edit", *args)
    assert res.code == code, res.err
    assert words in res.err and "Traceback" not in res.err
    assert repo.commits() == before and plan_text(repo) == PLAN
    assert repo.git("status", "--porcelain") == ""


def test_the_same_values_change_nothing(plan: Repo) -> None:
    repo = plan
    before = repo.commits()
    res = repo.ok("task", "edit", "p/b", "--title", "Second", "--json").json
    assert res == {"task": "p/b", "changed": [], "commit": None}
    assert repo.commits() == before and plan_text(repo) == PLAN


def test_edit_and_remove_refuse_over_uncommitted_plan_edits(plan: Repo) -> None:
    repo = plan
    path = repo.path / ".flow/plans/p/plan.yaml"
    path.write_text(PLAN + "# mine, not committed\n")
    for args in (["edit", "p/b", "--title", "x"], ["remove", "p/d"], ["add", "p", "e", "--title", "E"]):
        res = repo.run("task", *args)
        assert res.code == 1
        assert "plan.yaml has uncommitted changes: commit or stash them" in one_line(res)
    assert path.read_text() == PLAN + "# mine, not committed\n"


def test_remove_cuts_the_task_lines(plan: Repo) -> None:
    repo = plan
    before = repo.commits()
    res = repo.ok("task", "remove", "p/d", "--json").json
    assert res == {"task": "p/d", "removed": True, "events": 0, "commit": res["commit"]}
    assert repo.commits() == before + 1
    assert trailers(repo, repo.git("rev-parse", "HEAD"))["Flow-Event"] == "removed"
    assert plan_text(repo) == PLAN.replace("  - {id: d, title: Flow style task}\n", "")
    diff = repo.ok("diff", "HEAD~1", "HEAD", "--format", "json").json["plans"][0]
    assert diff["tasks_removed"] == [{"id": "d", "title": "Flow style task"}]
    assert "d" not in repo.ok("status", "p", "--json").json["ready"]


def test_remove_refuses_a_task_others_wait_on(plan: Repo) -> None:
    repo = plan
    repo.plan("q", "id: q\ntitle: Q\ntasks:\n  - {id: x, title: X, depends_on: [p/b]}\n")
    for target, words in (("p/a", "cannot remove p/a: b depends on it"),
                          ("p/b", "c, q/x depend on it"),
                          ("p/c", "checkpoint CP depends on it: remove or edit them first (a checkpoint's")):
        res = repo.run("task", "remove", target)
        assert res.code == 1 and words in one_line(res), res.err
    assert plan_text(repo) == PLAN


def test_remove_a_task_with_events_needs_force(plan: Repo) -> None:
    repo = plan
    repo.ok("claim", "p/d", "--worker", "w1")
    repo.ok("done", "p/d", "--worker", "w1", "--note", "did it")
    res = repo.run("task", "remove", "p/d")
    assert res.code == 1
    assert "cannot remove p/d: it has 2 event(s) (its history): add --force" in one_line(res)
    assert plan_text(repo) == PLAN
    out = repo.ok("task", "remove", "p/d", "--force").out
    assert "removed p/d (its 2 event(s) are kept)" in out
    assert [e["type"] for e in events(repo, "p", "d")] == ["task.claimed", "task.done"]
    assert repo.ok("events", "p", "d", "--json").json["events"]  # still readable
    assert "d" not in [t["id"] for t in repo.ok("status", "p", "--json").json["tasks"]]


def test_remove_the_last_task_leaves_an_empty_list(repo: Repo) -> None:
    repo.plan("one", "id: one\ntitle: One  # kept\ntasks:\n  - id: only\n    title: Only\n")
    repo.ok("task", "remove", "one/only")
    text = (repo.path / ".flow/plans/one/plan.yaml").read_text()
    assert text == "id: one\ntitle: One  # kept\ntasks: []\n"
    repo.ok("validate")


def test_a_complete_plan_is_final(repo: Repo) -> None:
    repo.plan("c", "id: c\ntitle: C\ntasks:\n  - {id: a, title: A}\n  - {id: b, title: B}\n")
    for t in ("a", "b"):
        repo.ok("claim", f"c/{t}", "--worker", "w")
        repo.ok("done", f"c/{t}", "--worker", "w")
    repo.ok("advance", "c")
    repo.ok("finish", "c")
    assert repo.ok("status", "c", "--json").json["phase"] == "complete"
    for args in (["edit", "c/a", "--title", "x"], ["remove", "c/a", "--force"]):
        res = repo.run("task", *args)
        assert res.code == 1 and "plan c is complete, which is final" in one_line(res)


def test_a_plan_from_markdown_is_edited_as_its_yaml(repo: Repo) -> None:
    src = repo.path.parent / "plan.md"
    src.write_text("# From Markdown\n\n## Work\n\n- [ ] T1: First\n- [ ] T2: Second (depends on: T1)\n")
    repo.ok("plan", "new", "md", "--from", str(src))
    repo.ok("task", "edit", "md/T2", "--title", "Second, edited")
    repo.ok("task", "add", "md", "T3", "--title", "Third", "--dep", "T2")
    repo.ok("task", "remove", "md/T3")
    tasks = repo.ok("plan", "show", "md", "--json").json["definition"]["tasks"]
    assert [(t["id"], t["title"]) for t in tasks] == [("T1", "First"), ("T2", "Second, edited")]
    assert src.read_text().endswith("(depends on: T1)\n")  # the Markdown source is not touched


def test_task_add_splices_after_the_last_task(plan: Repo) -> None:
    repo = plan
    repo.ok("task", "add", "p", "e", "--title", "Fifth", "--dep", "d", "--file", "src/e.py")
    new = plan_text(repo)
    head, tail = PLAN.split("# after the tasks\n")
    assert new == head + "  - id: e\n    title: Fifth\n    depends_on:\n      - d\n    files:\n" \
        "      - src/e.py\n# after the tasks\n" + tail


# ----- the splicer itself ---------------------------------------------------------------------

def test_read_finds_each_task_span() -> None:
    layout = planslice.read(PLAN, "plan.yaml")
    assert layout is not None
    lines = PLAN.splitlines()
    spans = {k: (lines[s.first].strip(), lines[s.last].strip(), s.column) for k, s in layout.spans.items()}
    assert spans == {"a": ("- id: a", "- it works", 2), "b": ("- id: b", "of text.", 2),
                     "c": ("-", "depends_on: [b]", 2), "d": ("- {id: d, title: Flow style task}",
                                                            "- {id: d, title: Flow style task}", 2)}


@pytest.mark.parametrize("text", [
    "id: p\ntitle: P\ntasks: [{id: a, title: A}]\n",  # a flow-style list
    "id: p\ntitle: P\ntasks: []\n",
    "id: p\ntitle: P\n",
    "id: p\ntitle: P\ntasks:\n  - id: a\n    title: A\u2028B\n",  # a break libyaml counts
])
def test_read_leaves_odd_layouts_to_the_round_trip_editor(text: str) -> None:
    assert planslice.read(text, "plan.yaml") is None


def test_crlf_and_bom_are_kept() -> None:
    text = "\ufeffid: p\r\ntitle: P\r\ntasks:\r\n  - id: a\r\n    title: A\r\n  - id: b\r\n    title: B\r\n"
    layout = planslice.read(text, "plan.yaml")
    assert layout is not None
    new = planslice.edit(layout, "a", lambda t: t.__setitem__("title", "AA"), "plan.yaml")
    assert new == text.replace("title: A\r\n", "title: AA\r\n")
    added = planslice.append(layout, [{"id": "c", "title": "C"}])
    assert added == text + "  - id: c\r\n    title: C\r\n"
    assert planslice.remove(layout, "a") == text.replace("  - id: a\r\n    title: A\r\n", "")


def test_a_last_task_without_a_final_newline() -> None:
    text = "id: p\ntitle: P\ntasks:\n  - id: a\n    title: A"
    layout = planslice.read(text, "plan.yaml")
    assert layout is not None
    assert planslice.append(layout, [{"id": "b", "title": "B"}]) == text + "\n  - id: b\n    title: B\n"


def test_read_refuses_what_is_not_yaml() -> None:
    with pytest.raises(InvalidFile):
        planslice.read("id: p\ntasks:\n  - id: a\n   bad: [\n", "plan.yaml")


def test_a_command_a_person_edits_in_is_trusted_as_task_add_does(repo: Repo) -> None:
    repo.plan("s", "id: s\ntitle: S\ntasks:\n  - {id: A, title: a}\n")
    repo.ok("task", "edit", "s/A", "--run", "echo hi")
    listed = repo.ok("--json", "trust", "--list").json["commands"]
    assert [(c["key"], c["status"]) for c in listed] == [("tasks[A].run", "trusted")]


def test_a_command_an_agent_edits_in_is_not_trusted(repo: Repo) -> None:
    import os

    repo.plan("s", "id: s\ntitle: S\ntasks:\n  - {id: A, title: a}\n")
    agent = {**os.environ, "FLOWGIT_AGENT": "run s/A"}
    proc = repo.proc("task", "edit", "s/A", "--run", "echo hi", env=agent)
    assert proc.returncode == 0, proc.stderr
    listed = repo.ok("--json", "trust", "--list").json["commands"]
    assert [(c["key"], c["status"]) for c in listed] == [("tasks[A].run", "new")]  # not trusted: a person trusts it
