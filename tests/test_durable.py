"""Durable long-running orchestration (issue 7): plans that wait on plans, signals handled once
by the watcher, scheduled discovery, and outside conditions re-checked with backoff."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.clock import WallClock
from helpers import (PY, Repo, Watcher, of_type, row, state_branch, status, stop_cleanly, transitions,
                     wait_for)
from flowgit.store.repo import FlowRepo, automatic_actor

from flowgit.core.events import make_event, parse_time
from flowgit.watcher import schedules, waits
from flowgit.watcher import observer as watch

pytestmark = pytest.mark.usefixtures("venv_on_path")  # the watcher processes call `flowgit`


# ----- helpers ------------------------------------------------------------------------------------

def add_config(repo: Repo, text: str) -> None:
    path = repo.path / ".flow" / "config.yaml"
    path.write_text(path.read_text() + text)
    repo.git("commit", "-q", "--no-verify", "-m", "config", "--", ".flow/config.yaml")
    repo.ok("trust")  # commands written by hand run once trusted in this clone


def one_pass(repo: Repo) -> list[str]:
    lines: list[str] = []
    result = watch.one_pass(repo.path, lines.append, watch.extras(None, []))
    assert result != -1, lines
    assert not any("Traceback" in line for line in lines), lines
    return lines


def marker_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def action_script(tmp_path: Path, name: str = "action.py", exit_code: int = 0) -> tuple[Path, Path]:
    """A signal action that appends one line (its stdin data and env) to a marker file."""
    marker = tmp_path / f"{name}.marker"
    script = tmp_path / name
    script.write_text(
        "import json, os, sys, time\n"
        "data = sys.stdin.read()\n"
        "time.sleep(float(os.environ.get('ACTION_SLEEP', '0')))\n"
        f"with open({str(marker)!r}, 'a') as fh:\n"
        "    fh.write(json.dumps({'stdin': data, 'env': os.environ.get('FLOWGIT_SIGNAL_DATA'),\n"
        "                         'signal': os.environ.get('FLOWGIT_SIGNAL'),\n"
        "                         'plan': os.environ.get('FLOWGIT_PLAN')}) + '\\n')\n"
        f"sys.exit({exit_code})\n")
    return script, marker


# ----- plans that wait on plans ---------------------------------------------------------------------

OTHER = """\
id: other
title: Other plan
tasks:
  - id: T1
    title: First
  - id: T2
    title: Second
"""

MAIN = """\
id: main
title: Waits on other
tasks:
  - id: A
    title: Needs other/T1
    depends_on: [other/T1]
  - id: B
    title: Needs all of other
    depends_on: [other]
  - id: C
    title: Local dependency only
    depends_on: [A]
