"""What one `claim --sync` round costs with claim refs (ADR 0013): a claim of the plan folds the
claims other clones won since its last fetch into its own state commit (no commit of their
own), passes over their tasks, and after losing its task to another clone takes another one at
once on the state it fetched (no second fetch, merge or backoff). A claim of one named task
still folds first, so that it is decided on them."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import git, states
from test_claim_refs import REF, race, remote_claims
from test_state_branch import clone, shared

PLAN = "id: P\ntitle: rounds\ngoal: claim rounds\ntasks:\n" + "".join(
    f"  - id: T{i}\n    title: task {i}\n" for i in range(1, 5))


def subjects(r: Any, ref: str = "flow/state") -> list[str]:
    return r.git("log", "--format=%s", ref).splitlines()


def count_fetches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from flowgit import git_state

    real = git_state.fetch_ref
    calls: list[int] = []

    def fetch_ref(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(git_state, "fetch_ref", fetch_ref)
    return calls


def test_the_claims_of_others_ride_in_the_claims_own_commit(tmp_path: Path) -> None:
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    a.ok("claim", "P/T1", "--sync", "--worker", "wa")
    a.ok("claim", "P/T2", "--sync", "--worker", "wa")
    got = b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json
    assert got["task"] in ("P/T3", "P/T4") and got["attempts"] == 1
    new = b.git("log", "--format=%s", "origin/flow/state..flow/state").splitlines()
    assert new == [f"flow({got['task']}): claimed"], new  # no commit of their own
    body = b.git("log", "-1", "--format=%B", "flow/state")
    # T1 reached flow/state with A's claim of T2 (the state below it); T2 only on its claim ref
    assert body.startswith(f"flow({got['task']}): claimed") and "With the claims of P/T2 from origin" in body
    seen = states(b, "P")
    assert seen["T1"] == seen["T2"] == "claimed"
    # the lines are the claim refs' own, byte for byte, and recorded as folded: not read again
    from flowgit.store.state import log_path

    for task in ("T1", "T2"):
        [line] = [ln for ln in git(bare, "log", "-1", "--format=%B", f"{REF}{task}").splitlines() if ln.startswith("{")]
        assert b.git("show", f"flow/state:{log_path('P', task)}").splitlines() == [line]
    record = json.loads((b.path / ".git" / "flowgit" / "claims-folded.json").read_text())
    assert {ref.rsplit("/", 1)[1] for ref in record} == {"T1", "T2", got["task"].split("/")[1]}
    b.ok("sync")
    a.ok("sync")
    assert {t for t, s in states(a, "P").items() if s == "claimed"} == {"T1", "T2", got["task"].split("/")[1]}


def test_a_lost_claim_of_the_plan_takes_another_task_without_fetching_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    a.ok("claim", "P/T4", "--sync", "--worker", "wa")  # something to fold

    def a_takes_t1() -> None:  # b's first pick, uncontended: the best task
        proc = a.proc("claim", "P/T1", "--sync", "--worker", "wa")
        assert proc.returncode == 0, proc.stderr

    race(monkeypatch, a_takes_t1)
    fetches = count_fetches(monkeypatch)
    got = b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json
    assert got["task"] in ("P/T2", "P/T3") and got["attempts"] == 2
    assert len(fetches) == 1  # the loss said only that T1 went: no second fetch
    won = got["task"].split("/")[1]
    assert remote_claims(bare) == {"T1": "flow(P/T1): claimed by wa", "T4": "flow(P/T4): claimed by wa",
                                   won: f"flow(P/{won}): claimed by wb"}
    # nothing of the lost claim is left; T4 (folded in the winning commit) is; T1 comes with a sync
    body = b.git("log", "-1", "--format=%B", "flow/state")
    assert "With the claims of P/T4 from origin" in body
    seen = states(b, "P")
    assert seen["T4"] == "claimed" and seen["T1"] == "ready"
    b.ok("sync")
    assert states(b, "P")["T1"] == "claimed"
    mine = b.git("log", "--format=%s", "--grep=Flow-Actor: wb", "flow/state").splitlines()
    assert mine == [f"flow(P/{won}): claimed"]  # the lost claim was taken back, never pushed


def test_a_claim_of_the_plan_that_finds_only_others_claims_folds_them_and_says_nothing_to_do(
        tmp_path: Path) -> None:
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    for task in ("T1", "T2", "T3", "T4"):
        a.ok("claim", f"P/{task}", "--sync", "--worker", "wa")
    res = b.run("claim", "P", "--sync", "--worker", "wb")
    assert res.code == 3, (res.code, res.err)
    assert set(states(b, "P").values()) == {"claimed"}  # folded, as a claim that finds nothing did
    assert any(s.startswith("flow: claims from origin") for s in subjects(b))


def test_a_claim_of_one_task_is_decided_on_the_claims_it_fetched(tmp_path: Path) -> None:
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    a.ok("claim", "P/T2", "--sync", "--worker", "wa")
    res = b.run("claim", "P/T2", "--sync", "--worker", "wb")
    assert res.code == 1 and "wa" in res.err
    assert states(b, "P")["T2"] == "claimed"


def test_contended_claims_spread_over_sixteen_ready_tasks_per_claimer(tmp_path: Path) -> None:
    """Three other workers' claims folded lately: the next claim of the plan picks among the
    first 64 ready tasks (16 per claimer, itself counted), not the first 16."""
    from flowgit.ops import claimrefs
    from flowgit.ops.sync import contended
    from flowgit.store.repo import FlowRepo

    bare, _ = shared(tmp_path, PLAN)
    b = clone(bare, tmp_path / "b")
    repo = FlowRepo(b.path)
    assert contended(repo) == 0
    claimrefs.seen_others(repo, ["w1", "w2", "w3"])
    assert contended(repo) == 64
    claimrefs.seen_others(repo, ["w1"], now=time.time() - 60)  # w1 long ago, w2 and w3 still now
    assert contended(repo) == 48
    claimrefs.seen_others(repo, [], now=time.time() + 60)
    assert claimrefs.workers_lately(repo, 30.0, now=time.time() + 60) == []  # long ago: uncontended


def test_after_a_lost_race_the_window_bounds_the_choice() -> None:
    from flowgit.core.lifecycle import after_lost_race

    class Plan:
        def task(self, task_id: str) -> Any:
            return None

    class State:
        order = tuple(f"T{i}" for i in range(100))
        tasks: dict[str, Any] = {}

    import flowgit.core.lifecycle as lifecycle

    real = lifecycle.free_order
    try:
        lifecycle.free_order = lambda plan, state, also_held=(): list(state.order)  # type: ignore[assignment]
        picks = {after_lost_race(Plan(), State(), "", i / 100, 40) for i in range(100)}  # type: ignore[arg-type]
    finally:
        lifecycle.free_order = real  # type: ignore[assignment]
    assert picks == {f"T{i}" for i in range(40)}


# ----- shares (ADR 0013 "Shares"): clones that saw each other claim take from their own share --
def _owner_of(task: str, crowd: list[str]) -> str:
    from flowgit.core.lifecycle import owner

    return owner(task, crowd)


SIXTEEN = "id: P\ntitle: shares\ngoal: shares\ntasks:\n" + "".join(
    f"  - id: T{i:02d}\n    title: task {i}\n" for i in range(16))


def test_clones_that_saw_each_other_claim_take_tasks_of_their_own_in_order(tmp_path: Path) -> None:
    """Two clones that each saw the other claim lately never pick the same task: each takes
    its task of the round (the first of its own share, or one of the best tasks no worker got),
    every claim wins at its first push, and each takes one of the two best free tasks."""
    from flowgit.ops import claimrefs
    from flowgit.store.repo import FlowRepo

    bare, _ = shared(tmp_path, SIXTEEN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    claimrefs.seen_others(FlowRepo(a.path), ["wb"])
    claimrefs.seen_others(FlowRepo(b.path), ["wa"])
    taken: list[str] = []
    for _ in range(3):
        for r, me in ((a, "wa"), (b, "wb")):
            r.ok("sync")
            best = sorted(t for t, s in states(r, "P").items() if s == "ready")
            got = r.ok("claim", "P", "--sync", "--worker", me, "--json").json
            assert got["attempts"] == 1
            task = got["task"].split("/")[1]
            assert task in best[:2], (me, task, best[:4])
            taken.append(task)
    assert len(set(taken)) == 6 and set(taken) <= {f"T{i:02d}" for i in range(7)}


def _pick(me: str, free: list[str], crowd: list[str], overdue: set[str] | None = None) -> str | None:
    from types import SimpleNamespace

    from flowgit.core import lifecycle

    plan = SimpleNamespace(task=lambda t: SimpleNamespace(priority=None))
    real = lifecycle.free_order
    lifecycle.free_order = lambda plan, state, also_held=(): list(free)  # type: ignore[assignment]
    try:
        return lifecycle.after_lost_race(plan, None, "", 0.0, 16, me,  # type: ignore[arg-type]
                                         [w for w in crowd if w != me], overdue or set())
    finally:
        lifecycle.free_order = real  # type: ignore[assignment]


def test_a_round_gives_each_worker_one_of_the_best_tasks() -> None:
    """The choice itself (core/lifecycle): the same view gives every worker a different task
    among the best as many as there are workers, its own share's first where that is among
    them; a worker with no share left takes one no one else got; with fewer tasks than workers
    the owners keep theirs; a task passed over claim after claim (`overdue`) goes first."""
    crowd = ["w1", "w2", "w3", "w4"]
    ids = [f"T{i:02d}" for i in range(40)]
    picks = [_pick(me, ids, crowd) for me in crowd]
    assert sorted(str(p) for p in picks) == ids[:4]
    for me, got in zip(crowd, picks):
        first = next(t for t in ids if _owner_of(t, crowd) == me)
        assert got == first or first not in ids[:4]
    # w1's share is gone: still four different tasks among the best four
    free = [t for t in ids if _owner_of(t, crowd) != "w1"]
    assert sorted(str(_pick(me, free, crowd)) for me in crowd) == free[:4]
    # two tasks, four workers: each owner keeps its own
    two = free[:2]
    for task in two:
        assert _pick(_owner_of(task, crowd), two, crowd) == task
    # a task this clone passed over claim after claim goes first, whoever's it is
    assert _pick("w4", ids, crowd, {ids[3]}) == ids[3]


def test_a_task_passed_over_claim_after_claim_is_taken(tmp_path: Path) -> None:
    """A name that never claims the tasks of its share (a worker that stopped, a forged name
    from a claim ref) keeps them only for three claims of a clone that passes over them."""
    from flowgit.ops import claimrefs
    from flowgit.store.repo import FlowRepo

    bare, _ = shared(tmp_path, SIXTEEN)
    b = clone(bare, tmp_path / "b")
    crowd = ["ghost", "wb"]
    ghosts = [f"T{i:02d}" for i in range(16) if _owner_of(f"T{i:02d}", crowd) == "ghost"]
    taken: list[str] = []
    for _ in range(claimrefs.OVERDUE_AFTER + 2):  # the first claim takes T00, before it
        claimrefs.seen_others(FlowRepo(b.path), ["ghost"])
        got = b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json
        taken.append(got["task"].split("/")[1])
    assert ghosts[0] in taken, (ghosts, taken)
    passed = claimrefs.passed_over(FlowRepo(b.path), "P")
    assert all(n < claimrefs.OVERDUE_AFTER for n in passed.values()), passed


def test_a_synced_claim_does_not_wait_for_races_its_clone_lost(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """ADR 0006's pace (wait as a retry would when this clone lost races lately) is for one
    state branch; a lost claim ref says only that another clone took that task: the next
    claim goes at once, and still spreads (the pace file widens its choice)."""
    from flowgit.ops import sync as syncing
    from flowgit.ops.sync import contended
    from flowgit.store.repo import FlowRepo

    bare, _ = shared(tmp_path, PLAN)
    b = clone(bare, tmp_path / "b")
    b.ok("status")
    (b.path / ".git" / "flowgit").mkdir(exist_ok=True)
    (b.path / ".git" / "flowgit" / syncing.PACE_FILE).write_text(f"4 2.0 {time.time():.3f}\n")
    assert contended(FlowRepo(b.path)) == syncing.SPREAD
    slept: list[float] = []
    monkeypatch.setattr(syncing.time, "sleep", lambda s: slept.append(s))
    got = b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json
    assert got["attempts"] == 1 and slept == []


def test_a_crowd_of_forged_names_is_bounded(tmp_path: Path) -> None:
    """Worker names come from other clones' claim refs: a teammate who pushes claims under
    300 names makes a clone share its ready tasks with the 32 it saw last, no more (the
    choice costs a hash per worker and task)."""
    from flowgit.ops import claimrefs
    from flowgit.store.repo import FlowRepo

    bare, _ = shared(tmp_path, PLAN)
    b = clone(bare, tmp_path / "b")
    repo = FlowRepo(b.path)
    now = time.time()
    for i in range(300):
        claimrefs.seen_others(repo, [f"forged-{i:03d}"], now=now - 20 + i / 100)
    crowd = claimrefs.workers_lately(repo, 30.0, now=now)
    assert len(crowd) == claimrefs.CROWD_AT_MOST
    assert crowd == sorted(f"forged-{i:03d}" for i in range(300 - claimrefs.CROWD_AT_MOST, 300))
    seen = json.loads((b.path / ".git" / "flowgit" / claimrefs.SEEN).read_text())
    assert len(seen) == claimrefs.SEEN_AT_MOST
    got = b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json
    assert got["attempts"] == 1


@pytest.mark.parametrize("config", [None, "upstream"])
def test_a_synced_transition_with_no_such_remote_says_so(tmp_path: Path, config: str | None) -> None:
    """A synced claim or `done` no longer asks git whether the remote exists before its fetch
    (one process less a claim): a remote that is not there is still named in one line, exit 1,
    nothing written, as `sync` says it."""
    bare, _ = shared(tmp_path, PLAN)
    b = clone(bare, tmp_path / "b")
    b.ok("claim", "P/T1", "--worker", "wb")
    cfg = b.path / ".flow" / "config.yaml"
    text = re.sub(r"(?m)^sync:.*$", "sync: push", cfg.read_text())
    text = text + f"remote: {config}\n" if config else text
    assert "sync: push" in text and (config is None or f"remote: {config}" in text)
    cfg.write_text(text)
    b.git("commit", "-qam", "synced transitions")
    if config is None:
        b.git("remote", "remove", "origin")
    name = config or "origin"
    before = b.git("rev-parse", "flow/state")
    for args in (("claim", "P", "--sync", "--worker", "wb"), ("done", "P/T1", "--worker", "wb")):
        res = b.run(*args)
        assert res.code == 1, (args, res.code, res.err)
        lines = [ln for ln in res.err.splitlines() if ln.strip()]
        assert len(lines) == 1 and f"no remote named '{name}'" in lines[0], res.err
        assert "Traceback" not in res.err
    assert b.git("rev-parse", "flow/state") == before


def test_a_plan_claim_that_lost_twice_on_one_fetch_fetches_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One loss says one task went; two on the same fetch say the view is stale (the last
    tasks, which every idle worker goes for): the third try fetches again."""
    from flowgit import git_state

    bare, _ = shared(tmp_path, SIXTEEN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    a.ok("claim", "P/T15", "--sync", "--worker", "wa")  # b folds it: b knows wa claims
    real = git_state.push_refs
    pushes: list[str] = []

    def push_refs(root: Any, remote: str, updates: Any, *args: Any, **kw: Any) -> Any:
        task = next(ref for _, ref in updates if "-claims/" in ref).rsplit("/", 1)[1]
        pushes.append(task)
        if len(pushes) <= 2:  # wa takes the very task b is about to push, twice
            proc = a.proc("claim", f"P/{task}", "--sync", "--worker", "wa")
            assert proc.returncode == 0, proc.stderr
        return real(root, remote, updates, *args, **kw)

    monkeypatch.setattr(git_state, "push_refs", push_refs)
    fetches = count_fetches(monkeypatch)
    got = b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json
    assert got["attempts"] == 3 and len(set(pushes)) == 3
    assert len(fetches) == 2  # the first, and one after the second loss
    assert got["task"] == f"P/{pushes[2]}"
