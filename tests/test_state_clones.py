"""Format 2, many clones of one remote (issue 14): a rejected `claim --sync` push is settled
by rebasing the claim's own commit onto the fetched tip when the remote moved only other
tasks' logs, and by deciding again when it took the same task; K clones claiming through one
bare remote claim and finish every task exactly once, with no exit 4."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from helpers import Repo, git
from test_state_branch import clone, shared
from helpers import states

PLAN = "id: P\ntitle: clones\ngoal: many clones\ntasks:\n" + "".join(
    f"  - id: T{i}\n    title: task {i}\n" for i in range(1, 9))


def remote_events(bare: Path, task: str) -> list[dict[str, Any]]:
    from flowgit.store.state import log_path

    out = subprocess.run(["git", "show", f"flow/state:{log_path('P', task)}"], cwd=bare,
                         capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def claims(bare: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for i in range(1, 9):
        for ev in remote_events(bare, f"T{i}"):
            if ev["type"] == "task.claimed":
                out.setdefault(f"T{i}", []).append(ev["actor"])
    return out


def race_first_push(monkeypatch: pytest.MonkeyPatch, before: Callable[[], None]) -> list[int]:
    """The first push of this process (of the state branch, or of a claim ref) runs `before()`
    (another clone pushing) first, so it is rejected as a real race would be."""
    from flowgit import git_state

    calls: list[int] = []

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        def push(*args: Any, **kw: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                before()
            return real(*args, **kw)
        return push

    monkeypatch.setattr(git_state, "push_ref", wrap(git_state.push_ref))
    monkeypatch.setattr(git_state, "push_refs", wrap(git_state.push_refs))
    return calls


def other_claims(other: Repo, target: str, worker: str) -> Callable[[], None]:
    def run() -> None:
        proc = other.proc("claim", target, "--sync", "--worker", worker, "--json")
        assert proc.returncode == 0, proc.stderr

    return run


def other_starts(other: Repo, task: str, worker: str) -> Callable[[], None]:
    """Another clone claims `task` and starts it: with `sync: push`, its start moves the
    remote's state branch."""
    def run() -> None:
        for args in (("claim", task, "--sync"), ("start", task)):
            proc = other.proc(*args, "--worker", worker)
            assert proc.returncode == 0, proc.stderr

    return run


def shared_pushing(tmp_path: Path) -> tuple[Path, Repo, Repo]:
    """A remote whose config says `sync: push` (every transition is pushed) from the start,
    and two clones."""
    from test_state_branch import state_repo

    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed = state_repo(tmp_path / "seed")
    config = seed.path / ".flow" / "config.yaml"
    config.write_text(config.read_text().replace("\nsync: none", "\nsync: push"))
    seed.git("commit", "-qam", "sync: push")
    seed.plan("P", PLAN)
    seed.ok("submit", "P")
    seed.git("remote", "add", "origin", str(bare))
    seed.git("push", "-q", "origin", "main", "flow/state")
    return bare, clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")


def test_claims_of_different_tasks_never_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another clone claims T5 inside B's fetch..push window: B's claim of T2 is won at the
    first push, on T2's own claim ref (ADR 0013)."""
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    calls = race_first_push(monkeypatch, other_claims(a, "P/T5", "wa"))
    got = b.ok("claim", "P/T2", "--sync", "--worker", "wb", "--json").json
    assert got["task"] == "P/T2" and got["attempts"] == 1 and got["rebased"] == 0, got
    assert len(calls) == 1
    assert git(bare, "log", "-1", "--format=%s", "flow/state-claims/P/T2") == "flow(P/T2): claimed by wb"
    b.ok("sync")
    a.ok("sync")
    assert claims(bare) == {"T5": ["wa"], "T2": ["wb"]}
    assert states(a, "P")["T2"] == "claimed" and states(b, "P")["T5"] == "claimed"


def test_a_rejected_transition_is_rebased_onto_the_tip_when_the_remote_moved_other_logs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare, a, b = shared_pushing(tmp_path)
    b.ok("claim", "P/T2", "--worker", "wb")
    calls = race_first_push(monkeypatch, other_starts(a, "P/T5", "wa"))
    got = b.ok("start", "P/T2", "--worker", "wb", "--json").json
    assert got["attempts"] == 2 and got["rebased"] == 1, got
    assert len(calls) == 2
    # the start sits on the merge of B's own claim (on its claim ref, not yet on the state
    # branch) and the other clone's start (which folded B's claim in: B holds all of it)
    tip = git(bare, "rev-parse", "flow/state")
    assert got["commit"] == tip and b.git("rev-parse", "flow/state") == tip
    assert git(bare, "log", "-1", "--format=%s", "flow/state^^2") == "flow(P/T5): started"
    assert git(bare, "log", "-1", "--format=%s", "flow/state^^1") == "flow(P/T2): claimed"
    assert git(bare, "rev-list", "--parents", "-1", "flow/state").count(" ") == 1
    assert git(bare, "log", "-1", "--format=%s", "flow/state") == "flow(P/T2): started"
    # the private index follows: the next write needs no rebuild and loses nothing
    b.ok("heartbeat", "P/T2", "--worker", "wb")
    assert [e["type"] for e in remote_events(bare, "T5")] == ["task.claimed", "task.started"]
    assert [e["type"] for e in remote_events(bare, "T2")] == ["task.claimed", "task.started",
                                                              "task.heartbeat"]