"""


def test_task_waits_on_another_plans_task_then_on_the_whole_plan(repo: Repo) -> None:
    repo.plan("other", OTHER)
    repo.plan("main", MAIN)
    data = status(repo, "main")
    rows = {t["id"]: t for t in data["tasks"]}
    assert rows["A"]["state"] == "pending" and rows["A"]["waiting_on"] == ["other/T1"]
    assert rows["B"]["state"] == "pending" and rows["B"]["waiting_on"] == ["other"]
    assert rows["C"]["state"] == "pending" and "waiting_on" not in rows["C"]
    assert data["ready"] == [] and not data["stalled"]
    text = repo.ok("status", "main").out
    assert "other/T1" in text and "(on other)" in text, text
    assert repo.run("claim", "main/A", "--worker", "w1").code != 0

    repo.ok("claim", "other/T1", "--worker", "w1")
    assert row(repo, "main", "A")["state"] == "pending"  # claimed is not done
    repo.ok("done", "other/T1", "--worker", "w1")
    rows = {t["id"]: t for t in status(repo, "main")["tasks"]}
    assert rows["A"]["state"] == "ready" and "waiting_on" not in rows["A"]
    assert rows["B"]["state"] == "pending" and rows["B"]["waiting_on"] == ["other"]

    repo.ok("claim", "other/T2", "--worker", "w1")
    repo.ok("done", "other/T2", "--worker", "w1")
    repo.ok("advance", "other")
    assert status(repo, "other")["phase"] == "finish"
    assert row(repo, "main", "B")["state"] == "pending"  # finish is not complete
    repo.ok("finish", "other")
    assert status(repo, "other")["phase"] == "complete"
    rows = {t["id"]: t for t in status(repo, "main")["tasks"]}
    assert rows["B"]["state"] == "ready" and "waiting_on" not in rows["B"]
    assert set(status(repo, "main")["ready"]) == {"A", "B"}


def test_a_failed_task_in_another_plan_blocks(repo: Repo) -> None:
    repo.plan("other", OTHER)
    repo.plan("main", MAIN)
    repo.ok("claim", "other/T1", "--worker", "w1")
    repo.ok("fail", "other/T1", "--worker", "w1", "--error", "broken")
    r = row(repo, "main", "A")
    assert r["state"] == "blocked" and r["blocked_by"] == ["other/T1"]


def _cycle_pair(repo: Repo, a_dep: str) -> None:
    repo.plan("ca", "id: ca\ntitle: A\ntasks:\n  - id: X\n    title: x\n")
    repo.plan("cb", "id: cb\ntitle: B\ntasks:\n  - id: Y\n    title: y\n    depends_on: [ca/X]\n")
    # the edit that closes the loop, as a user would make it by hand
    (repo.path / ".flow/plans/ca/plan.yaml").write_text(
        f"id: ca\ntitle: A\ntasks:\n  - id: X\n    title: x\n    depends_on: [{a_dep}]\n")


@pytest.mark.parametrize("a_dep", ["cb/Y", "cb"])
def test_cross_plan_cycle_is_rejected_by_validate(repo: Repo, a_dep: str) -> None:
    assert repo.run("validate").code == 0
    _cycle_pair(repo, a_dep)
    res = repo.run("validate")
    assert res.code == 1, res.out + res.err
    msg = res.out + res.err
    assert "cycle" in msg and ("ca -> cb -> ca" in msg or "cb -> ca -> cb" in msg), msg
    # the state is still readable (no endless recursion) and says what it waits on
    assert row(repo, "ca", "X")["state"] == "pending"
    assert repo.run("status").code == 0


def test_commit_hook_refuses_a_cross_plan_cycle(repo: Repo) -> None:
    _cycle_pair(repo, "cb/Y")
    assert repo.run("validate", str(repo.path / ".flow/plans/ca/plan.yaml")).code == 1
    repo.git("add", ".flow/plans/ca/plan.yaml")
    proc = subprocess.run(["git", "commit", "-q", "-m", "cycle"], cwd=repo.path, capture_output=True, text=True)
    assert proc.returncode != 0, proc.stdout + proc.stderr


def test_task_add_refuses_a_cross_plan_cycle(repo: Repo) -> None:
    repo.plan("ca", "id: ca\ntitle: A\ntasks:\n  - id: X\n    title: x\n")
    repo.plan("cb", "id: cb\ntitle: B\ntasks:\n  - id: Y\n    title: y\n    depends_on: [ca/X]\n")
    res = repo.run("task", "add", "ca", "Z", "--title", "z", "--dep", "cb/Y")
    assert res.code != 0
    assert repo.run("validate").code == 0


def test_plan_tree_with_parent(repo: Repo) -> None:
    repo.ok("plan", "new", "root", "--title", "Root")
    repo.ok("plan", "new", "child", "--parent", "root")
    repo.ok("plan", "new", "grandchild", "--parent", "child")
    repo.ok("plan", "new", "alone")
    assert repo.run("plan", "new", "orphan", "--parent", "missing").code != 0
    assert "parent: root" in (repo.path / ".flow/plans/child/plan.yaml").read_text()
    data = repo.ok("status", "--json").json
    parents = {p["plan"]: p["parent"] for p in data["plans"]}
    assert parents == {"root": None, "child": "root", "grandchild": "child", "alone": None}
    lines = repo.ok("status").out.splitlines()
    names = [ln.split()[0] for ln in lines]
    indent = {ln.split()[0]: len(ln) - len(ln.lstrip()) for ln in lines}
    assert names.index("root") < names.index("child") < names.index("grandchild"), lines
    assert indent["root"] == 0 and indent["alone"] == 0
    assert indent["child"] == 2 and indent["grandchild"] == 4, lines
    assert repo.run("validate").code == 0


# ----- signals ------------------------------------------------------------------------------------------

PLAN = """\
id: p
title: Signalled plan
# a comment that must survive add_tasks
tasks:
  - id: base
    title: Base task   # trailing comment
