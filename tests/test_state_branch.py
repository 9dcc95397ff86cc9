"""Format 2: the state branch (ADR 0011). Event logs live on `flow/state`, written with
plumbing, shared by every work tree, carried by clone and fetch; the code branch holds no
transition commit; merges of the state never lose an event."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import Repo, git, init_repo, states

PLAN = """id: P
title: state branch
goal: exercise the state branch
tasks:
""" + "".join(f"  - id: T{i}\n    title: task {i}\n" for i in range(1, 9))


def state_repo(path: Path) -> Repo:
    r = init_repo(path, "2")
    return r


def executing(path: Path, plan: str = PLAN) -> Repo:
    r = state_repo(path)
    r.plan("P", plan)
    r.ok("submit", "P")
    return r


def state_log(r: Repo, plan: str, stream: str) -> list[dict[str, object]]:
    from flowgit.store.state import log_path

    out = subprocess.run(["git", "show", f"flow/state:{log_path(plan, stream)}"], cwd=r.path,
                         capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def forge_state(r: Repo, tmp_path: Path, path: str, text: str, message: str) -> None:
    """A commit on flow/state that sets one file to `text`, made with plumbing by hand (as a
    hostile tool, or someone without flowgit, would)."""
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=r.path, input=text,
                          capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / f"idx-{r.path.name}")}
    subprocess.run(["git", "read-tree", "flow/state"], cwd=r.path, env=env, check=True)
    subprocess.run(["git", "update-index", "--cacheinfo", f"100644,{blob},{path}"], cwd=r.path, env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=r.path, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    r.git("update-ref", "refs/heads/flow/state", r.git("commit-tree", tree, "-p", "flow/state", "-m", message))


def code_subjects(r: Repo) -> list[str]:
    return r.git("log", "--format=%s", "main").splitlines()


def test_transitions_go_to_the_state_branch_and_never_to_the_code_branch(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    before = code_subjects(r)
    r.ok("claim", "P/T1", "--worker", "w1")
    r.ok("heartbeat", "P/T1", "--worker", "w1")
    r.ok("done", "P/T1", "--worker", "w1", "--note", "finished")
    assert code_subjects(r) == before  # no claim, heartbeat or done on main
    assert r.git("status", "--porcelain") == ""
    assert not (r.path / ".flow" / "plans" / "P" / "events").exists()  # nothing in the work tree
    types = [e["type"] for e in state_log(r, "P", "T1")]
    assert types[-3:] == ["task.claimed", "task.heartbeat", "task.done"]
    subjects = r.git("log", "--format=%s", "flow/state").splitlines()
    assert subjects[0] == "flow(P/T1): done"
    # the fan-out keeps one write's new trees small however many logs there are
    paths = r.git("ls-tree", "-r", "--name-only", "flow/state").splitlines()
    assert any(p.startswith(".flow/plans/P/events/") and p.count("/") == 5 for p in paths)
    assert states(r, "P")["T1"] == "done"
    events = r.ok("events", "P", "T1", "--json").json
    assert [e["type"] for e in events["events"]][-1] == "task.done"


def test_the_state_branch_is_an_orphan_whose_commits_carry_the_trailers(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    r.ok("claim", "P/T2", "--worker", "w1")
    roots = r.git("rev-list", "--max-parents=0", "flow/state").splitlines()
    assert len(roots) == 1 and roots[0] not in r.git("rev-list", "main").splitlines()
    trailers = r.git("log", "-1", "--format=%(trailers:only,unfold)", "flow/state")
    assert "Flow-Task: T2" in trailers and "Flow-Event: claimed" in trailers


def _claimer(cwd: Path, worker: str, tries: int) -> subprocess.Popen[str]:
    code = (
        "import json, subprocess, sys\n"
        "won = []\n"
        f"for _ in range({tries}):\n"
        f"    p = subprocess.run([sys.executable, '-m', 'flowgit', 'claim', 'P', '--worker', {worker!r}, '--json'],"
        " capture_output=True, text=True)\n"
        "    if p.returncode == 0:\n"
        "        won.append(json.loads(p.stdout)['task'])\n"
        "    elif p.returncode not in (3, 4):\n"
        "        print('ERR', p.returncode, p.stderr, file=sys.stderr)\n"
        "print(json.dumps(won))\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.stress
def test_claimers_in_linked_worktrees_never_both_win(tmp_path: Path) -> None:
    plan = "id: P\ntitle: many\ntasks:\n" + "".join(f"  - id: T{i}\n    title: t{i}\n" for i in range(24))
    r = executing(tmp_path / "repo", plan)
    trees = [r.path]
    for i in range(3):
        tree = tmp_path / f"wt{i}"
        r.git("worktree", "add", "-q", "-b", f"side{i}", str(tree))
        trees.append(tree)
    procs = [_claimer(trees[i % 4], f"w{i}", 3) for i in range(8)]
    won: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert "ERR" not in err, err
        won += json.loads(out.strip().splitlines()[-1])
    assert len(won) == len(set(won)) == 24  # each of the 24 tasks claimed exactly once
    assert set(states(r, "P").values()) == {"claimed"}
    # every work tree sees the same state
    other = Repo(trees[2])
    assert set(states(other, "P").values()) == {"claimed"}


def test_a_branch_switch_changes_no_state(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    r.ok("claim", "P/T1", "--worker", "w1")
    r.git("checkout", "-q", "-b", "feature")
    r.write("code.txt", "work\n")
    r.git("add", "code.txt")
    r.git("commit", "-q", "-m", "feature work")
    r.ok("done", "P/T1", "--worker", "w1")
    r.git("checkout", "-q", "main")
    assert states(r, "P")["T1"] == "done"


def test_a_planner_in_a_linked_worktree_adds_tasks_others_see(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    tree = tmp_path / "task-tree"
    r.git("worktree", "add", "-q", "-b", "task-branch", str(tree))
    other = Repo(tree)
    other.ok("claim", "P/T3", "--worker", "agent")
    assert states(r, "P")["T3"] == "claimed"
    assert r.run("claim", "P/T3", "--worker", "someone").code != 0


def clone(bare: Path, path: Path) -> Repo:
    subprocess.run(["git", "clone", "-q", str(bare), str(path)], check=True, capture_output=True)
    git(path, "config", "user.email", f"{path.name}@example.com")
    git(path, "config", "user.name", path.name)
    return Repo(path)


def shared(tmp_path: Path, plan: str = PLAN) -> tuple[Path, Repo]:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed = executing(tmp_path / "seed", plan)
    seed.git("remote", "add", "origin", str(bare))
    seed.git("push", "-q", "origin", "main", "flow/state")
    return bare, seed


def test_clones_share_the_state_through_the_remote_and_push_only_the_state(tmp_path: Path) -> None:
    bare, seed = shared(tmp_path)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    main_before = git(bare, "rev-parse", "main")
    got_a = a.ok("claim", "P", "--sync", "--worker", "wa", "--json").json["task"]
    got_b = b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json["task"]
    assert got_a != got_b
    a.ok("done", got_a, "--worker", "wa")
    a.ok("sync")
    b.ok("sync")
    seen = states(b, "P")
    assert seen[got_a.split("/")[1]] == "done" and seen[got_b.split("/")[1]] == "claimed"
    assert git(bare, "rev-parse", "main") == main_before  # the code branch is never pushed by sync


def test_a_fresh_clone_reads_the_state_it_was_given(tmp_path: Path) -> None:
    bare, seed = shared(tmp_path)
    seed.ok("claim", "P/T1", "--worker", "w1")
    seed.git("push", "-q", "origin", "flow/state")
    c = clone(bare, tmp_path / "c")
    assert states(c, "P")["T1"] == "claimed"
    c.ok("claim", "P/T2", "--worker", "w2")  # its first write builds on the remote's state
    assert c.git("merge-base", "--is-ancestor", "origin/flow/state", "flow/state") == ""


def _diverge(tmp_path: Path) -> tuple[Repo, Repo]:
    bare, seed = shared(tmp_path)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    for r in (a, b):
        r.git("branch", "-q", "flow/state", "origin/flow/state")
    return a, b


def test_a_merge_keeps_an_event_one_side_deleted(tmp_path: Path) -> None:
    a, b = _diverge(tmp_path)
    a.ok("claim", "P/T1", "--worker", "wa")
    a.ok("release", "P/T1", "--worker", "wa")
    a.ok("sync")
    b.ok("sync")
    # b deletes the claim line by hand on its state branch (plumbing, as a hostile tool would)
    from flowgit.store.state import log_path

    path = log_path("P", "T1")
    lines = b.git("show", f"flow/state:{path}").splitlines()
    kept = "".join(line + "\n" for line in lines if "task.claimed" not in line)
    forge_state(b, tmp_path, path, kept, "drop a line")
    b.ok("claim", "P/T2", "--worker", "wb")
    b.ok("sync")
    assert a.ok("sync", "--json").json["merge"] == "merged"  # not fast-forwarded: it lost an event
    b.ok("sync")
    for r in (a, b):
        types = [e["type"] for e in state_log(r, "P", "T1")]
        assert "task.claimed" in types  # the deletion did not travel


def _random_history(r: Repo, rng: random.Random, worker: str, steps: int) -> None:
    for _ in range(steps):
        task = f"P/T{rng.randint(1, 8)}"
        action = rng.choice(["claim", "heartbeat", "release", "done", "note"])
        if action == "claim":
            r.run("claim", task, "--worker", worker)
        elif action == "heartbeat":
            r.run("heartbeat", task, "--worker", worker)
        elif action == "release":
            r.run("release", task, "--worker", worker)
        elif action == "done":
            r.run("done", task, "--worker", worker, "--note", "ok")
        else:
            r.run("note", task, "a note", "--worker", worker)


def _fold_of_union(r: Repo, tips: list[str]) -> dict[str, str]:
    """The states the uncompacted union of every event ever on these tips folds to."""
    from flowgit.core.events import parse_log
    from flowgit.core.fold import evaluate, fold_log
    from flowgit.formats.jsonlmerge import union_logs
    from flowgit.git_state import blob_versions
    from flowgit.store.repo import FlowRepo
    from flowgit.store.state import log_path

    repo = FlowRepo(r.path)
    plan = repo.load_plan("P").plan
    from flowgit.git import cat_blobs

    def full(stream: str) -> bytes:
        path = log_path("P", stream)
        blobs = cat_blobs(r.path, blob_versions(r.path, tips, path))
        return union_logs(list(blobs.values()), drop_snapshots=True)[0]

    records = {}
    for t in plan.tasks:
        data = full(t.id)
        if data:
            records[t.id] = fold_log(parse_log(data, "x", "P", t.id))
    plan_events = parse_log(full("_plan"), "x", "P", None).events
    order, _ = repo.graph_facts("P")
    st = evaluate(plan, records, plan_events, time.time(), {}, {}, order, None)
    return {k: v.state for k, v in st.tasks.items()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_merge_order_and_compaction_never_change_the_answer(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    a, b = _diverge(tmp_path)
    _random_history(a, rng, "wa", 12)
    _random_history(b, rng, "wb", 12)
    if seed != 1:
        a.ok("compact", "P", "--keep", "1")
    if seed == 3:
        b.ok("compact", "P", "--keep", "1")
    tips = [a.git("rev-parse", "flow/state")]
    b.git("fetch", "-q", str(a.path), "+refs/heads/flow/state:refs/remotes/a/flow/state")
    tips.append(b.git("rev-parse", "flow/state"))
    tips.append(b.git("rev-parse", "refs/remotes/a/flow/state"))
    a.ok("sync")   # a pushes first, b merges a's
    b.ok("sync")
    a.ok("sync")
    expected = _fold_of_union(b, tips[1:])
    for r in (a, b):
        assert states(r, "P") == expected, seed
    assert a.git("rev-parse", "flow/state") == b.git("rev-parse", "flow/state")


def test_killed_during_a_state_write_the_next_command_goes_on(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    env = {**os.environ, "FLOWGIT_TESTING": "1", "FLOWGIT_CRASH_AT": "committed"}
    p = r.proc("claim", "P/T1", "--worker", "w1", env=env)
    assert p.returncode != 0
    r.ok("claim", "P/T2", "--worker", "w1")
    st = states(r, "P")
    assert st["T2"] == "claimed" and st["T1"] in ("claimed", "ready")
    r.ok("validate")


def test_diff_reports_the_tasks_a_change_worked_on(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    r.ok("claim", "P/T4", "--worker", "w0")  # on main, before the branch: not this change's
    r.git("checkout", "-q", "-b", "feature")
    r.ok("claim", "P/T1", "--worker", "w1")
    r.write("one.txt", "1\n")
    r.git("add", "one.txt")
    r.git("commit", "-q", "-m", "work on T1")
    r.ok("done", "P/T1", "--worker", "w1")
    result = r.ok("diff", "main", "feature", "--json").json
    assert result["tasks_completed"] == [{"plan": "P", "task": "T1", "events": ["task.done"]}]
    text = r.ok("diff", "main", "feature").out
    assert "P/T1 (done)" in text
    md = r.ok("diff", "main", "feature", "--format", "markdown").out
    assert "`P/T1`: task.done" in md


def v1_repo(path: Path) -> Repo:
    r = init_repo(path, "1")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.ok("claim", "P/T1", "--worker", "w1")
    r.ok("done", "P/T1", "--worker", "w1")
    return r


def test_migrate_moves_the_logs_with_a_dry_run_first(tmp_path: Path) -> None:
    r = v1_repo(tmp_path / "repo")
    before = states(r, "P")
    head = r.git("rev-parse", "HEAD")
    dry = r.ok("migrate", "--dry-run", "--json").json
    assert dry["logs"] == 2 and dry["migrated"] is False
    assert r.git("rev-parse", "HEAD") == head and "flow/state" not in r.git("branch")
    done = r.ok("migrate", "--json").json
    assert done["migrated"] is True
    assert states(r, "P") == before
    # the logs' history stays reachable from the state branch; the branch keeps only tombstones
    assert r.git("merge-base", "--is-ancestor", head, "flow/state") == ""
    assert sorted(p.name for p in (r.path / ".flow/plans/P/events").iterdir()) == ["_plan.jsonl"]
    tomb = json.loads((r.path / ".flow/plans/P/events/_plan.jsonl").read_text())
    assert tomb["type"] == "plan.migrated"
    assert "version: 2" in (r.path / ".flow/config.yaml").read_text()
    r.ok("validate")
    assert r.ok("migrate", "--json").json["migrated"] is False  # twice is a no-op
    subjects = code_subjects(r)
    r.ok("claim", "P/T2", "--worker", "w2")
    assert code_subjects(r) == subjects


def test_an_old_branch_merged_after_the_migration_is_imported(tmp_path: Path) -> None:
    r = v1_repo(tmp_path / "repo")
    r.git("checkout", "-q", "-b", "old")
    r.ok("claim", "P/T2", "--worker", "w-old")  # a new in-branch log, on a branch not migrated
    r.git("checkout", "-q", "main")
    r.ok("migrate")
    assert "refs/heads/old" in r.ok("doctor", "--json").out
    r.git("merge", "-q", "--no-edit", "old")
    assert (r.path / ".flow/plans/P/events/T2.jsonl").exists()
    r.ok("claim", "P/T3", "--worker", "w3")  # any write imports what the merge brought
    assert not (r.path / ".flow/plans/P/events/T2.jsonl").exists()
    st = states(r, "P")
    assert st["T2"] == "claimed" and st["T3"] == "claimed" and st["T1"] == "done"
    assert [e["type"] for e in state_log(r, "P", "T2")] == ["task.claimed"]


def test_the_previous_release_stops_on_a_migrated_repository(tmp_path: Path) -> None:
    from helpers import ROOT

    previous = "e01617d"  # main before format 2
    if subprocess.run(["git", "cat-file", "-e", previous + "^{commit}"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("the previous release is not in this checkout's history")
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(["git", "archive", previous, "flowgit"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    r = v1_repo(tmp_path / "repo")
    r.ok("migrate")
    env = {**os.environ, "PYTHONPATH": str(old)}
    for args in (["status", "P"], ["claim", "P", "--worker", "old"], ["next", "P"]):
        p = subprocess.run([sys.executable, "-m", "flowgit", *args], cwd=r.path, env=env,
                           capture_output=True, text=True)
        assert p.returncode != 0 and "Traceback" not in p.stderr, (args, p.stdout, p.stderr)
        assert "version" in p.stderr + p.stdout


def test_sync_refuses_a_remote_of_the_other_format(tmp_path: Path) -> None:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed = v1_repo(tmp_path / "seed")
    seed.git("remote", "add", "origin", str(bare))
    seed.git("push", "-q", "origin", "main")
    old = clone(bare, tmp_path / "old")  # format 1, like its remote
    seed.ok("migrate")
    seed.git("push", "-q", "origin", "main", "flow/state")
    res = old.run("sync")
    assert res.code == 1 and "format 2" in res.err and "Traceback" not in res.err
    new = clone(bare, tmp_path / "new")
    v1_remote = tmp_path / "v1.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(v1_remote)], check=True)
    v1 = v1_repo(tmp_path / "v1")
    v1.git("remote", "add", "origin", str(v1_remote))
    v1.git("push", "-q", "origin", "main")
    new.git("remote", "add", "v1", str(v1_remote))
    new.git("fetch", "-q", "v1")
    res = new.run("sync", "--remote", "v1")
    assert res.code == 1 and "format 1" in res.err, res.err


def test_history_from_git_survives_compaction_on_the_state_branch(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    for _ in range(3):
        r.ok("claim", "P/T1", "--worker", "w1")
        r.ok("release", "P/T1", "--worker", "w1")
    r.ok("compact", "P", "--keep", "1")
    assert len(state_log(r, "P", "T1")) == 2  # a snapshot and the last event
    full = r.ok("events", "P", "T1", "--from-git", "--json").json["events"]
    assert [e["type"] for e in full] == ["task.claimed", "task.released"] * 3


def test_a_done_whose_code_this_clone_lacks_does_not_release_its_dependents(tmp_path: Path) -> None:
    plan = ("id: P\ntitle: chain\ngoal: g\ntasks:\n  - {id: T1, title: one}\n"
            "  - {id: T2, title: two, depends_on: [T1]}\n")
    bare, seed = shared(tmp_path, plan)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    a.ok("claim", "P/T1", "--worker", "wa")
    a.write("code.txt", "done\n")
    a.git("add", "code.txt")
    a.git("commit", "-q", "-m", "T1's work")
    a.ok("done", "P/T1", "--worker", "wa")
    a.ok("sync")  # the state travels; the code is not pushed yet
    b.ok("sync")
    assert states(b, "P") == {"T1": "done", "T2": "pending"}
    a.git("push", "-q", "origin", "main")
    b.git("fetch", "-q", "origin")
    assert states(b, "P") == {"T1": "done", "T2": "ready"}
    assert states(a, "P") == {"T1": "done", "T2": "ready"}


def test_run_merges_the_work_on_the_branch_and_records_done_on_the_state(tmp_path: Path) -> None:
    plan = ("id: p\ntitle: run\ngoal: g\ntasks:\n  - {id: A, title: a, files: [a.txt]}\n"
            "  - {id: B, title: b, depends_on: [A], files: [b.txt]}\n")
    r = executing(tmp_path / "repo", plan.replace("id: p", "id: P", 1))
    res = r.proc("run", "P", "-n", "1", "--executor", "demo", "--json", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert states(r, "P") == {"A": "done", "B": "done"}
    subjects = code_subjects(r)
    assert not any("claimed" in s or s.endswith(": done") and not s.startswith("Merge") for s in subjects)
    merges = [s for s in subjects if s.startswith("Merge branch")]
    assert len(merges) == 2
    done = [e for e in state_log(r, "P", "A") if e["type"] == "task.done"][0]
    assert done["data"]["code"] in r.git("rev-list", "--merges", "main").splitlines()


def test_validate_checks_the_logs_on_the_state_branch(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    r.ok("claim", "P/T1", "--worker", "w1")
    assert r.ok("validate", "--json").json["ok"] is True
    from flowgit.store.state import log_path

    path = log_path("P", "T1")
    good = r.git("show", f"flow/state:{path}")
    bad = json.loads(good.splitlines()[0])
    bad["id"] = "01J00000000000000000000000"
    bad["data"] = {"lease_until": "soon"}
    forge_state(r, tmp_path, path, good + "\n" + json.dumps(bad) + "\n", "forged")
    res = r.run("validate")
    assert res.code == 1 and f"flow/state:{path}:2" in res.err and "Traceback" not in res.err
    row = r.ok("status", "P", "--json").json
    assert next(t for t in row["tasks"] if t["id"] == "T1")["state"] == "blocked"  # held, never freed
    assert r.run("claim", "P/T1", "--worker", "w2").code != 0


def test_a_repository_that_needs_a_newer_flowgit_stops_every_command(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    config = r.path / ".flow" / "config.yaml"
    config.write_text(config.read_text().replace("version: 2", 'version: 2\nrequires: "99.0"', 1))
    r.git("commit", "-qam", "needs a newer flowgit", "--no-verify")  # as a teammate's branch brings it
    tip = r.git("rev-parse", "flow/state")
    for args in (["status", "P"], ["claim", "P/T1", "--worker", "w1"], ["validate"]):
        res = r.run(*args)
        assert res.code == 1 and "requires" in res.err and "Traceback" not in res.err, (args, res.err)
        assert len(res.err.strip().splitlines()) == 1, res.err
    assert r.git("rev-parse", "flow/state") == tip  # nothing written


def test_migrate_over_uncommitted_flow_edits_writes_nothing(tmp_path: Path) -> None:
    r = v1_repo(tmp_path / "repo")
    plan = r.path / ".flow" / "plans" / "P" / "plan.yaml"
    plan.write_text(plan.read_text() + "# an edit not committed\n")
    head = r.git("rev-parse", "HEAD")
    res = r.run("migrate")
    assert res.code == 1 and "uncommitted changes" in res.err and "Traceback" not in res.err
    assert r.git("rev-parse", "HEAD") == head and "flow/state" not in r.git("branch")