def test_unpushed_local_history_is_merged_under_the_rebased_transition(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A synced claim leaves its own state commit local (its claim ref carries it); the
    start that follows, raced by another clone's, goes on the merge of that local history
    and the remote's tip."""
    bare, a, b = shared_pushing(tmp_path)
    b.ok("claim", "P/T3", "--worker", "wb")
    assert "T3" not in claims(bare)  # on its claim ref only, not yet on the state branch
    calls = race_first_push(monkeypatch, other_starts(a, "P/T6", "wa"))
    got = b.ok("start", "P/T3", "--worker", "wb", "--json").json
    assert got["rebased"] == 1 and len(calls) == 2, got
    assert [e["type"] for e in remote_events(bare, "T3")] == ["task.claimed", "task.started"]
    assert claims(bare) == {"T6": ["wa"], "T3": ["wb"]}
    parents = git(bare, "rev-list", "--parents", "-1", "flow/state^").split()
    assert len(parents) == 3  # under the start: the merge of B's unpushed claim and A's start


def test_a_claim_whose_task_another_clone_took_decides_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two clones race for one task: exactly one wins its claim ref; the other takes another
    task (a plan claim) or is told who holds it (a task claim), nothing of its claim left."""
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    calls = race_first_push(monkeypatch, other_claims(a, "P/T1", "wa"))
    got = b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json  # B too went for T1
    assert got["task"] != "P/T1" and got["rebased"] == 0 and got["attempts"] == 2, got
    assert len(calls) == 2
    assert git(bare, "log", "-1", "--format=%s", "flow/state-claims/P/T1") == "flow(P/T1): claimed by wa"
    # the same task named: the loser is told who holds it, nothing of its claim left behind
    free = next(f"T{i}" for i in range(2, 9) if f"P/T{i}" != got["task"])
    monkeypatch.undo()
    race_first_push(monkeypatch, other_claims(a, f"P/{free}", "wa"))
    res = b.run("claim", f"P/{free}", "--sync", "--worker", "wb")
    assert res.code == 1 and "wa" in res.err
    a.ok("sync")
    b.ok("sync")
    taken = claims(bare)
    assert taken["T1"] == ["wa"] and taken[free] == ["wa"] and taken[got["task"].split("/")[1]] == ["wb"]
    assert sum(len(v) for v in taken.values()) == 3
    assert b.git("rev-parse", "flow/state") == git(bare, "rev-parse", "flow/state")


def test_a_remote_that_dropped_an_event_is_merged_not_rebased_onto(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The remote's tip lost a line of another task's log (a hand-made commit): the transition
    is not put on top of that tip; the whole merge runs and the line comes back."""
    from test_state_branch import forge_state

    from flowgit.store.state import log_path

    bare, a, b = shared_pushing(tmp_path)
    a.ok("claim", "P/T4", "--worker", "wa")
    a.ok("heartbeat", "P/T4", "--worker", "wa")
    b.ok("claim", "P/T2", "--worker", "wb")

    def drop_line() -> None:
        a.git("fetch", "-q", "origin", "flow/state:flow/state")
        first = a.git("show", f"flow/state:{log_path('P', 'T4')}").splitlines()[0]
        forge_state(a, tmp_path, log_path("P", "T4"), first + "\n", "drop a line")
        a.git("push", "-q", "origin", "flow/state")

    race_first_push(monkeypatch, drop_line)
    got = b.ok("start", "P/T2", "--worker", "wb", "--json").json
    assert got["rebased"] == 0, got
    assert len(remote_events(bare, "T4")) == 2  # the dropped heartbeat is back


def _worker(cwd: Path, name: str) -> subprocess.Popen[str]:
    code = (
        "import json, subprocess, sys\n"
        "out = {'claimed': [], 'rc': []}\n"
        "while True:\n"
        f"    p = subprocess.run([sys.executable, '-m', 'flowgit', 'claim', 'P', '--sync', '--worker', {name!r},"
        " '--json'], capture_output=True, text=True)\n"
        "    if p.returncode == 3:\n"
        "        break\n"
        "    if p.returncode != 0:\n"
        "        out['rc'].append([p.returncode, p.stderr[-300:]])\n"
        "        continue\n"
        "    task = json.loads(p.stdout)['task']\n"
        f"    d = subprocess.run([sys.executable, '-m', 'flowgit', 'done', task, '--worker', {name!r}],"
        " capture_output=True, text=True)\n"
        "    if d.returncode != 0:\n"
        "        out['rc'].append([d.returncode, d.stderr[-300:]])\n"
        "    out['claimed'].append(task)\n"
        "print(json.dumps(out))\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.stress
def test_eight_clones_claim_and_finish_every_task_exactly_once(tmp_path: Path) -> None:
    n = 24
    plan = "id: P\ntitle: clones\ngoal: many clones\ntasks:\n" + "".join(
        f"  - id: T{i}\n    title: task {i}\n" for i in range(1, n + 1))
    bare, _ = shared(tmp_path, plan)
    clones = [clone(bare, tmp_path / f"c{i}") for i in range(8)]
    procs = [_worker(c.path, f"w{i}") for i, c in enumerate(clones)]
    won: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert result["rc"] == [], result["rc"]  # no exit 4, nor any other failure
        won += result["claimed"]
    assert sorted(won) == sorted(f"P/T{i}" for i in range(1, n + 1))
    for c in clones:  # each clone's last done is still local
        c.ok("sync")
    from flowgit.store.state import log_path

    for i in range(1, n + 1):
        text = git(bare, "show", f"flow/state:{log_path('P', f'T{i}')}")
        types = [json.loads(line)["type"] for line in text.splitlines() if line.strip()]
        assert types.count("task.claimed") == 1 and types.count("task.done") == 1, (i, types)