"""


def test_signal_appends_an_event_and_commits(repo: Repo) -> None:
    repo.plan("p", PLAN)
    before = repo.commits()
    res = repo.ok("signal", "p", "rescan", "--data", '{"pkg": "@x/y"}', "--json").json
    assert res["configured"] is False and res["commit"]
    assert repo.commits() == before + 1
    assert "Flow-Event: signal rescan" in repo.git("log", "-1", "--format=%B", transitions(repo))
    assert repo.git("status", "--porcelain", "--", ".flow") == ""
    received = of_type(repo, "p", "signal.received")
    assert len(received) == 1
    assert received[0]["id"] == res["event"]
    data = {k: v for k, v in received[0]["data"].items() if k != "code"}  # format 2 names the code commit
    assert data == {"name": "rescan", "data": {"pkg": "@x/y"}}
    assert repo.run("signal", "p", "rescan", "--data", "{bad").code == 2
    assert repo.run("signal", "nope", "rescan").code != 0
    assert repo.run("signal", "p", "../x").code != 0
    assert repo.commits() == before + 1


def test_watcher_pass_runs_a_signal_action_exactly_once(repo: Repo, tmp_path: Path) -> None:
    script, marker = action_script(tmp_path)
    add_config(repo, f"signals:\n  rescan: {{run: [{PY}, {script}]}}\n")
    repo.plan("p", PLAN)
    sig = repo.ok("signal", "p", "rescan", "--data", '{"pkg": "a"}', "--json").json["event"]
    for _ in range(3):
        one_pass(repo)
    lines = marker_lines(marker)
    assert len(lines) == 1, lines
    got = json.loads(lines[0])
    assert json.loads(got["stdin"]) == {"pkg": "a"}  # FORMAT: the action receives the data on stdin
    assert json.loads(got["env"]) == {"pkg": "a"}
    assert got["signal"] == "rescan" and got["plan"] == "p"
    handled = [e["data"] for e in of_type(repo, "p", "signal.handled")]
    assert [h["outcome"] for h in handled] == ["started", "ok"]
    assert all(h["signal"] == sig for h in handled)
    assert handled[1]["exit_code"] == 0
    assert repo.git("status", "--porcelain", "--", ".flow") == ""


def test_a_failing_action_is_recorded_once_and_not_retried(repo: Repo, tmp_path: Path) -> None:
    script, marker = action_script(tmp_path, exit_code=3)
    add_config(repo, f"signals:\n  rescan: {{run: [{PY}, {script}]}}\n")
    repo.plan("p", PLAN)
    repo.ok("signal", "p", "rescan")
    one_pass(repo)
    one_pass(repo)
    assert len(marker_lines(marker)) == 1
    final = of_type(repo, "p", "signal.handled")[-1]["data"]
    assert final["outcome"] == "failed" and final["exit_code"] == 3


def test_unconfigured_signal_is_recorded_as_ignored(repo: Repo) -> None:
    repo.plan("p", PLAN)
    sig = repo.ok("signal", "p", "mystery", "--json").json["event"]
    lines = one_pass(repo)
    one_pass(repo)
    handled = of_type(repo, "p", "signal.handled")
    assert len(handled) == 1, handled
    assert handled[0]["data"]["signal"] == sig and handled[0]["data"]["outcome"] == "ignored"
    assert any("mystery" in line for line in lines)


def test_builtin_add_tasks_keeps_comments_and_tasks_become_ready(repo: Repo) -> None:
    add_config(repo, "signals:\n  add: {builtin: add_tasks}\n")
    repo.plan("p", PLAN)
    repo.ok("submit", "p")
    data = {"tasks": [{"id": "n1", "title": "New one"},
                      {"id": "n2", "title": "After base", "depends_on": ["base"], "priority": "high"}]}
    repo.ok("signal", "p", "add", "--data", json.dumps(data))
    one_pass(repo)
    text = (repo.path / ".flow/plans/p/plan.yaml").read_text()
    assert "# a comment that must survive add_tasks" in text
    assert "# trailing comment" in text
    assert text.startswith(PLAN), text  # the old text is untouched: tasks were appended
    rows = {t["id"]: t for t in status(repo, "p")["tasks"]}
    assert rows["n1"]["state"] == "ready"
    assert rows["n2"]["state"] == "pending" and rows["n2"]["blocked_by"] == ["base"]
    final = of_type(repo, "p", "signal.handled")[-1]["data"]
    assert final["outcome"] == "ok" and final["added"] == ["n1", "n2"]
    repo.ok("claim", "p/base", "--worker", "w")
    repo.ok("done", "p/base", "--worker", "w")
    assert row(repo, "p", "n2")["state"] == "ready"
    # the same tasks again: nothing added, nothing duplicated
    repo.ok("signal", "p", "add", "--data", json.dumps(data))
    one_pass(repo)
    assert (repo.path / ".flow/plans/p/plan.yaml").read_text() == text
    assert of_type(repo, "p", "signal.handled")[-1]["data"]["added"] == []
    # a bad task, or data that is not an object, is a recorded failure, not a crash
    for bad in ({"tasks": [{"title": "no id"}]}, ["n3"], {"tasks": [{"id": "n3", "title": "x", "bogus": 1}]}):
        repo.ok("signal", "p", "add", "--data", json.dumps(bad))
        one_pass(repo)
        final = of_type(repo, "p", "signal.handled")[-1]["data"]
        assert final["outcome"] == "failed" and final["error"], (bad, final)
    assert (repo.path / ".flow/plans/p/plan.yaml").read_text() == text
    assert repo.run("validate").code == 0
    assert repo.git("status", "--porcelain", "--", ".flow") == ""


def test_add_tasks_waits_while_the_user_edits_the_plan(repo: Repo) -> None:
    add_config(repo, "signals:\n  add: {builtin: add_tasks}\n")
    repo.plan("p", PLAN)
    repo.ok("submit", "p")
    repo.ok("signal", "p", "add", "--data", json.dumps({"tasks": [{"id": "n1", "title": "New"}]}))
    plan = repo.path / ".flow/plans/p/plan.yaml"
    plan.write_text(plan.read_text().replace("Signalled plan", "Signalled plan, edited"))
    lines = one_pass(repo)
    assert any("waiting: .flow/plans/p/plan.yaml has uncommitted changes" in ln for ln in lines), lines
    assert of_type(repo, "p", "signal.handled") == []
    assert "edited" not in repo.git("show", "HEAD:.flow/plans/p/plan.yaml")
    repo.git("commit", "-qam", "my edit", "--no-verify")
    one_pass(repo)
    assert of_type(repo, "p", "signal.handled")[-1]["data"]["added"] == ["n1"]
    assert "edited" in repo.git("show", "HEAD:.flow/plans/p/plan.yaml")


def test_add_tasks_never_writes_a_cross_plan_cycle(repo: Repo) -> None:
    add_config(repo, "signals:\n  add: {builtin: add_tasks}\n")
    repo.plan("p", PLAN)
    repo.plan("q", "id: q\ntitle: Waits on p\ntasks:\n  - id: Q1\n    title: q\n    depends_on: [p]\n")
    before = (repo.path / ".flow/plans/p/plan.yaml").read_text()
    repo.ok("signal", "p", "add", "--data", json.dumps({"tasks": [{"id": "x", "title": "x", "depends_on": ["q/Q1"]}]}))
    one_pass(repo)
    final = of_type(repo, "p", "signal.handled")[-1]["data"]
    assert final["outcome"] == "failed" and "cycle" in final["error"], final
    assert (repo.path / ".flow/plans/p/plan.yaml").read_text() == before
    assert repo.run("validate").code == 0


def test_real_watch_process_handles_a_signal_once(repo: Repo, tmp_path: Path,
                                                  watchers: list[Watcher]) -> None:
    script, marker = action_script(tmp_path)
    add_config(repo, f"signals:\n  rescan: {{run: [{PY}, {script}]}}\n")
    repo.plan("p", PLAN)
    w = Watcher(repo, "--interval", "0.2")
    watchers.append(w)
    repo.ok("signal", "p", "rescan", "--data", '"x"')
    wait_for(lambda: any(e["data"]["outcome"] == "ok" for e in of_type(repo, "p", "signal.handled")),
             10, "the signal to be handled")
    time.sleep(0.8)  # several more passes
    stop_cleanly(w)
    assert len(marker_lines(marker)) == 1, w.output
    assert "signal rescan: ok" in w.output


def test_two_watcher_processes_never_run_an_action_twice(repo: Repo, tmp_path: Path,
                                                         watchers: list[Watcher]) -> None:
    script, marker = action_script(tmp_path)
    disc = tmp_path / "disc.py"
    disc_count = tmp_path / "disc.count"
    disc.write_text(f"open({str(disc_count)!r}, 'a').write('x\\n')\n"
                    "print('{\"id\": \"found\", \"title\": \"Found\"}')\n")
    add_config(repo, f"signals:\n  rescan: {{run: [{PY}, {script}]}}\n"
                     f"schedules:\n  - {{id: disc, every: 1h, plan: p, run: [{PY}, {disc}]}}\n")
    repo.plan("p", PLAN)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACTION_SLEEP", "0.1")  # a slower action widens any race window
        w1 = Watcher(repo, "--interval", "0.1")
        watchers.append(w1)
        w2 = Watcher(repo, "--interval", "0.1")
        watchers.append(w2)
    sent = [repo.ok("signal", "p", "rescan", "--data", str(i), "--json").json["event"] for i in range(3)]
    sent += [repo.ok("signal", "p", "unknown", "--json").json["event"] for _ in range(2)]

    def finished() -> bool:
        done = {e["data"]["signal"] for e in of_type(repo, "p", "signal.handled")
                if e["data"]["outcome"] != "started"}
        return done >= set(sent)
    wait_for(finished, 20, "all signals to be handled")
    time.sleep(1.0)
    stop_cleanly(w1)
    stop_cleanly(w2)
    lines = marker_lines(marker)
    assert sorted(json.loads(json.loads(ln)["stdin"]) for ln in lines) == [0, 1, 2], lines
    handled = of_type(repo, "p", "signal.handled")
    for sig in sent:
        mine = [e["data"]["outcome"] for e in handled if e["data"]["signal"] == sig]
        assert mine in (["started", "ok"], ["ignored"]), (sig, mine)
    assert len(of_type(repo, "p", "schedule.ran")) == 1
    assert (repo.path / ".flow/plans/p/plan.yaml").read_text().count("id: found") == 1


# ----- scheduled discovery --------------------------------------------------------------------------

def discovery(tmp_path: Path, extra_second_time: bool = False) -> tuple[Path, Path]:
    """A discovery command printing a task, a plan, junk and a broken line; counts its runs."""
    script = tmp_path / "discover.py"
    count = tmp_path / "discover.count"
    script.write_text(
        "import json, os\n"
        f"path = {str(count)!r}\n"
        "n = len(open(path).read().splitlines()) if os.path.exists(path) else 0\n"
        "open(path, 'a').write('run\\n')\n"
        "print('scanning...')\n"
        "print(json.dumps({'id': 'D1', 'title': 'Discovered task', 'priority': 'high'}))\n"
        "print(json.dumps({'kind': 'plan', 'id': 'pkg-a', 'title': 'Plan for pkg-a', 'parent': 'p',\n"
        "                  'goal': 'write it', 'tasks': [{'id': 'W1', 'title': 'Write'}]}))\n"
        "print('{not json')\n"
        "print(json.dumps({'id': 'bad task'}))\n"
        "print(json.dumps({'kind': 'plan', 'id': 'bad-plan', 'title': 'x', 'tasks': [{'id': 'no title'}]}))\n"
        + ("if n >= 1:\n    print(json.dumps({'id': 'D2', 'title': 'Second'}))\n" if extra_second_time else ""))
    return script, count


def runs(count: Path) -> int:
    return len(count.read_text().splitlines()) if count.exists() else 0


def test_schedule_creates_tasks_and_plans_once(repo: Repo, tmp_path: Path) -> None:
    script, count = discovery(tmp_path)
    add_config(repo, f"schedules:\n  - id: scan\n    every: 1h\n    plan: p\n    run: [{PY}, {script}]\n")
    repo.plan("p", PLAN)
    before = repo.commits()
    lines = one_pass(repo)
    assert runs(count) == 1, lines
    assert repo.commits() == before + (2 if state_branch(repo) else 1)  # format 2: the branch and the state
    text = (repo.path / ".flow/plans/p/plan.yaml").read_text()
    assert text.startswith(PLAN) and text.count("id: D1") == 1
    rows = {t["id"]: t for t in status(repo, "p")["tasks"]}
    assert rows["D1"]["state"] == "ready"
    sub = status(repo, "pkg-a")
    assert sub["parent"] == "p" and [t["id"] for t in sub["tasks"]] == ["W1"]
    assert of_type(repo, "pkg-a", "plan.created")
    ran = of_type(repo, "p", "schedule.ran")
    assert len(ran) == 1
    assert ran[0]["data"]["schedule"] == "scan"
    assert ran[0]["data"]["tasks_added"] == ["D1"] and ran[0]["data"]["plans_created"] == ["pkg-a"]
    # the broken line and the bad task and plan are reported, not fatal, and keep nothing out
    problems = ran[0]["data"]["problems"]
    assert len(problems) == 3, problems
    assert not (repo.path / ".flow/plans/bad-plan").exists()
    assert ran[0]["data"]["outcome"] == "ok" and ran[0]["data"]["slot"]
    assert repo.run("validate").code == 0
    assert repo.git("status", "--porcelain", "--", ".flow") == ""
    # the tree shows the discovered plan under its parent
    out = repo.ok("status").out.splitlines()
    assert any(ln.startswith("  pkg-a") for ln in out), out
    # a second pass before the interval does nothing at all
    head = repo.git("rev-parse", "HEAD")
    one_pass(repo)
    assert runs(count) == 1 and repo.git("rev-parse", "HEAD") == head


def test_schedule_rerun_after_interval_is_idempotent(repo: Repo, tmp_path: Path,
                                                    wall_clock: WallClock) -> None:
    script, count = discovery(tmp_path, extra_second_time=True)
    add_config(repo, f"schedules:\n  - {{id: scan, every: 1s, plan: p, run: [{PY}, {script}]}}\n")
    repo.plan("p", PLAN)
    one_pass(repo)
    plan_text = (repo.path / ".flow/plans/pkg-a/plan.yaml").read_text()
    wall_clock.advance(1.05)
    one_pass(repo)
    assert runs(count) == 2
    text = (repo.path / ".flow/plans/p/plan.yaml").read_text()
    assert text.count("id: D1") == 1 and text.count("id: D2") == 1
    assert (repo.path / ".flow/plans/pkg-a/plan.yaml").read_text() == plan_text
    assert len(of_type(repo, "pkg-a", "plan.created")) == 1
    ran = [e["data"] for e in of_type(repo, "p", "schedule.ran")]
    assert [(r["tasks_added"], r["plans_created"]) for r in ran] == [(["D1"], ["pkg-a"]), (["D2"], [])]
    assert repo.run("validate").code == 0


def test_missed_schedule_runs_once_not_once_per_slot(repo: Repo, tmp_path: Path) -> None:
    script, count = discovery(tmp_path)
    add_config(repo, f"schedules:\n  - {{id: scan, every: '@hourly', plan: p, run: [{PY}, {script}]}}\n")
    repo.plan("p", PLAN)
    one_pass(repo)
    assert runs(count) == 1
    fr = FlowRepo(repo.path)
    actor = automatic_actor(fr)
    later = time.time() + 50 * 3600  # the watcher was down for 50 slots
    lines: list[str] = []
    assert schedules.run_schedules(fr, actor, lines.append, now=later) == 1
    assert runs(count) == 2
    fr = FlowRepo(repo.path)
    assert schedules.run_schedules(fr, actor, lines.append, now=later + 1) == 0
    assert schedules.run_schedules(fr, actor, lines.append, now=later + 1800) == 0
    assert runs(count) == 2
    assert len(of_type(repo, "p", "schedule.ran")) == 2
    assert schedules.run_schedules(FlowRepo(repo.path), actor, lines.append, now=later + 3601) == 1
    assert runs(count) == 3


def test_bad_schedules_do_not_stop_the_watcher(repo: Repo, tmp_path: Path) -> None:
    script, count = discovery(tmp_path)
    add_config(repo, "schedules:\n"
                     f"  - {{id: ghost, every: 1h, plan: nosuchplan, run: [{PY}, {script}]}}\n"
                     f"  - {{id: good, every: 1h, plan: p, run: [{PY}, {script}]}}\n"
                     "  - {id: broken, every: 1h, plan: p, run: [/nonexistent/cmd]}\n")
    repo.plan("p", PLAN)
    repo.ok("signal", "p", "later")
    lines = one_pass(repo)
    assert any("ghost" in ln or "nosuchplan" in ln for ln in lines), lines
    ran = {e["data"]["schedule"]: e["data"] for e in of_type(repo, "p", "schedule.ran")}
    assert ran["good"]["tasks_added"] == ["D1"]
    assert ran["broken"]["exit_code"] == 127 and ran["broken"]["tasks_added"] == []
    assert of_type(repo, "p", "signal.handled"), "the rest of the pass still ran"


def test_due_schedules_unit() -> None:
    now = 1_000_000.0
    s = [{"id": "h", "every": "1h"}, {"id": "d", "every": "@daily"}, {"id": "q", "every": "30s"},
         {"id": "n", "every": 90}, {"id": "hourly", "every": "@hourly"}]
    assert [x["id"] for x in schedules.due_schedules(s, {}, now)] == ["h", "d", "q", "n", "hourly"]
    runs_ = {"h": now - 3599, "d": now - 86400, "q": now - 10, "n": now - 91, "hourly": now - 3600}
    assert [x["id"] for x in schedules.due_schedules(s, runs_, now)] == ["d", "n", "hourly"]
    # many missed slots are still one due entry
    assert schedules.due_schedules([s[0]], {"h": now - 100 * 3600}, now) == [s[0]]
    with pytest.raises(Exception):
        schedules.due_schedules([{"id": "x", "every": "sometimes"}], {}, now)


def test_last_runs_unit() -> None:
    t0 = 1_700_000_000.0
    evs = [make_event("schedule.ran", "p", None, "w", 2, {"schedule": "a"}, t0),
           make_event("schedule.ran", "p", None, "w", 3, {"schedule": "b"}, t0 + 5),
           make_event("schedule.ran", "p", None, "w", 4, {"schedule": "a"}, t0 + 10)]
    got = schedules.last_runs(list(reversed(evs)))
    assert got["a"] == pytest.approx(t0 + 10, abs=1e-3) and got["b"] == pytest.approx(t0 + 5, abs=1e-3)


def test_parse_discovery_unit() -> None:
    out = "\n".join([
        "starting scan",
        '{"id": "T1", "title": "task one"}',
        "",
        '   {"kind": "plan", "id": "P1", "title": "plan one"}   ',
        '{"id": broken',
        '[1, 2]',
        '"a string"',
        '{"id": "T2", "title": "two", "kind": "task"}',
    ])
    items, problems = schedules.parse_discovery(out)
    assert [i["id"] for i in items] == ["T1", "P1", "T2"]
    assert items[1]["kind"] == "plan"
    assert problems == ["line 5: not JSON"]
    assert schedules.parse_discovery("") == ([], [])


# ----- waiting with backoff --------------------------------------------------------------------------

WAITING = """\
id: wp
title: Waits for an outside condition
retry: {base: 2, cap: 10}
tasks:
  - id: gate
    title: Parent plan exists
    wait: {run: [python3, -c, "import os,sys; sys.exit(0 if os.path.exists('flag') else 1)"], timeout: 10}
  - id: after
    title: After the gate
    depends_on: [gate]
  - id: never
    title: A condition that cannot even run
    wait: {run: [/nonexistent/probe]}
