"""Claim refs (ADR 0013): a `claim --sync` in format 2 is won by a compare-and-swap push on
its task's own ref, `flow/state-claims/<plan>/<task>`, whose commit message carries the claim
event; `sync` and `claim --sync` fetch them with the state branch and fold their claims in.
Everything a remote holds there is untrusted: a claim ref that is no claim holds its own task
(said in one line, nothing of it folded); every other task goes on."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from helpers import Repo, git, states
from test_state_branch import clone, shared

PLAN = "id: P\ntitle: claims\ngoal: claim refs\ntasks:\n" + "".join(
    f"  - id: T{i}\n    title: task {i}\n" for i in range(1, 5))
REF = "flow/state-claims/P/"


def remote_claims(bare: Path) -> dict[str, str]:
    """task -> the subject of its claim ref's commit on the remote."""
    out = git(bare, "for-each-ref", "--format=%(refname:strip=5) %(subject)", f"refs/heads/{REF}")
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def race(monkeypatch: pytest.MonkeyPatch, before: Callable[[], None]) -> None:
    """This process's first push runs `before()` (another clone) first."""
    from flowgit import git_state

    real = git_state.push_refs
    calls: list[int] = []

    def push_refs(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            before()
        return real(*args, **kw)

    monkeypatch.setattr(git_state, "push_refs", push_refs)


def later(r: Repo, seconds: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWGIT_TESTING": "1", "FLOWGIT_TEST_NOW_OFFSET": str(seconds)}
    return r.proc(*args, env=env)


def test_a_claim_is_won_on_its_task_ref_and_folded_by_the_others(tmp_path: Path) -> None:
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    got = a.ok("claim", "P/T2", "--sync", "--worker", "wa", "--json").json
    assert got["pushed"] is True and got["attempts"] == 1
    assert remote_claims(bare) == {"T2": "flow(P/T2): claimed by wa"}
    message = git(bare, "log", "-1", "--format=%B", f"{REF}T2")
    [line] = [ln for ln in message.splitlines() if ln.startswith("{")]
    assert json.loads(line)["type"] == "task.claimed" and json.loads(line)["actor"] == "wa"
    a.ok("sync")  # the claim on the state branch is the same line, byte for byte
    from flowgit.store.state import log_path

    assert git(bare, "show", f"flow/state:{log_path('P', 'T2')}").splitlines() == [line]
    # B sees the claim after its own fetch (a claim of the plan takes another task)
    assert b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json["task"] != "P/T2"
    assert states(b, "P")["T2"] == "claimed"
    res = b.run("claim", "P/T2", "--sync", "--worker", "wb")
    assert res.code == 1 and "wa" in res.err
    # a fresh clone's `sync` folds every plan's claims into its state
    c = clone(bare, tmp_path / "c")
    c.ok("sync")
    assert states(c, "P")["T2"] == "claimed"


def test_a_released_task_is_claimed_again_on_the_same_ref(tmp_path: Path) -> None:
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    a.ok("claim", "P/T1", "--sync", "--worker", "wa")
    first = git(bare, "rev-parse", f"{REF}T1")
    a.ok("release", "P/T1", "--worker", "wa")
    a.ok("sync")
    b.ok("claim", "P/T1", "--sync", "--worker", "wb")
    assert remote_claims(bare)["T1"] == "flow(P/T1): claimed by wb"
    assert git(bare, "rev-parse", f"{REF}T1^") == first  # the lease expected A's claim
    a.ok("sync")
    assert states(a, "P")["T1"] == "claimed"


def test_after_an_expired_lease_two_clones_race_and_one_wins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare, _ = shared(tmp_path, PLAN)
    a, b, c = (clone(bare, tmp_path / n) for n in "abc")
    a.ok("claim", "P/T3", "--sync", "--worker", "wa", "--lease", "60")
    # two hours on, A never came back: C takes T3 inside B's window, B's lease check fails
    monkeypatch.setenv("FLOWGIT_TESTING", "1")
    monkeypatch.setenv("FLOWGIT_TEST_NOW_OFFSET", "7200")

    def c_claims() -> None:
        proc = later(c, 7200, "claim", "P/T3", "--sync", "--worker", "wc")
        assert proc.returncode == 0, proc.stderr

    race(monkeypatch, c_claims)
    res = b.run("claim", "P/T3", "--sync", "--worker", "wb")
    assert res.code == 1 and "wc" in res.err, res.err
    assert remote_claims(bare)["T3"] == "flow(P/T3): claimed by wc"
    assert git(bare, "log", "-1", "--format=%s", f"{REF}T3^") == "flow(P/T3): claimed by wa"
    # nothing of B's lost claim anywhere: its state is the remote's with the claims folded
    b.ok("sync")
    from flowgit.store.state import log_path

    text = git(bare, "show", f"flow/state:{log_path('P', 'T3')}")
    actors = [json.loads(ln)["actor"] for ln in text.splitlines() if json.loads(ln)["type"] == "task.claimed"]
    assert actors == ["wa", "wc"]


def hostile(attacker: Repo, task: str, message: str) -> str:
    """A commit made by hand and pushed to a claim ref (anyone with push access can)."""
    tree = attacker.git("rev-parse", "origin/flow/state^{tree}")
    commit = attacker.git("commit-tree", tree, "-m", message)
    attacker.git("push", "-q", "origin", f"{commit}:refs/heads/{REF}{task}")
    return commit


def forged(task: str, **change: Any) -> str:
    ev = {"id": "01JAAAAAAAAAAAAAAAAAAAAAAA", "type": "task.claimed", "plan": "P", "task": task,
          "actor": "mallory", "at": "2026-12-06T00:00:00Z", "clock": 1,
          "data": {"lease_until": "2099-01-01T00:00:00Z", "lease_seconds": 900}}
    ev.update(change)
    return json.dumps(ev, separators=(",", ":"))


@pytest.mark.parametrize("message, said", [
    ("just words", "exactly one event line"),
    (f"x\n\n{forged('T2')}\n{forged('T2', id='01JBBBBBBBBBBBBBBBBBBBBBBB')}", "exactly one event line"),
    (f"x\n\n{forged('T2', type='task.done')}", "task.done"),
    (f"x\n\n{forged('T1')}", "T1"),
    (f"x\n\n{forged('T2', plan='Q')}", "Q"),
    ("x\n\n{\"type\": 1}", "T2"),
    ("x\n\n" + "y" * 70_000, "byte limit"),
])
def test_a_hostile_claim_ref_holds_its_task_in_one_line_and_nothing_of_it_is_folded(
        tmp_path: Path, message: str, said: str) -> None:
    bare, _ = shared(tmp_path, PLAN)
    mallory, b = clone(bare, tmp_path / "m"), clone(bare, tmp_path / "b")
    junk = hostile(mallory, "T2", message)

    def one_line(text: str) -> str:
        line = text.strip().removeprefix("warning: ").removeprefix("flowgit: error: ")
        assert "\n" not in line and "Traceback" not in line
        assert f"origin/{REF}T2" in line and said in line and f"git push origin --delete {REF}T2" in line
        assert "P/T2 cannot be claimed" in line
        return line

    res = b.run("sync", "--json")  # the sync goes on, and says which ref holds which task
    assert res.code == 0, res.err
    line = one_line(res.err)
    assert res.json["held_claims"] == [line]
    res = b.run("claim", "P/T2", "--sync", "--worker", "wb")
    assert res.code == 1 and one_line(res.err) == line
    # a claim of the plan passes over the held task, and refuses in its line when only it is left
    got = [b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json["task"] for _ in range(3)]
    assert sorted(got) == ["P/T1", "P/T3", "P/T4"]
    res = b.run("claim", "P", "--sync", "--worker", "wb")
    assert res.code == 1 and one_line(res.err) == line
    assert states(b, "P")["T2"] == "ready"  # nothing of the junk folded
    assert b.ok("sync").code == 0 and git(bare, "rev-parse", f"{REF}T2") == junk  # never pushed over
    # the way out the line names
    mallory.git("push", "-q", "origin", "--delete", f"{REF}T2")
    res = b.run("sync")
    assert res.code == 0 and res.err.strip() == ""
    assert b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json["task"] == "P/T2"


def test_a_ref_below_a_claim_ref_holds_its_task_and_is_not_retried(tmp_path: Path) -> None:
    """`P/T2/x` on the remote: git refuses to create `P/T2` beside it, which used to look like
    a lost race (retried, exit 4). Said in one line and refused at once (exit 1)."""
    bare, _ = shared(tmp_path, PLAN)
    mallory, b = clone(bare, tmp_path / "m"), clone(bare, tmp_path / "b")
    b.ok("claim", "P/T2", "--sync", "--worker", "wb")  # b holds the tracking ref P/T2 ...
    b.ok("release", "P/T2", "--worker", "wb")
    b.ok("sync")
    mallory.git("push", "-q", "origin", "--delete", f"{REF}T2")  # ... which mallory replaces
    hostile(mallory, "T2/x", "x\n\nnot an event")
    res = b.run("sync")
    assert res.code == 0, res.err
    assert f"origin/{REF}T2/x" in res.err and f"git push origin --delete {REF}T2/x" in res.err
    res = b.run("claim", "P/T2", "--sync", "--worker", "wb")
    assert res.code == 1, (res.code, res.err)
    assert f"git push origin --delete {REF}T2/x" in res.err and "\n" not in res.err.strip()
    assert b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json["task"] == "P/T1"


def test_a_branch_named_as_the_plans_claim_folder_is_refused_not_retried(tmp_path: Path) -> None:
    """`flow/state-claims/P` (not fetched with P's claim refs) stops git from creating any claim
    ref of P: the remote's refusal is read, and the claim exits 1 in one line naming it."""
    bare, _ = shared(tmp_path, PLAN)
    mallory, b = clone(bare, tmp_path / "m"), clone(bare, tmp_path / "b")
    tree = mallory.git("rev-parse", "origin/flow/state^{tree}")
    mallory.git("push", "-q", "origin", f"{mallory.git('commit-tree', tree, '-m', 'x')}:refs/heads/{REF[:-1]}")
    res = b.run("claim", "P/T1", "--sync", "--worker", "wb")
    assert res.code == 1, (res.code, res.err)
    line = res.err.strip()
    assert "\n" not in line and f"git push origin --delete {REF[:-1]}" in line and "P/T1 cannot be claimed" in line
    assert states(b, "P")["T1"] == "ready"  # taken back


def test_refs_that_name_no_task_are_never_read(tmp_path: Path) -> None:
    bare, _ = shared(tmp_path, PLAN)
    mallory, b = clone(bare, tmp_path / "m"), clone(bare, tmp_path / "b")
    hostile(mallory, "T9/deeper", "x\n\nnot an event")
    hostile(mallory, "-T1", "x\n\nnot an event")
    b.ok("sync")
    assert b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json["task"] == "P/T1"


def test_sync_prunes_claim_refs_the_state_branch_carries(tmp_path: Path) -> None:
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    a.ok("claim", "P/T1", "--sync", "--worker", "wa")
    a.ok("done", "P/T1", "--worker", "wa")
    b.ok("claim", "P/T2", "--sync", "--worker", "wb")  # on its claim ref only
    assert a.ok("sync", "--json").json["pruned"] == 0  # too young, and not yet on flow/state
    b.ok("claim", "P/T3", "--sync", "--worker", "wb")
    assert set(remote_claims(bare)) == {"T1", "T2", "T3"}
    # ten minutes on: T1's and T2's claims were on the remote's state when A fetched (its
    # last sync pushed them); T3's was not
    out = later(a, 700, "sync", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["pruned"] == 2, out.stderr
    assert set(remote_claims(bare)) == {"T3"}
    # that sync pushed the claim of T3 it folded: the next one prunes that ref too
    assert json.loads(later(a, 700, "sync", "--json").stdout)["pruned"] == 1
    assert remote_claims(bare) == {}
    # nothing was lost: every clone reads the claims from the state branch
    b.ok("sync")
    seen = states(b, "P")
    assert seen["T1"] == "done" and seen["T2"] == "claimed" and seen["T3"] == "claimed"
    assert b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json["task"] == "P/T4"
    res = a.run("claim", "P/T2", "--sync", "--worker", "wa")
    assert res.code == 1 and "wb" in res.err


def test_a_claim_now_and_then_prunes_in_its_own_push(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowgit.ops import claimrefs

    bare, _ = shared(tmp_path, PLAN)
    a = clone(bare, tmp_path / "a")
    a.ok("claim", "P/T1", "--sync", "--worker", "wa")
    a.ok("claim", "P/T2", "--sync", "--worker", "wa")  # pushes the state holding T1's claim
    monkeypatch.setattr(claimrefs, "PRUNE_CHANCE", 1.0)
    monkeypatch.setenv("FLOWGIT_TESTING", "1")
    monkeypatch.setenv("FLOWGIT_TEST_NOW_OFFSET", "700")
    a.ok("claim", "P/T3", "--sync", "--worker", "wa")
    assert set(remote_claims(bare)) == {"T2", "T3"}  # T2's claim was not on the state yet
    a.ok("sync")
    assert states(a, "P") == {"T1": "claimed", "T2": "claimed", "T3": "claimed", "T4": "ready"}


@pytest.mark.parametrize("case", ["apart", "folded", "ours_holds", "both_appended"])
def test_the_merge_by_ids_writes_the_tree_the_whole_merge_writes(tmp_path: Path, case: str) -> None:
    """Many clones merge without new blobs when one side's log holds the other's lines: the
    tree is the one `merge_states` (the union) writes; when neither holds the other's, the
    whole merge runs."""
    import shutil

    from flowgit.ops import statesync
    from flowgit.store.repo import FlowRepo

    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    a.ok("claim", "P/T1", "--worker", "wa")
    a.ok("sync")
    b.ok("sync")
    if case == "apart":
        a.ok("claim", "P/T2", "--worker", "wa")
        b.ok("claim", "P/T3", "--worker", "wb")
    elif case == "folded":  # B has A's log of T1 up to a point, A went on
        a.ok("start", "P/T1", "--worker", "wa")
        a.ok("sync")
        b.git("fetch", "-q", "origin")
        b.ok("claim", "P/T3", "--worker", "wb")
        a.ok("heartbeat", "P/T1", "--worker", "wa")
        b.ok("sync")  # B: T1 claimed+started; A: T1 claimed+started+heartbeat, unpushed
        a.ok("claim", "P/T2", "--worker", "wa")
    elif case == "ours_holds":
        a.ok("start", "P/T1", "--worker", "wa")
        a.ok("sync")
        b.ok("sync")
        a.ok("heartbeat", "P/T1", "--worker", "wa")
        b.ok("claim", "P/T4", "--worker", "wb")
    else:  # one worker's heartbeats of T1 from both clones: neither log holds the other's
        a.ok("start", "P/T1", "--worker", "wa")
        a.ok("sync")
        b.ok("sync")
        a.ok("heartbeat", "P/T1", "--worker", "wa")
        b.ok("heartbeat", "P/T1", "--worker", "wa")
    b.ok("sync")  # the remote has B's side now
    a.git("fetch", "-q", "origin", "+refs/heads/flow/state:refs/remotes/origin/flow/state")
    ours, theirs = a.git("rev-parse", "flow/state"), a.git("rev-parse", "origin/flow/state")
    copy = tmp_path / "a-copy"
    shutil.copytree(a.path, copy, symlinks=True)
    cheap, whole = FlowRepo(a.path), FlowRepo(copy)
    base = a.git("merge-base", ours, theirs)
    done = statesync._merge_by_ids(cheap, ours, theirs, base, "m")
    statesync.merge_states(whole, ours, theirs, "m")
    if case == "both_appended":
        assert not done and a.git("rev-parse", "flow/state") == ours
        return
    assert done, case
    assert a.git("rev-parse", "flow/state^{tree}") == git(copy, "rev-parse", "flow/state^{tree}")
