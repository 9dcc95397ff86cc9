"""`run --land branch` (issue 15): a task's checked work stays on its branch for review in a pull
request (pushed with `sync: push`), the task waits in `review`, and it is done when its branch
reaches the base: `run` notices when it starts, the watcher on its passes."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import Repo, Watcher, wait_for

EXECUTOR = '''\
import os
from pathlib import Path
if os.environ["FLOWGIT_TASK"] != "NOTHING":
    Path(os.environ["FLOWGIT_TASK"] + ".txt").write_text("work\\n")
Path(os.environ["FLOWGIT_NOTE_FILE"]).write_text("wrote " + os.environ["FLOWGIT_TASK"] + ".txt")
'''


PLAN = ("id: p\ntitle: Reviewed\ntasks:\n  - {id: A, title: Alpha, files: [A.txt]}\n"
        "  - {id: B, title: Beta, depends_on: [A]}\n")


def setup(repo: Repo, tmp_path: Path, extra: str = "", plan: str = PLAN) -> None:
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR)
    cfg = repo.path / ".flow/config.yaml"
    text = cfg.read_text().replace("executors: {}\n", "")
    text = re.sub(r"(?m)^default_executor: .*$", "default_executor: script", text)
    cfg.write_text(text + f"executors:\n  script:\n    argv: {json.dumps([sys.executable, str(script)])}\n"
                   + extra)
    repo.git("commit", "-q", "-am", "test: the script executor")
    repo.ok("trust")
    src = repo.path.parent / "p.yaml"
    src.write_text(plan)
    repo.ok("plan", "new", "p", "--from", str(src))


def state(repo: Repo) -> dict[str, str]:
    return {t["id"]: t["state"] for t in repo.ok("status", "p", "--json").json["tasks"]}


def events(repo: Repo, task: str) -> list[dict[str, Any]]:
    return json.loads(repo.ok("events", "p", task, "--json").out)["events"]


def merge_pull_request(repo: Repo, branch: str) -> None:
    """What a reviewed pull request's merge does to the base branch."""
    repo.git("merge", "-q", "--no-ff", "--no-verify", "-m", f"Merge pull request: {branch}", branch)


