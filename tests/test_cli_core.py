"""The authoring and read-only CLI on a real repository: init, plan new/list/show, task add,
adr new, status, next, events, graph, and the commit each change makes."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowgit.formats import yamlio
from helpers import WEBHOOKS, Repo, state_branch, trailers
from helpers.cache import drop_derived

# A plan as a person writes it: comments, quotes of every kind, flow lists, an x- key, keys in
# an unusual order, blank lines, and a comment that introduces the section after the tasks.
HAND = """\
# Hand-written plan: keep this comment.
title: 'Hand written'      # title before id on purpose
id: hand
goal: "Keep \\"quotes\\" and comments"
tags: [a, 'b']   # flow style stays flow
x-owner: team-a

tasks:
  # the first task
  - title: "First"   # title before id
    id: T1
    priority: low
    estimate: 30m
  - id: T2
    title: 'Second, quoted'
    depends_on: [T1]   # trailing comment
    acceptance:
      - "it's tested"
      - plain text

# Gates: reviewed by a person.
checkpoints:
  - id: CP1   # gate
    after: [T2]
risks:
  - issue: "scope creep"
    mitigation: 'say no'
    likelihood: low
# closing comment
"""
HAND_TASKS_END = HAND.index("\n\n# Gates") + 1  # just after the last task's last line

CHAIN = """\
id: chain
title: Chain
tasks:
  - id: a
    title: A
  - id: b
    title: B
    depends_on: [a]
  - id: c
    title: C
    depends_on: [b]