"""


def test_wait_condition_rechecked_with_fibonacci_backoff(repo: Repo, wall_clock: WallClock) -> None:
    repo.plan("wp", WAITING.replace("python3", PY))
    repo.ok("submit", "wp")
    assert status(repo, "wp")["phase"] == "execute"
    r = row(repo, "wp", "gate")
    assert r["state"] == "pending" and r["waiting_on"] == ["wait"]
    assert not status(repo, "wp")["stalled"]
    # the first pass checks it; an immediate second pass does not (next check is 2 s away)
    one_pass(repo)
    checks = of_type(repo, "wp", "task.wait", "gate")
    assert len(checks) == 1 and checks[0]["data"]["ok"] is False
    one_pass(repo)
    assert len(of_type(repo, "wp", "task.wait", "gate")) == 1

    # time passes: every check is due, every pass checks once
    for _ in range(6):
        wall_clock.advance(100)
        one_pass(repo)
    checks = of_type(repo, "wp", "task.wait", "gate")
    delays = [round(e["data"]["next_at"] - parse_time(e["at"]), 3) for e in checks]
    assert delays == [2, 4, 6, 10, 10, 10, 10], delays  # base 2 x 1, 2, 3, 5 ... capped at 10
    assert all(e["data"]["ok"] is False for e in checks)
    r = row(repo, "wp", "gate")
    assert r["state"] == "pending" and r["waiting_on"] == ["wait"]  # never failed for waiting
    assert row(repo, "wp", "after")["state"] == "pending"
    never = of_type(repo, "wp", "task.wait", "never")
    assert never and all(e["data"]["ok"] is False for e in never)
    assert row(repo, "wp", "never")["state"] == "pending"

    # the condition becomes true: the next due check makes it ready
    (repo.path / "flag").write_text("")
    wall_clock.advance(100)
    one_pass(repo)
    last = of_type(repo, "wp", "task.wait", "gate")[-1]["data"]
    assert last["ok"] is True and last["next_at"] is None
    r = row(repo, "wp", "gate")
    assert r["state"] == "ready" and "waiting_on" not in r
    n = len(of_type(repo, "wp", "task.wait", "gate"))
    one_pass(repo)
    assert len(of_type(repo, "wp", "task.wait", "gate")) == n  # no more checks once met
    repo.ok("claim", "wp/gate", "--worker", "w")
    repo.ok("done", "wp/gate", "--worker", "w")
    assert row(repo, "wp", "after")["state"] == "ready"
    assert repo.run("validate").code == 0


def test_two_watchers_checking_at_once_advance_the_backoff_once(repo: Repo,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    repo.plan("wp", WAITING.replace("python3", PY))
    repo.ok("submit", "wp")
    real = waits.run_validation
    nested: list[int] = []

    def racing(v: Any, cwd: str, env: Any = None) -> Any:
        # while this watcher runs the condition, another one checks and records first
        if not nested and v.name == "wait:gate":
            nested.append(1)
            fr = FlowRepo(repo.path)
            waits.check_waits(fr, "wp", "other-watcher", lambda line: None)
        return real(v, cwd, env)

    monkeypatch.setattr(waits, "run_validation", racing)
    waits.check_waits(FlowRepo(repo.path), "wp", automatic_actor(FlowRepo(repo.path)), lambda line: None)
    checks = of_type(repo, "wp", "task.wait", "gate")
    assert len(checks) == 1, checks
    assert checks[0]["actor"] == "other-watcher"


def test_wait_uses_the_plans_explicit_strategy(repo: Repo, wall_clock: WallClock) -> None:
    repo.plan("wp", WAITING.replace("python3", PY).replace("retry: {base: 2, cap: 10}",
                                                              "retry: {strategy: exponential, base: 1, cap: 100, max_attempts: 2}"))
    repo.ok("submit", "wp")
    for _ in range(4):
        wall_clock.advance(1000)
        one_pass(repo)
    checks = of_type(repo, "wp", "task.wait", "gate")
    assert [round(e["data"]["next_at"] - parse_time(e["at"]), 3) for e in checks] == [1, 2, 4, 8]
    assert row(repo, "wp", "gate")["state"] == "pending"  # max_attempts does not apply to waiting


def test_wait_is_not_checked_outside_execution(repo: Repo) -> None:
    repo.plan("wp", WAITING.replace("python3", PY))
    one_pass(repo)
    assert of_type(repo, "wp", "task.wait", "gate") == []
    assert row(repo, "wp", "gate")["waiting_on"] == ["wait"]


def test_the_watcher_wakes_for_timers_not_only_for_file_changes(repo: Repo, tmp_path: Path,
                                                                watchers: list[Watcher]) -> None:
    """A 1 s schedule and a wait re-checked every second are honoured by a watcher whose rescan
    is a minute away and that sees no file change: it sleeps until the next thing falls due."""
    script, count = tmp_path / "tick.py", tmp_path / "ticks"
    script.write_text(f"open({str(count)!r}, 'a').write('x\\n')\n")
    flag = tmp_path / "flag"
    add_config(repo, "watch: {rescan_seconds: 60}\n"
                     f"schedules:\n  - {{id: tick, every: 1s, plan: wp, run: [{PY}, {script}]}}\n")
    repo.plan("wp", f"""\
id: wp
title: Timers
retry: {{strategy: fixed, base: 1, cap: 1}}
tasks:
  - id: gate
    title: Waits for a flag outside the repository
    wait: {{run: [{PY}, -c, "import os,sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 1)"]}}
""")
    repo.ok("submit", "wp")
    w = Watcher(repo)
    watchers.append(w)
    wait_for(lambda: runs(count) >= 3, 8, "three runs of a 1 s schedule")
    wait_for(lambda: "gate: wait condition not met" in w.output, 5, "the first wait check")
    flag.write_text("up")
    wait_for(lambda: row(repo, "wp", "gate")["state"] == "ready", 6, "the wait re-checked on its timer")
    stop_cleanly(w)