def test_the_branch_waits_for_review_and_the_next_run_sees_it_merged(repo: Repo, tmp_path: Path) -> None:
    setup(repo, tmp_path)
    res = repo.proc("run", "p", "--land", "branch", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert (out["done"], out["review"], out["failed"]) == (0, 1, 0)
    assert "p/A in review on branch flow/p/A (1 file(s), +1 -0): done once it reaches main" in res.stderr
    assert state(repo) == {"A": "review", "B": "pending"}
    status = repo.ok("status", "p", "--json").json
    assert status["counts"]["review"] == 1 and status["stalled"] is False
    assert "A.txt" not in repo.git("ls-tree", "--name-only", "main")  # nothing merged
    assert repo.git("show", "flow/p/A:A.txt") == "work"  # the branch is kept for the review
    review = [e for e in events(repo, "A") if e["type"] == "task.review"][0]["data"]
    assert review["branch"] == "flow/p/A" and review["base"] == "main"
    assert review["commit"] == repo.git("rev-parse", "flow/p/A")
    assert review["files_modified"] == ["A.txt"] and review["note"] == "wrote A.txt"
    # a claim cannot take a task in review
    assert repo.run("claim", "p/A", "--worker", "w").code != 0

    # nothing has reached main: a second run changes nothing about A
    res = repo.proc("run", "p", "--land", "branch", "--json", timeout=60)
    assert res.returncode == 0 and json.loads(res.stdout)["review"] == 0
    assert state(repo) == {"A": "review", "B": "pending"}

    merge_pull_request(repo, "flow/p/A")
    res = repo.proc("run", "p", "--land", "branch", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "p/A done: its reviewed branch reached the base" in res.stderr
    assert state(repo) == {"A": "done", "B": "review"}
    done = [e for e in events(repo, "A") if e["type"] == "task.done"][0]["data"]
    assert done["files_modified"] == ["A.txt"] and done["note"] == "wrote A.txt"
    assert "reached main" in done["landed"]
    repo.ok("validate")


def test_the_watcher_notices_a_merged_branch(repo: Repo, tmp_path: Path, venv_on_path: None,
                                             watchers: list[Watcher]) -> None:
    setup(repo, tmp_path, extra="run:\n  land: branch\n")  # the config's way to say --land branch
    res = repo.proc("run", "p", "--json", timeout=60)
    assert res.returncode == 0 and json.loads(res.stdout)["review"] == 1, res.stdout + res.stderr
    w = Watcher(repo, "--interval", "0.5")
    watchers.append(w)
    merge_pull_request(repo, "flow/p/A")
    wait_for(lambda: state(repo)["A"] == "done", 10, "the watcher to record A done")
    wait_for(lambda: any("p/A done: its reviewed branch reached the base" in line for line in w.lines),
             5, "the watcher's line")
    assert state(repo)["B"] == "ready"


def test_land_merge_is_the_default_and_merges(repo: Repo, tmp_path: Path) -> None:
    setup(repo, tmp_path)
    res = repo.proc("run", "p", "--land", "merge", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["done"] == 2
    assert repo.git("show", "main:A.txt") == "work"
    assert repo.git("branch", "--list", "flow/*/*") == ""  # task branches (flow/state is no task)


def test_with_sync_push_the_branch_is_pushed_for_a_pull_request(repo: Repo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo.git("remote", "add", "origin", str(remote))
    repo.git("push", "-q", "origin", "main")
    setup(repo, tmp_path)
    repo.git("push", "-q", "origin", "main")
    cfg = repo.path / ".flow/config.yaml"
    cfg.write_text(re.sub(r"(?m)^sync: .*$", "sync: push", cfg.read_text()))
    repo.git("commit", "-q", "-am", "sync: push")
    res = repo.proc("run", "p", "--land", "branch", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "pushed to origin" in res.stderr
    heads = subprocess.run(["git", "ls-remote", "--heads", str(remote)], capture_output=True,
                           text=True, check=True).stdout
    assert "refs/heads/flow/p/A" in heads
    assert repo.git("rev-parse", "flow/p/A") in heads

    # the pull request merged on the remote: once fetched, the next run sees it
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(remote), str(other)], check=True)
    for args in (["config", "user.email", "r@example.com"], ["config", "user.name", "R"],
                 ["merge", "-q", "--no-ff", "--no-verify", "-m", "Merge PR", "origin/flow/p/A"],
                 ["push", "-q", "origin", "main"]):
        subprocess.run(["git", *args], cwd=other, check=True)
    repo.git("fetch", "-q", "origin")
    res = repo.proc("run", "p", "--land", "branch", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert state(repo)["A"] == "done"


def test_a_task_that_changed_nothing_has_nothing_to_review(repo: Repo, tmp_path: Path) -> None:
    setup(repo, tmp_path, plan="id: p\ntitle: t\ntasks:\n  - {id: NOTHING, title: Check only}\n")
    res = repo.proc("run", "p", "--land", "branch", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (json.loads(res.stdout)["done"], json.loads(res.stdout)["review"]) == (1, 0)
    assert repo.git("branch", "--list", "flow/*/*") == ""  # task branches (flow/state is no task)


def test_a_bad_land_is_refused(repo: Repo) -> None:
    res = repo.proc("run", "p", "--land", "squash")
    assert res.returncode == 2 and "squash" in res.stderr


# ----- the fold of a review (pure) -------------------------------------------------------------

def test_review_is_a_state_of_its_own_that_anyone_ends_with_done() -> None:
    from flowgit.core.events import format_time, make_event
    from flowgit.core.fold import evaluate, reduce_task
    from flowgit.core.model import Plan

    t0 = 1_800_000_000.0

    def ev(type_: str, actor: str, clock: int, **data: Any) -> Any:
        return make_event(type_, "p", "a", actor, clock, data, now=t0 + clock)

    plan = Plan.from_dict({"id": "p", "title": "t", "tasks": [
        {"id": "a", "title": "a"}, {"id": "b", "title": "b", "depends_on": ["a"]}]}, "plan.yaml")
    claimed = [ev("task.claimed", "w1", 1, lease_until=format_time(t0 + 900))]
    phase = [make_event("plan.phase", "p", None, "w1", 1, {"to": "execute"}, now=t0)]

    # only the holder can put it in review; someone else's review line is ignored
    assert reduce_task(claimed + [ev("task.review", "w2", 2)]).status == "claimed"
    review = claimed + [ev("task.review", "w1", 2, branch="flow/p/a")]
    st = evaluate(plan, {"a": reduce_task(review)}, phase, t0 + 5000)  # long after the lease
    assert (st.tasks["a"].state, st.tasks["b"].state) == ("review", "pending")
    assert st.counts["review"] == 1 and not st.stalled
    assert reduce_task(review + [ev("task.claimed", "w3", 3)]).status == "review"  # not claimable
    done = reduce_task(review + [ev("task.done", "watcher", 3, note="merged")])
    assert done.status == "done"
    assert evaluate(plan, {"a": done}, phase, t0 + 10).tasks["b"].state == "ready"