"""


def head(repo: Repo) -> str:
    return repo.git("rev-parse", "HEAD")


def clean(repo: Repo) -> bool:
    return repo.git("status", "--porcelain", "--untracked-files=all") == ""


# ----- init -------------------------------------------------------------------------------------

@pytest.mark.format1
def test_init_commits_once_and_twice_changes_nothing(repo: Repo) -> None:
    assert repo.commits() == 2  # the initial commit + init
    assert trailers(repo)["Flow-Event"] == "init"
    assert (repo.path / ".flow" / "config.yaml").is_file()
    assert ".flow/.cache/" in (repo.path / ".gitignore").read_text().splitlines()
    assert "merge=flowgit-jsonl" in (repo.path / ".gitattributes").read_text()
    assert "flowgit merge-driver %O %A %B" in repo.git("config", "merge.flowgit-jsonl.driver")
    before = head(repo)
    attrs = (repo.path / ".gitattributes").read_text()
    res = repo.ok("--json", "init")
    assert res.json["initialised"] is False and res.json["commit"] is None
    assert head(repo) == before
    assert (repo.path / ".gitattributes").read_text() == attrs
    assert clean(repo)
    assert repo.proc("init").returncode == 0
    assert head(repo) == before and clean(repo)


# ----- plan new ---------------------------------------------------------------------------------

def test_plan_new_empty(repo: Repo) -> None:
    n = repo.commits()
    res = repo.ok("--json", "plan", "new", "empty", "--title", "Nothing yet", "--goal", "Later")
    assert res.json["tasks"] == 0
    n += 2 if state_branch(repo) else 1  # format 2: the plan on the branch, its event in the state
    assert repo.commits() == n
    assert trailers(repo) == {"Flow-Plan": "empty", "Flow-Event": "created", "Flow-Actor": "test@example.com"}
    data = yamlio.loads((repo.path / ".flow/plans/empty/plan.yaml").read_text(), "x")
    assert data == {"id": "empty", "title": "Nothing yet", "goal": "Later", "tasks": []}
    events = repo.ok("--json", "events", "empty").json["events"]
    assert [e["type"] for e in events] == ["plan.created"]
    assert clean(repo)
    again = repo.run("plan", "new", "empty")
    assert again.code == 1 and "already exists" in again.err
    assert repo.commits() == n


def test_plan_new_from_yaml_keeps_the_file(repo: Repo, tmp_path: Path) -> None:
    src = tmp_path / "wh.yaml"
    src.write_text(WEBHOOKS)
    res = repo.ok("--json", "plan", "new", "webhooks", "--from", str(src))
    assert res.json == {"plan": "webhooks", "path": ".flow/plans/webhooks/plan.yaml", "tasks": 6,
                        "commit": head(repo)}
    assert (repo.path / ".flow/plans/webhooks/plan.yaml").read_text() == WEBHOOKS
    assert clean(repo)


def test_plan_new_from_yaml_sets_the_id(repo: Repo, tmp_path: Path) -> None:
    src = tmp_path / "x.yaml"
    src.write_text("# mine\ntitle: T   # keep\ntasks: []\n")
    repo.ok("plan", "new", "given", "--from", str(src))
    text = (repo.path / ".flow/plans/given/plan.yaml").read_text()
    assert "# mine" in text and "# keep" in text
    assert yamlio.loads(text, "x")["id"] == "given"


def test_plan_new_from_markdown(repo: Repo, tmp_path: Path) -> None:
    src = tmp_path / "search.md"
    src.write_text(textwrap.dedent("""\
        # Search feature

        **Goal:** Let users search their notes.

        ## Index

        - [ ] IDX-1: Build the index
        - [x] IDX-2: Incremental updates
          depends on: IDX-1

        ## API

        - [ ] API-1: Search endpoint (depends on: IDX-1, IDX-2)
        """))
    res = repo.ok("--json", "plan", "new", "search", "--from", str(src))
    assert res.json["tasks"] == 3
    plan = repo.ok("--json", "plan", "show", "search").json["definition"]
    assert plan["id"] == "search" and plan["title"] == "Search feature"
    assert "search their notes" in plan["goal"]
    tasks = {t["id"]: t for t in plan["tasks"]}
    assert list(tasks) == ["IDX-1", "IDX-2", "API-1"]
    assert tasks["IDX-1"]["title"] == "Build the index"
    assert tasks["IDX-2"]["depends_on"] == ["IDX-1"]
    assert tasks["API-1"]["depends_on"] == ["IDX-1", "IDX-2"]
    status = repo.ok("--json", "status", "search").json
    assert status["ready"] == ["IDX-1"]
    assert trailers(repo)["Flow-Plan"] == "search"


def test_plan_new_from_markdown_with_a_dangling_dependency_writes_nothing(repo: Repo, tmp_path: Path) -> None:
    src = tmp_path / "bad.md"
    src.write_text("# Bad\n\n- [ ] A-1: one\n  depends on: NOPE-9\n")
    before = head(repo)
    res = repo.run("plan", "new", "bad", "--from", str(src))
    assert res.code == 1
    assert "NOPE-9" in res.err
    assert head(repo) == before and clean(repo)
    assert not (repo.path / ".flow/plans/bad").exists()


# ----- plan list / show -------------------------------------------------------------------------

def test_plan_list_filters_by_phase_and_tag(repo: Repo) -> None:
    repo.plan("webhooks", WEBHOOKS)  # tags backend, go
    repo.plan("chain", CHAIN)        # no tags
    repo.ok("claim", "chain/a", "--worker", "w1")  # chain moves to execute
    rows = repo.ok("--json", "plan", "list").json["plans"]
    assert [(r["plan"], r["phase"], r["tasks"]) for r in rows] == [("chain", "execute", 3), ("webhooks", "draft", 6)]
    assert [r["plan"] for r in repo.ok("--json", "plan", "list", "--phase", "execute").json["plans"]] == ["chain"]
    assert [r["plan"] for r in repo.ok("--json", "plan", "list", "--phase", "draft").json["plans"]] == ["webhooks"]
    assert [r["plan"] for r in repo.ok("--json", "plan", "list", "--tag", "go").json["plans"]] == ["webhooks"]
    assert repo.ok("--json", "plan", "list", "--tag", "nope").json["plans"] == []
    assert repo.ok("--json", "plan", "list", "--tag", "go", "--phase", "execute").json["plans"] == []
    text = repo.ok("plan", "list", "--tag", "backend").out
    assert "webhooks" in text and "chain" not in text


def test_plan_show_now_and_at_a_revision(repo: Repo) -> None:
    repo.plan("chain", CHAIN)
    repo.ok("task", "add", "chain", "d", "--title", "D", "--dep", "c")
    now = repo.ok("--json", "plan", "show", "chain").json
    assert [t["id"] for t in now["definition"]["tasks"]] == ["a", "b", "c", "d"]
    assert now["rev"] is None
    old = repo.ok("--json", "plan", "show", "chain", "--rev", "HEAD~1").json
    assert old["rev"] == "HEAD~1"
    assert [t["id"] for t in old["definition"]["tasks"]] == ["a", "b", "c"]
    assert repo.ok("plan", "show", "chain", "--rev", "HEAD~1").out == CHAIN
    missing = repo.run("plan", "show", "chain", "--rev", "HEAD~2")
    assert missing.code == 1 and "HEAD~2" in missing.err
    unknown = repo.run("plan", "show", "nope")
    assert unknown.code == 1 and "nope" in unknown.err


# ----- task add on a hand-written plan: comments, order and quoting survive ----------------------

def test_roundtrip_noop_is_byte_identical() -> None:
    for text in (HAND, WEBHOOKS, CHAIN):
        assert yamlio.rt_dump(yamlio.rt_load(text, "x")) == text


def test_task_add_keeps_a_hand_written_plan(repo: Repo) -> None:
    repo.plan("hand", HAND)
    path = repo.path / ".flow/plans/hand/plan.yaml"
    assert path.read_text() == HAND
    n = repo.commits()
    res = repo.ok("--json", "task", "add", "hand", "T3", "--title", "Third: with a colon",
                  "--dep", "T2", "--priority", "high", "--accept", "works", "--file", "src/x.py")
    assert res.json["task"] == "hand/T3" and res.json["state"] == "pending"
    assert repo.commits() == n + 1
    assert trailers(repo, repo.git("rev-parse", "HEAD")) == {"Flow-Plan": "hand", "Flow-Task": "T3", "Flow-Event": "added",
                              "Flow-Actor": "test@example.com"}
    text = path.read_text()
    before, after = HAND[:HAND_TASKS_END], HAND[HAND_TASKS_END:]
    assert text.startswith(before), text
    assert text.endswith(after), text
    added = text[len(before): len(text) - len(after)]
    assert added.startswith("  - id: T3\n"), added
    assert yamlio.loads("tasks:\n" + added, "x")["tasks"] == [{
        "id": "T3", "title": "Third: with a colon", "depends_on": ["T2"], "files": ["src/x.py"],
        "acceptance": ["works"], "priority": "high"}]
    # a second add goes after the first, still keeping the rest
    repo.ok("task", "add", "hand", "T4", "--title", "Fourth")
    text2 = path.read_text()
    assert text2.startswith(before + added) and text2.endswith(after)
    assert yamlio.rt_dump(yamlio.rt_load(text2, "x")) == text2
    assert clean(repo)


LAYOUTS = {
    "crlf": "id: p\r\ntitle: P  # a comment\r\ntasks:\r\n  - id: T1\r\n    title: 'x'\r\n",
    "bom": "\ufeffid: p\ntitle: P\ntasks:\n  - id: T1\n    title: x\n",
    "explicit start": "---\n# top\nid: p\ntitle: P\ntasks:\n  - id: T1\n    title: x\n",
    "unindented lists": "id: p\ntitle: P\nscope:\n    included:\n    - a\ntasks:\n- id: T1\n"
                        "  title: x\n  depends_on:\n  - T0\n- id: T0\n  title: y\n",
    "wide lists": "id: p\ntitle: P\ntasks:\n    - id: T1\n      title: x\n",
    "text that looks like YAML": "id: p\ntitle: P\ngoal: |\n  Steps:\n  - first\n  Config:\n"
                                 "      deep: 1\ntasks:\n  - id: T1\n    title: x\n",
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_task_add_keeps_the_files_layout(repo: Repo, name: str) -> None:
    """Line endings, a byte order mark, `---` and the list indentation are the author's: an
    edit adds its lines and changes no other byte."""
    text = LAYOUTS[name]
    path = repo.path / ".flow/plans/p/plan.yaml"
    src = repo.path.parent / "p.yaml"
    src.write_bytes(text.encode())
    repo.ok("plan", "new", "p", "--from", str(src))
    assert path.read_bytes() == text.encode()
    repo.ok("task", "add", "p", "T9", "--title", "nine")
    after = path.read_bytes().decode()
    assert after.startswith(text), after
    nl = "\r\n" if name == "crlf" else "\n"
    dash = {"unindented lists": "- ", "wide lists": "    - "}.get(name, "  - ")
    pad = " " * len(dash)
    assert after[len(text):] == f"{dash}id: T9{nl}{pad}title: nine{nl}"
    assert yamlio.rt_dump(yamlio.rt_load(after, "x"), like=after) == after


def test_task_add_to_an_empty_plan(repo: Repo) -> None:
    repo.ok("plan", "new", "e")
    repo.ok("task", "add", "e", "A", "--title", "A")
    repo.ok("task", "add", "e", "B", "--title", "B", "--dep", "A")
    plan = repo.ok("--json", "plan", "show", "e").json["definition"]
    assert plan["tasks"] == [{"id": "A", "title": "A"}, {"id": "B", "title": "B", "depends_on": ["A"]}]


@pytest.mark.parametrize("args,message", [
    (["T1", "--title", "again"], "already has"),
    (["T9", "--title", "x", "--dep", "NOPE"], "NOPE"),
    (["T9", "--title", "x", "--dep", "T9"], "itself"),
])
def test_task_add_refused_writes_nothing(repo: Repo, args: list[str], message: str) -> None:
    repo.plan("hand", HAND)
    before = head(repo)
    res = repo.run("task", "add", "hand", *args)
    assert res.code == 1, res
    assert message in res.err and "Traceback" not in res.err
    assert head(repo) == before and clean(repo)
    assert (repo.path / ".flow/plans/hand/plan.yaml").read_text() == HAND


# ----- adr new ----------------------------------------------------------------------------------

def test_adr_new_and_plan_link(repo: Repo) -> None:
    repo.plan("hand", HAND)
    n = repo.commits()
    first = repo.ok("--json", "adr", "new", "Use SQLite for retries").json
    assert first["adr"] == "ADR-0001"
    assert first["path"] == ".flow/adrs/ADR-0001-use-sqlite-for-retries.yaml"
    adr = yamlio.loads((repo.path / first["path"]).read_text(), "x")
    assert adr["id"] == "ADR-0001" and adr["title"] == "Use SQLite for retries"
    assert adr["status"] == "proposed"
    assert repo.commits() == n + 1
    second = repo.ok("--json", "adr", "new", "Webhook signing", "--plan", "hand").json
    assert second["adr"] == "ADR-0002"
    assert repo.commits() == n + 2
    assert trailers(repo)["Flow-Plan"] == "hand"
    changed = repo.git("show", "--name-only", "--format=", "HEAD").splitlines()
    assert sorted(changed) == [second["path"], ".flow/plans/hand/plan.yaml"]
    text = (repo.path / ".flow/plans/hand/plan.yaml").read_text()
    assert yamlio.loads(text, "x")["adrs"] == ["ADR-0002"]
    assert yamlio.loads((repo.path / second["path"]).read_text(), "x")["plans"] == ["hand"]
    # the rest of the hand-written file is untouched
    assert text.replace("adrs:\n  - ADR-0002\n", "") == HAND
    repo.ok("adr", "new", "Third", "--plan", "hand")
    linked = yamlio.loads((repo.path / ".flow/plans/hand/plan.yaml").read_text(), "x")["adrs"]
    assert linked == ["ADR-0002", "ADR-0003"]
    assert repo.ok("--json", "validate").json["ok"] is True
    assert clean(repo)


def test_adr_new_for_an_unknown_plan_writes_nothing(repo: Repo) -> None:
    before = head(repo)
    res = repo.run("adr", "new", "X", "--plan", "nope")
    assert res.code == 1
    assert head(repo) == before and clean(repo)
    assert not list((repo.path / ".flow").glob("adrs/ADR-*"))


# ----- status -----------------------------------------------------------------------------------

COUNT_KEYS = ["pending", "ready", "claimed", "in_progress", "retry_wait", "done", "failed", "skipped", "blocked",
              "review"]


def test_status_json_fields(repo: Repo) -> None:
    repo.plan("webhooks", WEBHOOKS)
    repo.ok("claim", "webhooks/T-WH-01", "--worker", "w1")
    repo.ok("done", "webhooks/T-WH-01", "--worker", "w1")
    repo.ok("claim", "webhooks/T-WH-02", "--worker", "w2")
    repo.ok("start", "webhooks/T-WH-02", "--worker", "w2")
    data = repo.ok("status", "webhooks", "--json").json  # --json after the command, too
    assert data["plan"] == "webhooks"
    assert data["phase"] == "execute"
    assert data["progress"] == 16  # 1 of 6
    assert isinstance(data["progress"], int)
    assert list(data["counts"]) == COUNT_KEYS
    assert data["counts"] == {"pending": 4, "ready": 0, "claimed": 0, "in_progress": 1, "retry_wait": 0,
                              "done": 1, "failed": 0, "skipped": 0, "blocked": 0, "review": 0}
    assert data["ready"] == []
    assert data["stalled"] is False
    tasks = {t["id"]: t for t in data["tasks"]}
    assert list(tasks) == ["T-WH-01", "T-WH-02", "T-WH-03", "T-WH-04", "T-WH-05", "T-WH-06"]
    for row in data["tasks"]:
        assert {"id", "state", "worker", "attempts"} <= set(row)
    def row(task: str) -> tuple[str, str | None, int]:
        return tasks[task]["state"], tasks[task]["worker"], tasks[task]["attempts"]

    assert row("T-WH-01") == ("done", None, 1)
    assert row("T-WH-02") == ("in_progress", "w2", 1)
    assert tasks["T-WH-03"]["state"] == "pending"


def test_status_text_has_a_progress_bar(repo: Repo) -> None:
    repo.plan("chain", CHAIN)
    repo.ok("claim", "chain/a", "--worker", "w1")
    repo.ok("done", "chain/a", "--worker", "w1")
    out = repo.ok("status", "chain").out
    assert "phase: execute" in out
    assert "[" + "#" * 9 + "-" * 21 + "] 33%" in out  # 30 cells
    assert "1 done" in out and "1 ready" in out and "ready: b" in out
    overview = repo.ok("status").out
    assert "chain" in overview and "33%" in overview and "[" in overview


def test_stalled_plan_shows_the_chain(repo: Repo) -> None:
    repo.plan("chain", CHAIN)
    repo.ok("claim", "chain/a", "--worker", "w1")
    res = repo.ok("--json", "fail", "chain/a", "--worker", "w1", "--error", "disk full")
    assert res.json["state"] == "failed"
    assert trailers(repo)["Flow-Task"] == "a" and trailers(repo)["Flow-Event"] == "failed"
    data = repo.ok("--json", "status", "chain").json
    assert data["stalled"] is True
    assert data["counts"]["failed"] == 1 and data["counts"]["blocked"] == 2
    assert data["stall_chains"] == [["c", "b", "a"]]
    tasks = {t["id"]: t for t in data["tasks"]}
    assert tasks["a"]["error"] == "disk full"
    assert tasks["b"]["blocked_by"] == ["a"] and tasks["c"]["blocked_by"] == ["b"]
    out = repo.ok("status", "chain").out
    assert "STALLED" in out
    assert "c <- b <- a" in out
    assert "STALLED" in repo.ok("status").out


def test_stalled_chain_in_a_wider_graph(repo: Repo) -> None:
    repo.plan("webhooks", WEBHOOKS)
    repo.ok("claim", "webhooks/T-WH-01", "--worker", "w1")
    repo.ok("fail", "webhooks/T-WH-01", "--worker", "w1", "--error", "x")
    data = repo.ok("--json", "status", "webhooks").json
    assert data["stalled"] is True
    assert len(data["stall_chains"]) == 1
    chain = data["stall_chains"][0]
    assert chain[-3:] == ["T-WH-03", "T-WH-02", "T-WH-01"]


def test_retry_wait_is_not_stalled(repo: Repo) -> None:
    repo.plan("chain", CHAIN)
    repo.ok("claim", "chain/a", "--worker", "w1")
    res = repo.ok("--json", "fail", "chain/a", "--worker", "w1", "--error", "flaky", "--retry")
    assert res.json["state"] == "retry_wait"
    data = repo.ok("--json", "status", "chain").json
    assert data["stalled"] is False
    assert data["tasks"][0]["state"] in ("retry_wait", "ready")  # base 1 s: it may be due already


# ----- next -------------------------------------------------------------------------------------

def test_next_json_and_nothing_ready(repo: Repo) -> None:
    repo.plan("chain", CHAIN)
    before = head(repo)
    assert repo.ok("--json", "next", "chain").json["task"] == "chain/a"
    assert repo.ok("--json", "next").json["task"] == "chain/a"
    assert repo.ok("next", "chain").out.startswith("chain/a")
    assert head(repo) == before and clean(repo)  # next changes nothing
    repo.ok("claim", "chain/a", "--worker", "w1")
    none = repo.run("--json", "next", "chain")
    assert none.code == 3
    assert none.json["error"]["code"] == "nothing_ready"
    plain = repo.run("next", "chain")
    assert plain.code == 3 and plain.out == "" and plain.err.count("\n") == 1
    proc = repo.proc("next", "chain")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr


# ----- events and graph -------------------------------------------------------------------------

def test_events_of_a_plan_and_a_task(repo: Repo) -> None:
    repo.plan("chain", CHAIN)
    repo.ok("claim", "chain/a", "--worker", "w1")
    repo.ok("start", "chain/a", "--worker", "w1")
    repo.ok("done", "chain/a", "--worker", "w1", "--note", "ok")
    repo.ok("claim", "chain/b", "--worker", "w2")
    all_events = repo.ok("--json", "events", "chain").json["events"]
    types = [e["type"] for e in all_events]
    assert types.count("plan.created") == 1 and types.count("plan.phase") == 1
    assert [e["type"] for e in all_events if e["task"] == "a"] == ["task.claimed", "task.started", "task.done"]
    assert [e["type"] for e in all_events if e["task"] == "b"] == ["task.claimed"]
    keys = [(e["clock"], e["actor"], e["id"]) for e in all_events]
    assert keys == sorted(keys)
    for e in all_events:
        assert set(e) == {"id", "type", "plan", "task", "actor", "at", "clock", "data"}
    only_a = repo.ok("--json", "events", "chain", "a").json
    assert only_a["task"] == "a"
    assert [e["type"] for e in only_a["events"]] == ["task.claimed", "task.started", "task.done"]
    assert only_a["events"][-1]["data"]["note"] == "ok"
    text = repo.ok("events", "chain", "a").out
    assert "task.claimed" in text and "w1" in text
    assert repo.ok("--json", "events", "chain", "c").json["events"] == []


@pytest.mark.parametrize("fmt,marker", [
    ("mermaid", "flowchart"), ("dot", "digraph"), ("ascii", "Critical path"), ("gantt", "gantt"),
])
def test_graph_formats(repo: Repo, fmt: str, marker: str) -> None:
    repo.plan("webhooks", WEBHOOKS)
    out = repo.ok("graph", "webhooks", "--format", fmt).out
    assert marker in out
    assert "T-WH-06" in out
    data = repo.ok("--json", "graph", "webhooks", "--format", fmt).json
    assert data["format"] == fmt and data["plan"] == "webhooks"
    assert data["graph"].rstrip("\n") == out.rstrip("\n")
    assert data["critical_path"] == ["T-WH-01", "T-WH-02", "T-WH-03", "T-WH-04", "T-WH-06", "CP-WH"]
    assert data["parallel_groups"] == [["T-WH-01"], ["T-WH-02"], ["T-WH-03"], ["T-WH-04", "T-WH-05"],
                                       ["T-WH-06"], ["CP-WH"]]
    order = data["execution_order"]
    assert sorted(order) == sorted(["T-WH-01", "T-WH-02", "T-WH-03", "T-WH-04", "T-WH-05", "T-WH-06", "CP-WH"])
    deps = {"T-WH-02": ["T-WH-01"], "T-WH-03": ["T-WH-02"], "T-WH-04": ["T-WH-03"], "T-WH-05": ["T-WH-03"],
            "T-WH-06": ["T-WH-03", "T-WH-04", "T-WH-05"], "CP-WH": ["T-WH-06"]}
    for node, ds in deps.items():
        assert all(order.index(d) < order.index(node) for d in ds)


def test_graph_default_is_ascii_and_bad_format_is_usage(repo: Repo) -> None:
    repo.plan("chain", CHAIN)
    assert "Critical path: a -> b -> c" in repo.ok("graph", "chain").out
    assert repo.run("graph", "chain", "--format", "svg").code == 2


# ----- every change is one commit with trailers; reads change nothing ---------------------------

@pytest.mark.format1
def test_each_command_commits_with_trailers(repo: Repo) -> None:
    steps = [
        (["plan", "new", "chain", "--title", "Chain"], {"Flow-Plan": "chain", "Flow-Event": "created"}),
        (["task", "add", "chain", "a", "--title", "A"], {"Flow-Plan": "chain", "Flow-Task": "a", "Flow-Event": "added"}),
        (["task", "add", "chain", "b", "--title", "B", "--dep", "a"], {"Flow-Task": "b", "Flow-Event": "added"}),
        (["adr", "new", "Decision", "--plan", "chain"], {"Flow-Plan": "chain"}),
        (["claim", "chain", "--worker", "w1"], {"Flow-Plan": "chain", "Flow-Task": "a", "Flow-Event": "claimed"}),
        (["start", "chain/a", "--worker", "w1"], {"Flow-Task": "a", "Flow-Event": "started"}),
        (["heartbeat", "a", "--worker", "w1"], {"Flow-Task": "a", "Flow-Event": "heartbeat"}),
        (["done", "chain/a", "--worker", "w1"], {"Flow-Task": "a", "Flow-Event": "done", "Flow-Actor": "w1"}),
        (["claim", "chain/b", "--worker", "w2"], {"Flow-Task": "b", "Flow-Event": "claimed"}),
        (["release", "chain/b", "--worker", "w2"], {"Flow-Task": "b", "Flow-Event": "released"}),
        (["claim", "chain/b", "--worker", "w2"], {"Flow-Task": "b", "Flow-Event": "claimed"}),
        (["fail", "chain/b", "--worker", "w2", "--error", "e", "--skip"], {"Flow-Task": "b", "Flow-Event": "skipped"}),
    ]
    n = repo.commits()
    for args, want in steps:
        repo.ok(*args)
        n += 1
        assert repo.commits() == n, args
        got = trailers(repo)
        assert {k: got.get(k) for k in want} == want, (args, got)
        assert "Flow-Plan" in got and "Flow-Event" in got, args
        assert clean(repo), args
    for args in (["status"], ["status", "chain"], ["next"], ["events", "chain"], ["graph", "chain"],
                 ["plan", "list"], ["plan", "show", "chain"], ["validate"]):
        res = repo.run(*args)
        assert res.code in (0, 3), (args, res)
        assert repo.commits() == n and clean(repo), args


# ----- lazy imports -----------------------------------------------------------------------------

@pytest.mark.parametrize("warm", [False, True])
def test_status_imports_neither_jsonschema_nor_watchdog(repo: Repo, warm: bool) -> None:
    repo.plan("webhooks", WEBHOOKS)
    drop_derived(repo.path)
    if warm:
        repo.ok("status", "webhooks")
    for args in (["status", "webhooks"], ["--json", "status", "webhooks"], ["next", "webhooks"]):
        argv = [sys.executable, "-X", "importtime", "-m", "flowgit", "--repo", str(repo.path), *args]
        proc = subprocess.run(argv, check=False, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                    if line.startswith("import time:")}
        assert imported, "no -X importtime output"
        assert not {m for m in imported if m.split(".")[0] in ("jsonschema", "watchdog")}, args


def test_json_flag_output_is_one_object(repo: Repo) -> None:
    repo.plan("chain", CHAIN)
    for args in (["status", "chain"], ["status"], ["plan", "list"], ["graph", "chain"], ["events", "chain"]):
        out = repo.ok("--json", *args).out
        assert out.endswith("\n") and out.count("\n") == 1
        assert isinstance(json.loads(out), dict)


def test_dates_in_a_plan_stay_text_in_json_and_the_plan_is_cached(repo: Repo) -> None:
    """`due: 2025-01-31` is a YAML timestamp: it must not break `--json` output (a date is no
    JSON type) nor keep the plan out of the derived cache."""
    src = repo.path.parent / "dated.yaml"
    src.write_text("id: dated\ntitle: D\nmilestones:\n  - {id: m1, title: M, due: 2025-01-31}\n"
                   "tasks:\n  - {id: a, title: A}\n")
    repo.ok("plan", "new", "dated", "--from", str(src))
    shown = repo.ok("plan", "show", "dated", "--json").json
    assert shown["definition"]["milestones"][0]["due"] == "2025-01-31"
    repo.ok("status", "dated", "--json")
    assert (repo.path / ".git/flowgit/plans/dated.marshal").is_file()
    assert repo.ok("plan", "show", "dated", "--json").json == shown
    assert repo.run("validate").code == 0


def test_an_impossible_date_is_a_one_line_error_with_its_line(repo: Repo) -> None:
    """2025-02-30 has the shape of a date but names no day: validate says where, and an edit of
    the plan refuses with the file and line instead of a traceback, writing nothing."""
    src = repo.path.parent / "dated.yaml"
    src.write_text("id: dated\ntitle: D\nmilestones:\n  - {id: m1, title: M, due: 2025-02-30}\n"
                   "tasks:\n  - {id: a, title: A}\n")
    res = repo.run("plan", "new", "dated", "--from", str(src))
    assert res.code == 1 and "dated.yaml:4" in res.err and "Traceback" not in res.err

    src.write_text(src.read_text().replace("02-30", "02-28"))
    repo.ok("plan", "new", "dated", "--from", str(src))
    plan = repo.path / ".flow/plans/dated/plan.yaml"
    plan.write_text(plan.read_text().replace("2025-02-28", "'2025-02-30'"))
    res = repo.run("validate")
    assert res.code == 1
    assert ".flow/plans/dated/plan.yaml:4: milestones[0].due: '2025-02-30' is not a day" in res.err

    plan.write_text(plan.read_text().replace("'2025-02-30'", "2025-02-30"))
    repo.git("commit", "-qam", "an impossible date", "--no-verify")
    before, text = repo.commits(), plan.read_text()
    res = repo.run("task", "add", "dated", "b", "--title", "B")
    assert res.code == 1 and res.err.count("\n") == 1
    assert ".flow/plans/dated/plan.yaml:4" in res.err and "YYYY-MM-DD" in res.err
    assert repo.commits() == before and plan.read_text() == text
