"""Many machines through one remote: `sync`, `claim --sync` and config `sync: push`, on a bare
repository and real clones driven by real processes (issue 5, "Many machines through one
remote")."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from helpers import Repo, git, init_repo, states, WEBHOOKS

PLAN_DIR = ".flow/plans/{plan}/events"


def set_sync_push(repo: Repo) -> None:
    cfg = repo.path / ".flow" / "config.yaml"
    text = cfg.read_text()
    assert "sync: none" in text
    cfg.write_text(text.replace("sync: none", "sync: push"))
    repo.git("add", ".flow/config.yaml")
    repo.git("commit", "-q", "-m", "config: sync push")


def make_remote(tmp_path: Path, n: int, plan: tuple[str, str] | None = None,
                sync_push: bool = False) -> tuple[Path, list[Repo]]:
    """A bare `origin` seeded from a repository with .flow/ (and a plan), and n clones, each
    set up by `flowgit init` (merge driver and hooks, no commit)."""
    seed = init_repo(tmp_path / "seed", "1")
    if plan:
        seed.plan(*plan)
    if sync_push:
        set_sync_push(seed)
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed.git("push", "-q", str(bare), "main")
    clones = []
    for i in range(n):
        path = tmp_path / f"clone{i}"
        git(tmp_path, "clone", "-q", str(bare), str(path))
        git(path, "config", "user.email", f"c{i}@example.com")
        git(path, "config", "user.name", f"Clone {i}")
        clone = Repo(path)
        count = clone.commits()
        assert clone.ok("init", "--json").json["commit"] is None
        assert clone.commits() == count
        clones.append(clone)
    return bare, clones


def remote_head(bare: Path) -> str:
    return git(bare, "rev-parse", "main")


def remote_log(bare: Path, plan: str, stream: str) -> list[dict[str, Any]]:
    proc = subprocess.run(["git", "show", f"main:{PLAN_DIR.format(plan=plan)}/{stream}.jsonl"],
                          cwd=bare, capture_output=True, check=False)
    if proc.returncode != 0:
        return []
    return [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]


# ----- sync and claim --sync between two clones -------------------------------------------------


def test_sync_pushes_and_merges_both_ways(tmp_path: Path) -> None:
    bare, (a, b) = make_remote(tmp_path, 2, ("webhooks", WEBHOOKS))
    start = remote_head(bare)

    # A works locally (no sync configured), then syncs: the remote has it.
    a.ok("claim", "webhooks/T-WH-01", "--worker", "wa")
    assert remote_head(bare) == start
    res = a.ok("sync", "--json").json
    assert res["remote"] == "origin" and res["branch"] == "main"
    assert remote_head(bare) == a.git("rev-parse", "HEAD")

    # B diverged meanwhile (its own commit on the same plan's logs): sync merges, pushes.
    b.ok("halt", "webhooks", "--reason", "lunch")
    b.ok("resume", "webhooks")
    res = b.ok("sync", "--json").json
    assert res["merge"] == "merged"
    assert remote_head(bare) == b.git("rev-parse", "HEAD")
    assert states(b, "webhooks")["T-WH-01"] == "claimed"

    # A finishes, syncs; B syncs; both fold to the same state, which is the remote's.
    a.ok("done", "webhooks/T-WH-01", "--worker", "wa")
    a.ok("sync")
    b.ok("sync")
    assert a.git("rev-parse", "HEAD") == b.git("rev-parse", "HEAD") == remote_head(bare)
    assert a.ok("status", "webhooks", "--json").json == b.ok("status", "webhooks", "--json").json
    assert states(a, "webhooks")["T-WH-02"] == "ready"
    assert a.git("status", "--porcelain") == "" and b.git("status", "--porcelain") == ""

    # Nothing new: up to date, and the remote does not move.
    head = remote_head(bare)
    assert a.ok("sync", "--json").json["merge"] == "up to date"
    assert remote_head(bare) == head


def test_sync_errors(tmp_path: Path, repo: Repo) -> None:
    res = repo.run("sync")  # no remote at all
    assert res.code == 1 and len(res.err.strip().splitlines()) == 1 and "origin" in res.err
    _, (a,) = make_remote(tmp_path, 1, ("webhooks", WEBHOOKS))
    res = a.run("sync", "--remote", "nosuch", "--json")
    assert res.code == 1 and "nosuch" in res.json["error"]["message"]
    a.git("remote", "set-url", "origin", str(tmp_path / "no-such.git"))
    for args in (["sync"], ["claim", "webhooks", "--worker", "w", "--sync"]):
        res = a.run(*args)  # a wrong URL fails for good: exit 1, not 4 (retrying cannot win)
        assert res.code == 1 and "does not appear to be a git repository" in res.err, res
    for url in ("htps://example.invalid/x.git", "ext::git-upload-pack x"):
        a.git("remote", "set-url", "origin", url)
        res = a.run("sync")
        assert res.code == 1 and "fetch_failed" not in res.err and "git fetch origin failed" in res.err, (url, res)
    a.git("checkout", "-q", "--detach")
    res = a.run("sync")
    assert res.code == 1 and "detached" in res.err.lower()


def test_claim_sync_sequential_loser_sees_the_winner(tmp_path: Path) -> None:
    """B has not fetched A's claim; `claim --sync` fetches and merges before deciding."""
    bare, (a, b) = make_remote(tmp_path, 2, ("webhooks", WEBHOOKS))
    plan = "id: two\ntitle: Two\ntasks:\n  - {id: X, title: x}\n  - {id: Y, title: y}\n"
    a.plan("two", plan)
    a.ok("sync")
    b.ok("sync")

    won = a.ok("claim", "two/X", "--sync", "--worker", "wa", "--json").json
    assert won["pushed"] is True and remote_head(bare) == won["commit"]
    lost = b.run("claim", "two/X", "--sync", "--worker", "wb", "--json")
    assert lost.code == 1, lost.out
    assert "wa" in lost.json["error"]["message"]
    other = b.ok("claim", "two", "--sync", "--worker", "wb", "--json").json
    assert other["task"] == "two/Y"
    assert remote_head(bare) == other["commit"]
    none = a.run("claim", "two", "--sync", "--worker", "wa")
    assert none.code == 3
    claimed = [e for t in ("X", "Y") for e in remote_log(bare, "two", t) if e["type"] == "task.claimed"]
    assert sorted((e["task"], e["actor"]) for e in claimed) == [("X", "wa"), ("Y", "wb")]


