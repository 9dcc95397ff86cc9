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
    """The first state push of this process runs `before()` (another clone pushing) first,
    so it is rejected as a real race would be."""
    from flowgit import git_state

    real = git_state.push_ref
    calls: list[int] = []

    def push_ref(root: Path, remote: str, branch: str, commit: str) -> bool:
        calls.append(1)
        if len(calls) == 1:
            before()
        return real(root, remote, branch, commit)

    monkeypatch.setattr(git_state, "push_ref", push_ref)
    return calls


def other_claims(other: Repo, target: str, worker: str) -> Callable[[], None]:
    def run() -> None:
        proc = other.proc("claim", target, "--sync", "--worker", worker, "--json")
        assert proc.returncode == 0, proc.stderr

    return run


def test_a_rejected_claim_is_rebased_onto_the_tip_when_the_remote_moved_other_logs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    calls = race_first_push(monkeypatch, other_claims(a, "P/T5", "wa"))
    got = b.ok("claim", "P/T2", "--sync", "--worker", "wb", "--json").json
    assert got["task"] == "P/T2" and got["attempts"] == 2 and got["rebased"] == 1, got
    assert len(calls) == 2
    assert claims(bare) == {"T5": ["wa"], "T2": ["wb"]}
    # the claim sits on the other clone's claim: one line of history, its own message
    tip = git(bare, "rev-parse", "flow/state")
    assert got["commit"] == tip and b.git("rev-parse", "flow/state") == tip
    assert git(bare, "log", "-1", "--format=%s", "flow/state^") == "flow(P/T5): claimed"
    assert git(bare, "rev-list", "--parents", "-1", "flow/state").count(" ") == 1
    assert git(bare, "log", "-1", "--format=%s", "flow/state") == "flow(P/T2): claimed"
    # the private index follows: the next write needs no rebuild and loses nothing
    b.ok("start", "P/T2", "--worker", "wb")
    b.ok("sync")
    assert [e["type"] for e in remote_events(bare, "T5")] == ["task.claimed"]
    assert [e["type"] for e in remote_events(bare, "T2")] == ["task.claimed", "task.started"]


def test_unpushed_local_history_is_merged_under_the_rebased_claim(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    b.ok("claim", "P/T1", "--sync", "--worker", "wb")
    b.ok("done", "P/T1", "--worker", "wb")  # local only
    calls = race_first_push(monkeypatch, other_claims(a, "P/T6", "wa"))
    got = b.ok("claim", "P/T3", "--sync", "--worker", "wb", "--json").json
    assert got["rebased"] == 1 and len(calls) == 2, got
    assert [e["type"] for e in remote_events(bare, "T1")] == ["task.claimed", "task.done"]
    assert claims(bare) == {"T1": ["wb"], "T6": ["wa"], "T3": ["wb"]}
    parents = git(bare, "rev-list", "--parents", "-1", "flow/state^").split()
    assert len(parents) == 3  # under the claim: the merge of B's unpushed done and A's claim


def test_a_claim_whose_task_the_remote_took_decides_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    calls = race_first_push(monkeypatch, other_claims(a, "P/T1", "wa"))
    got = b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json  # B too went for T1
    assert got["task"] != "P/T1" and got["rebased"] == 0 and got["attempts"] == 2, got
    assert len(calls) == 2
    taken = claims(bare)
    assert taken["T1"] == ["wa"] and taken[got["task"].split("/")[1]] == ["wb"]
    assert sum(len(v) for v in taken.values()) == 2
    # the same task named: the loser is told who holds it, nothing of its claim left behind
    free = next(f"T{i}" for i in range(2, 9) if f"T{i}" not in taken)
    monkeypatch.undo()
    race_first_push(monkeypatch, other_claims(a, f"P/{free}", "wa"))
    res = b.run("claim", f"P/{free}", "--sync", "--worker", "wb")
    assert res.code == 1 and "wa" in res.err
    assert claims(bare)[free] == ["wa"]
    assert b.git("rev-parse", "flow/state") == git(bare, "rev-parse", "flow/state")


def test_a_remote_that_dropped_an_event_is_merged_not_rebased_onto(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The remote's tip lost a line of another task's log (a hand-made commit): the claim is
    not put on top of that tip; the whole merge runs and the line comes back."""
    from test_state_branch import forge_state

    from flowgit.store.state import log_path

    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    a.ok("claim", "P/T4", "--sync", "--worker", "wa")
    a.ok("heartbeat", "P/T4", "--worker", "wa")
    a.ok("sync")
    b.ok("sync")

    def drop_line() -> None:
        a.git("fetch", "-q", "origin", "flow/state:flow/state")
        first = a.git("show", f"flow/state:{log_path('P', 'T4')}").splitlines()[0]
        forge_state(a, tmp_path, log_path("P", "T4"), first + "\n", "drop a line")
        a.git("push", "-q", "origin", "flow/state")

    race_first_push(monkeypatch, drop_line)
    got = b.ok("claim", "P/T2", "--sync", "--worker", "wb", "--json").json
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