@pytest.mark.parametrize("target", ["two/X", "two"])
def test_claim_sync_race_exactly_one_wins(tmp_path: Path, target: str) -> None:
    """Both clones at once, as separate processes, several rounds."""
    bare, (a, b) = make_remote(tmp_path, 2)
    for round_ in range(4):
        plan_id = f"two{round_}"
        a.plan(plan_id, f"id: {plan_id}\ntitle: Two\ntasks:\n  - {{id: X, title: x}}\n  - {{id: Y, title: y}}\n")
        a.ok("sync")
        b.ok("sync")
        tgt = target.replace("two", plan_id)
        procs = [subprocess.Popen([sys.executable, "-m", "flowgit", "--repo", str(r.path), "claim", tgt,
                                   "--sync", "--worker", w, "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for r, w in ((a, "wa"), (b, "wb"))]
        results = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
        for p in procs:
            p.stdout.close()  # type: ignore[union-attr]
            p.stderr.close()  # type: ignore[union-attr]
        codes = [c for c, _, _ in results]
        claims = Counter()
        for _, task in ((w, e["task"]) for w in ("X", "Y")
                        for e in remote_log(bare, plan_id, w) if e["type"] == "task.claimed"):
            claims[task] += 1
        if "/" in target:
            # The same task named: exactly one wins, the loser is told who has it (or, if it
            # kept losing the push race, exit 4). Never two claims.
            assert sorted(codes) in ([0, 1], [0, 4]), results
            assert claims == Counter({"X": 1}), results
        else:
            # Any ready task: both can win, but never the same task.
            assert all(c in (0, 4) for c in codes), results
            won = [json.loads(out)["task"] for c, out, _ in results if c == 0]
            assert len(won) == len(set(won)) >= 1, results
            assert all(n == 1 for n in claims.values()) and sum(claims.values()) == len(won)
        for r in (a, b):
            assert r.git("status", "--porcelain") == "", r.path
            assert r.git("rev-parse", "HEAD") in (remote_head(bare),) or subprocess.run(
                ["git", "merge-base", "--is-ancestor", r.git("rev-parse", "HEAD"), remote_head(bare)],
                cwd=bare, check=False).returncode == 0, "a clone kept an unpushed claim"


def test_config_sync_push_makes_every_transition_pushed(tmp_path: Path) -> None:
    bare, (a, b) = make_remote(tmp_path, 2, ("webhooks", WEBHOOKS), sync_push=True)
    res = a.ok("claim", "webhooks", "--worker", "wa", "--json").json
    assert res["pushed"] is True and remote_head(bare) == res["commit"]
    d = a.ok("done", res["task"], "--worker", "wa", "--json").json
    assert remote_head(bare) == d["commit"]
    # B, without any explicit sync, decides on the remote's state.
    got = b.ok("claim", "webhooks", "--worker", "wb", "--json").json
    assert got["task"] == "webhooks/T-WH-02"
    assert remote_head(bare) == got["commit"]


def test_bounded_retries_then_exit_4_with_nothing_left_behind(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every push loses the race: each attempt's claim commit is taken back, and after the
    retries the command exits 4 ("retrying may win") with the clone as it was."""
    from flowgit.ops import sync as syncing

    _, (a,) = make_remote(tmp_path, 1, ("webhooks", WEBHOOKS))
    head = a.git("rev-parse", "HEAD")
    pushes: list[int] = []

    def lose(root: Path, remote: str, branch: str) -> bool:
        pushes.append(1)
        return False

    monkeypatch.setattr(syncing, "push", lose)
    monkeypatch.setattr(syncing.time, "sleep", lambda s: None)
    res = a.run("claim", "webhooks", "--sync", "--worker", "wa", "--json")
    assert res.code == 4, res.out + res.err
    assert res.json["error"]["code"]
    assert len(pushes) == syncing.RETRIES
    assert a.git("rev-parse", "HEAD") == head
    assert a.git("status", "--porcelain") == ""
    assert states(a, "webhooks")["T-WH-01"] == "ready"
    res = a.run("sync")
    assert res.code == 4 and len(res.err.strip().splitlines()) == 1


def test_push_that_can_never_succeed_takes_the_claim_back(tmp_path: Path) -> None:
    """Fetch works, push cannot (a wrong push URL): exit 1 naming the problem at once, and
    the claim commit is not left behind to be pushed by a later `sync`."""
    _, (a,) = make_remote(tmp_path, 1, ("webhooks", WEBHOOKS))
    a.git("remote", "set-url", "--push", "origin", str(tmp_path / "nowhere.git"))
    head = a.git("rev-parse", "HEAD")
    started = time.monotonic()
    res = a.run("claim", "webhooks", "--sync", "--worker", "wa")
    assert res.code == 1
    assert time.monotonic() - started < 5, "a push that cannot succeed is not retried"
    line = res.err.strip()
    assert len(line.splitlines()) == 1 and "nowhere.git" in line
    assert a.git("rev-parse", "HEAD") == head
    assert states(a, "webhooks")["T-WH-01"] == "ready"
    res = a.run("sync", "--json")
    assert res.code == 1 and "nowhere.git" in res.json["error"]["message"]


def test_push_declined_by_a_remote_hook(tmp_path: Path) -> None:
    bare, (a,) = make_remote(tmp_path, 1, ("webhooks", WEBHOOKS), sync_push=True)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected: no pushes today' >&2\nexit 1\n")
    hook.chmod(0o755)
    head = a.git("rev-parse", "HEAD")
    remote = remote_head(bare)
    started = time.monotonic()
    res = a.run("claim", "webhooks", "--worker", "wa")
    assert res.code == 1, res.err
    assert time.monotonic() - started < 5
    assert "protected: no pushes today" in res.err  # the hook's own reason is passed on
    assert a.git("rev-parse", "HEAD") == head and remote_head(bare) == remote
    hook.unlink()
    assert a.ok("claim", "webhooks", "--worker", "wa", "--json").json["pushed"] is True


# ----- the big one: 4 clones, 4 processes, 48 tasks ----------------------------------------------

# 48 keeps the mix of independent tasks and two-dependency chains the hundred had, at half the
# run time (format 1, whose sync merges the code branch: format 2 has tests/test_state_clones.py)
N_TASKS = 48

WORKER = r"""
import json, os, random, subprocess, sys, time
repo, plan, worker, record, deadline = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
base = [sys.executable, "-m", "flowgit", "--repo", repo]
rng = random.Random(worker)
stop = os.path.join(os.path.dirname(record), "stop")

def note(obj):
    obj["worker"] = worker
    obj["t"] = time.time()
    with open(record, "a") as fh:
        fh.write(json.dumps(obj) + "\n")

def run(*args):
    t0 = time.time()
    p = subprocess.run(base + list(args), capture_output=True, text=True)
    with open(record + ".ops", "a") as fh:
        fh.write(json.dumps([args[0], p.returncode, round(time.time() - t0, 3)]) + "\n")
    return p

while time.time() < deadline and not os.path.exists(stop):
    p = run("claim", plan, "--sync", "--worker", worker, "--json")
    if p.returncode == 0:
        out = json.loads(p.stdout)
        task = out["task"]
        note({"op": "claim", "code": 0, "task": task, "commit": out["commit"], "attempts": out.get("attempts")})
        time.sleep(rng.random() * 0.3)  # the work itself; also spreads the pushes out
        while time.time() < deadline:
            d = run("done", task, "--worker", worker, "--json")
            if d.returncode == 0:
                out = json.loads(d.stdout)
                note({"op": "done", "code": 0, "task": task, "commit": out["commit"], "attempts": out.get("attempts")})
                break
            note({"op": "done", "code": d.returncode, "task": task, "err": d.stderr[-300:]})
            if d.returncode != 4:
                open(stop, "w").close()  # a real error: stop everyone, the test reports it
                break
            time.sleep(rng.random() * 0.2)
    elif p.returncode == 3:
        s = run("sync")
        if s.returncode not in (0, 4):
            note({"op": "sync", "code": s.returncode, "err": s.stderr[-300:]})
        st = run("status", plan, "--json")
        if st.returncode == 0:
            status = json.loads(st.stdout)
            if status["counts"]["done"] == len(status["tasks"]):
                note({"op": "finished", "code": 0})
                break
        time.sleep(0.2 + rng.random() * 0.3)
    else:
        note({"op": "claim", "code": p.returncode, "err": (p.stderr or p.stdout)[-300:]})
        if p.returncode != 4:
            open(stop, "w").close()
            break
        time.sleep(rng.random() * 0.3)
else:
    if not os.path.exists(stop):
        note({"op": "timeout", "code": -1})
"""


def many_tasks(plan_id: str) -> str:
    lines = [f"id: {plan_id}", f"title: {N_TASKS} tasks over four machines", "tasks:"]
    for i in range(N_TASKS):
        deps = []
        if i >= 20 and i % 4 == 0:
            deps = [f"t{i - 20:03d}", f"t{i - 7:03d}"]
        dep = f", depends_on: [{', '.join(deps)}]" if deps else ""
        lines.append(f"  - {{id: t{i:03d}, title: Task {i}{dep}}}")
    return "\n".join(lines) + "\n"


def added_event_ids(repo: Repo, commit: str) -> set[str]:
    """Ids of the event lines a transition commit added (against its first parent)."""
    diff = repo.git("diff", "--no-color", "-U0", f"{commit}~1", commit, "--", ".flow/plans")
    return {json.loads(line[1:])["id"] for line in diff.splitlines()
            if line.startswith("+") and not line.startswith("+++") and line[1:].strip()}


@pytest.mark.stress
def test_four_clones_four_workers_every_task_once(tmp_path: Path) -> None:
    plan = "many"
    bare, clones = make_remote(tmp_path, 4, (plan, many_tasks(plan)), sync_push=True)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    records = [tmp_path / f"w{i}.jsonl" for i in range(4)]
    started = time.monotonic()
    deadline = time.time() + 240
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, str(script), str(c.path), plan, f"w{i}", str(records[i]),
                               str(deadline)], env=env)
             for i, c in enumerate(clones)]
    for p in procs:
        p.wait(timeout=300)
    work_time = time.monotonic() - started

    notes = [json.loads(line) for r in records if r.exists() for line in r.read_text().splitlines()]
    errors = [n for n in notes if n["code"] not in (0, 4)]
    assert not errors, errors[:5]
    assert not [n for n in notes if n["op"] == "timeout"], "a worker ran out of time"

    # Every clone syncs (twice: the first round spreads the last merges), then all agree.
    for _ in range(2):
        for c in clones:
            c.ok("sync")
    trees = {c.git("rev-parse", "HEAD:.flow") for c in clones}
    assert len(trees) == 1 and trees == {git(bare, "rev-parse", "main:.flow")}
    statuses = [c.ok("status", plan, "--json").json for c in clones]
    assert all(s == statuses[0] for s in statuses[1:])
    st = statuses[0]
    assert st["counts"]["done"] == N_TASKS and st["progress"] == 100
    assert {t["state"] for t in st["tasks"]} == {"done"}

    # Every task done exactly once, claimed exactly once, in the remote's history.
    done_notes = [n for n in notes if n["op"] == "done" and n["code"] == 0]
    claim_notes = [n for n in notes if n["op"] == "claim" and n["code"] == 0]
    assert sorted(n["task"] for n in done_notes) == [f"{plan}/t{i:03d}" for i in range(N_TASKS)]
    assert len(claim_notes) == N_TASKS
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in range(N_TASKS):
        tid = f"t{i:03d}"
        log = remote_log(bare, plan, tid)
        by_task[tid] = log
        types = Counter(e["type"] for e in log)
        assert types["task.done"] == 1, (tid, types)
        assert types["task.claimed"] == 1, (tid, types)
        ids = [e["id"] for e in log]
        assert len(ids) == len(set(ids))
    for n in done_notes:
        tid = n["task"].split("/")[1]
        done = next(e for e in by_task[tid] if e["type"] == "task.done")
        assert done["actor"] == n["worker"], (tid, done, n)

    # No event lost: every event written by a command that exited 0 is on the remote.
    remote_ids = {e["id"] for tid in by_task for e in by_task[tid]}
    remote_ids |= {e["id"] for e in remote_log(bare, plan, "_plan")}
    clone_of = {f"w{i}": c for i, c in enumerate(clones)}
    for n in claim_notes + done_notes:
        ids = added_event_ids(clone_of[n["worker"]], n["commit"])
        assert ids, n
        missing = ids - remote_ids
        assert not missing, (n, missing)
        assert subprocess.run(["git", "merge-base", "--is-ancestor", n["commit"], "main"],
                              cwd=bare, check=False).returncode == 0, n

    # Dependencies held: each dependent's claim commit has its dependencies' done commits in
    # its history (it was decided on a state where they were done).
    claim_commit = {n["task"].split("/")[1]: n["commit"] for n in claim_notes}
    done_commit = {n["task"].split("/")[1]: n["commit"] for n in done_notes}
    for i in range(20, N_TASKS, 4):
        for dep in (f"t{i - 20:03d}", f"t{i - 7:03d}"):
            assert subprocess.run(["git", "merge-base", "--is-ancestor", done_commit[dep],
                                   claim_commit[f"t{i:03d}"]], cwd=bare, check=False).returncode == 0, (i, dep)

    # Work was shared (not one clone doing everything while the others lost every race).
    per_worker = Counter(n["worker"] for n in done_notes)
    assert len(per_worker) >= 2, per_worker
    ops = [json.loads(line) for r in records for line in Path(f"{r}.ops").read_text().splitlines()]
    retried = sum((n.get("attempts") or 1) - 1 for n in claim_notes + done_notes)
    print(f"4 clones x {N_TASKS} tasks: {work_time:.1f} s, {len(ops)} commands "
          f"({sum(dt for _, _, dt in ops):.0f} s in commands); done per worker {dict(per_worker)}; "
          f"pushes retried {retried}; exit 4 {sum(1 for n in notes if n['code'] == 4)}")
