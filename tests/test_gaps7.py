"""The sixth closing note's findings in the claim round (seventh session): claim refs of tasks
the plan does not have, remote errors that will not come back, the passed-over counts of
several plans, the ready order of a contended claim, a forged clock line. Real clones of a
bare remote, real processes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import Repo, git, states
from test_claim_refs import PLAN, REF, forged
from test_state_branch import clone, shared


def ulid(n: int) -> str:
    return "01JC" + f"{n:022d}"


def state_paths(where: Path, rev: str = "flow/state") -> set[str]:
    out = git(where, "ls-tree", "-r", "--name-only", rev, "--", ".flow/plans/")
    return set(out.splitlines())


def logs_of(where: Path, plan: str, rev: str = "flow/state") -> set[str]:
    """The tasks of `plan` with a log on the state branch at `rev`."""
    from flowgit.store.state import stream_of

    return {s for s in (stream_of(plan, p) for p in state_paths(where, rev)) if s and s != "_plan"}


# ----- 1. claim refs of tasks the plan does not have ----------------------------------------
def test_claims_of_tasks_no_plan_has_are_neither_folded_nor_pushed_on(tmp_path: Path) -> None:
    """A teammate pushes claim refs for made-up tasks (of P, and of a plan nobody has): an
    honest clone's `sync` folds nothing of them, pushes nothing of them, says so once (one line
    a ref, naming it and the `git push --delete` that removes it), and `doctor` lists them."""
    bare, _ = shared(tmp_path, PLAN)
    mallory, b = clone(bare, tmp_path / "m"), clone(bare, tmp_path / "b")
    made_up = [("P", "X1"), ("P", "X2"), ("Z", "T1")]
    for n, (plan, task) in enumerate(made_up):
        line = forged(task, id=ulid(n), plan=plan, actor=f"ghost{n}")
        tree = mallory.git("rev-parse", "origin/flow/state^{tree}")
        commit = mallory.git("commit-tree", tree, "-m", f"x\n\n{line}")
        mallory.git("push", "-q", "origin", f"{commit}:refs/heads/flow/state-claims/{plan}/{task}")
    res = b.run("sync", "--json")
    assert res.code == 0, res.err
    assert logs_of(b.path, "P") == logs_of(bare, "P")
    assert not {"X1", "X2"} & logs_of(b.path, "P") and not logs_of(b.path, "Z")
    assert not {"X1", "X2"} & logs_of(bare, "P") and not logs_of(bare, "Z")
    said = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(said) == 3, res.err
    for (plan, task), line in zip(sorted(made_up), sorted(said)):
        assert f"origin/flow/state-claims/{plan}/{task}" in line
        assert f"git push origin --delete flow/state-claims/{plan}/{task}" in line
        assert "Traceback" not in line
    assert sorted(res.json["unknown_claims"]) == sorted(ln.removeprefix("warning: ") for ln in said)
    assert res.json["held_claims"] == []
    # once: the next sync says nothing of them, and still folds nothing
    res = b.run("sync", "--json")
    assert res.code == 0 and res.err.strip() == "" and res.json["unknown_claims"] == []
    assert not {"X1", "X2"} & logs_of(bare, "P")
    # doctor lists each, as information (not a failure)
    res = b.run("doctor", "--json")
    kinds = [(p["kind"], p["path"]) for p in res.json["problems"] if p["kind"] == "unknown_claim"]
    assert sorted(kinds) == sorted(("unknown_claim", f"origin/flow/state-claims/{p}/{t}") for p, t in made_up)
    # (a plain `git clone` has no merge driver configured: the one failure here)
    assert {p["kind"] for p in res.json["problems"]} == {"unknown_claim", "merge_driver"}, res.out
    assert b.ok("doctor", "--fix").code == 0
    assert b.ok("doctor").out.count("[info] origin/flow/state-claims/") == 3
    # the made-up names are in no crowd: a claim of the plan takes the plan's first task
    seen = b.path / ".git" / "flowgit" / "claims-seen"
    assert not seen.exists() or not any(k.startswith("ghost") for k in json.loads(seen.read_text()))
    assert b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json["task"] == "P/T1"
    assert not {"X1", "X2"} & logs_of(bare, "P")


def test_three_hundred_made_up_claims_cost_one_sync_nine_lines(tmp_path: Path) -> None:
    bare, _ = shared(tmp_path, PLAN)
    mallory, b = clone(bare, tmp_path / "m"), clone(bare, tmp_path / "b")
    tree = mallory.git("rev-parse", "origin/flow/state^{tree}")
    specs = []
    for n in range(300):
        commit = mallory.git("commit-tree", tree, "-m", f"x\n\n{forged(f'X{n}', id=ulid(n), actor=f'g{n}')}")
        specs.append(f"{commit}:refs/heads/{REF}X{n}")
    mallory.git("push", "-q", "origin", *specs)
    res = b.run("sync", "--json")
    assert res.code == 0 and len(res.json["unknown_claims"]) == 300, res.err
    said = res.err.strip().splitlines()
    assert len(said) == 9 and "292 more claim ref(s)" in said[-1] and "flowgit doctor" in said[-1]
    assert logs_of(b.path, "P") == logs_of(bare, "P") == set()
    res = b.run("sync", "--json")
    assert res.code == 0 and res.err.strip() == "" and res.json["unknown_claims"] == []


def test_a_task_added_on_another_clone_is_folded_once_this_clone_has_it(tmp_path: Path) -> None:
    """Approvals off: the plan follows the default branch, which `sync` never fetches. A adds
    T5 and claims it; B sees the claim ref before it has the task: nothing folded, one line.
    Once B pulls the branch its next sync folds A's claim, and B's own claim of T5 is refused
    (it must never lease over a claim it did not fold)."""
    bare, _ = shared(tmp_path, PLAN)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    a.ok("task", "add", "P", "T5", "--title", "five")
    a.git("push", "-q", "origin", "main")
    a.ok("claim", "P/T5", "--sync", "--worker", "wa")
    res = b.run("sync", "--json")
    assert res.code == 0 and len(res.json["unknown_claims"]) == 1, res.err
    assert f"origin/{REF}T5" in res.err and "T5" not in logs_of(b.path, "P")
    b.git("pull", "-q", "--ff-only", "origin", "main")
    res = b.run("sync", "--json")
    assert res.code == 0 and res.json["unknown_claims"] == [] and res.err.strip() == "", res.err
    assert states(b, "P")["T5"] == "claimed"
    res = b.run("claim", "P/T5", "--sync", "--worker", "wb")
    assert res.code == 1 and "wa" in res.err, res.err
    assert git(bare, "log", "-1", "--format=%s", f"{REF}T5") == "flow(P/T5): claimed by wa"


def test_a_task_amended_into_the_recorded_plan_is_folded_in_the_same_fetch(tmp_path: Path) -> None:
    """Approvals on: `task add` amends the plan recorded in the state, and A's claim pushes that
    state with the claim ref. B's sync brings both in one fetch: the claim is read after the
    merge, on the plan it brought, and folded."""
    import subprocess

    from test_state_plan import approved

    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed = approved(tmp_path / "seed")
    seed.git("remote", "add", "origin", str(bare))
    seed.git("push", "-q", "origin", "main", "flow/state")
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    a.ok("claim", "P/T1", "--sync", "--worker", "wa")  # the plan executes: claims go on their refs only
    b.ok("sync")  # B has a state of its own, without T5
    a.ok("task", "add", "P", "T5", "--title", "five")
    a.ok("claim", "P/T5", "--sync", "--worker", "wa")
    assert "T5" in git(bare, "show", "flow/state:.flow/plans/P/plan.yaml")  # the amendment went below
    assert "T5" not in logs_of(bare, "P")  # and the claim only on its ref
    res = b.run("sync", "--json")
    assert res.code == 0 and res.json["unknown_claims"] == [], res.err
    assert states(b, "P")["T5"] == "claimed"
    res = b.run("claim", "P/T5", "--sync", "--worker", "wb")
    assert res.code == 1 and "wa" in res.err, res.err


# ----- 2. remotes that will not come back, and ones that may -----------------------------------
def refused_url(scheme: str) -> str:
    """A URL whose connection is refused at once: a port that was just free on this machine."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"{scheme}://127.0.0.1:{port}/x.git"


def _bad_remote(tmp_path: Path, fmt: str, url_of: str) -> Repo:
    from helpers import init_repo

    r = init_repo(tmp_path / "r", fmt)
    r.plan("P", PLAN)
    if fmt == "2":
        r.ok("submit", "P")
    plain = tmp_path / "plain"
    plain.write_text("not a repository\n")
    gitfile = tmp_path / "gitfile"
    gitfile.write_text(f"gitdir: {tmp_path / 'nowhere'}\n")
    url = {"plain": str(plain), "file-url": f"file://{plain}", "gitfile": str(gitfile)}.get(url_of) or refused_url(url_of)
    r.git("remote", "add", "origin", url)
    return r


@pytest.mark.parametrize("fmt", ["1", "2"])
@pytest.mark.parametrize("url_of", ["plain", "file-url", "gitfile"])
def test_a_remote_that_is_a_plain_file_is_exit_1_not_retry(tmp_path: Path, fmt: str, url_of: str) -> None:
    """A remote URL naming a plain file (or a .git file pointing nowhere) will fail the same way
    every time: exit 1 in one line saying what to check, not exit 4 ("retry"); nothing written."""
    r = _bad_remote(tmp_path, fmt, url_of)
    heads = r.git("for-each-ref", "--format=%(refname) %(objectname)")
    for args in (("sync",), ("claim", "P", "--sync", "--worker", "w")):
        res = r.run(*args)
        assert res.code == 1, (args, res.code, res.err)
        line = res.err.strip()
        assert "\n" not in line and "Traceback" not in line and "git remote get-url origin" in line, line
        res = r.run(*args, "--json")
        assert res.code == 1 and res.json["error"]["code"] == "fetch_failed", res.out
    assert r.git("for-each-ref", "--format=%(refname) %(objectname)") == heads
    assert states(r, "P")["T1"] == "ready"


@pytest.mark.parametrize("fmt", ["1", "2"])
@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_refused_connection_is_exit_4_retry(tmp_path: Path, fmt: str, scheme: str) -> None:
    """A refused connection may come back (a server restarting, a network down): CLI.md's exit 4,
    "a race that retrying may win", in one line; nothing written."""
    r = _bad_remote(tmp_path, fmt, scheme)
    heads = r.git("for-each-ref", "--format=%(refname) %(objectname)")
    for args in (("sync",), ("claim", "P", "--sync", "--worker", "w")):
        res = r.run(*args)
        assert res.code == 4, (args, res.code, res.err)
        line = res.err.strip()
        assert "\n" not in line and "Traceback" not in line and "127.0.0.1" in line, line
    assert r.git("for-each-ref", "--format=%(refname) %(objectname)") == heads
    assert states(r, "P")["T1"] == "ready"


# ----- 3. the passed-over counts of several plans ----------------------------------------------
def _two_plans(tmp_path: Path) -> Path:
    """A bare remote whose state executes plans P and Q, sixteen tasks each."""
    import subprocess

    from test_state_branch import executing

    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed = executing(tmp_path / "seed", SIXTEEN.replace("id: P", "id: P", 1))
    seed.plan("Q", SIXTEEN.replace("id: P", "id: Q", 1))
    seed.ok("submit", "Q")
    seed.git("remote", "add", "origin", str(bare))
    seed.git("push", "-q", "origin", "main", "flow/state")
    return bare


SIXTEEN = "id: P\ntitle: shares\ngoal: shares\ntasks:\n" + "".join(
    f"  - id: T{i:02d}\n    title: task {i}\n" for i in range(16))


def test_claims_alternating_between_plans_keep_each_plans_passed_counts(tmp_path: Path) -> None:
    """A name that never claims (a worker that stopped) holds its share's tasks for three
    claims of a clone that passes over them (ADR 0013 "Shares"). The counts were one plan's: a
    claim of Q reset P's, so a worker alternating between two plans never took the task."""
    from flowgit.core.lifecycle import owner
    from flowgit.ops import claimrefs
    from flowgit.store.repo import FlowRepo

    b = clone(_two_plans(tmp_path), tmp_path / "b")
    crowd = ["ghost", "wb"]
    ghosts = [f"T{i:02d}" for i in range(16) if owner(f"T{i:02d}", crowd) == "ghost"]
    assert ghosts
    taken: dict[str, list[str]] = {"P": [], "Q": []}
    for _ in range(claimrefs.OVERDUE_AFTER + 2):
        for plan in ("P", "Q"):
            claimrefs.seen_others(FlowRepo(b.path), ["ghost"])
            got = b.ok("claim", plan, "--sync", "--worker", "wb", "--json").json
            taken[plan].append(got["task"].split("/")[1])
    assert ghosts[0] in taken["P"] and ghosts[0] in taken["Q"], (ghosts, taken)
    for plan in ("P", "Q"):
        passed = claimrefs.passed_over(FlowRepo(b.path), plan)
        assert all(n < claimrefs.OVERDUE_AFTER for n in passed.values()), passed


def test_the_passed_over_counts_are_kept_for_a_bounded_number_of_plans(tmp_path: Path) -> None:
    from flowgit.ops import claimrefs
    from flowgit.store.repo import FlowRepo

    b = clone(_two_plans(tmp_path), tmp_path / "b")
    b.ok("sync")
    repo = FlowRepo(b.path)
    many = claimrefs.PASSED_PLANS + 5
    for n in range(many):
        claimrefs.note_passed(repo, f"P{n}", ["T01", "T02"], {"T01": 1})
    kept = [n for n in range(many) if claimrefs.passed_over(repo, f"P{n}")]
    assert kept == list(range(5, many))  # the plans noted last
    assert claimrefs.passed_over(repo, f"P{many - 1}") == {"T01": 2, "T02": 1}
    # the file a clone of the sixth session wrote (one plan's counts) still reads
    (b.path / ".git" / "flowgit" / claimrefs.PASSED).write_text(json.dumps({"P": {"T03": 2}}))
    assert claimrefs.passed_over(repo, "P") == {"T03": 2}
    claimrefs.note_passed(repo, "Q", ["T04"], {})
    assert claimrefs.passed_over(repo, "P") == {"T03": 2} and claimrefs.passed_over(repo, "Q") == {"T04": 1}
    # and a file that is no such thing reads as nothing
    for junk in ("[1, 2]", '{"P": [1]}', '[["P", {"T1": true}], 5]', "not json"):
        (b.path / ".git" / "flowgit" / claimrefs.PASSED).write_text(junk)
        assert claimrefs.passed_over(repo, "P") == {}
        claimrefs.note_passed(repo, "P", ["T05"], {})
        assert claimrefs.passed_over(repo, "P") == {"T05": 1}


# ----- 4. the ready order of a contended claim, once and only its front -------------------------
FILES = "id: F\ntitle: files\ngoal: files\ntasks:\n" + "".join(
    f"  - id: T{i:02d}\n    title: task {i}\n    files: [src/{'shared' if i % 3 == 0 else i}.txt]\n"
    for i in range(30))


def test_the_front_of_the_free_order_is_the_free_orders_front(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim looks at the front of the ready order only (its task of the round among the first
    16 per worker); the whole order, with a file check per ready task, cost about 100 ms at
    50,000 ready tasks, twice a contended claim. `free_front` checks as far as it needs."""
    from helpers import init_repo

    from flowgit.clock import wall_now
    from flowgit.core import lifecycle
    from flowgit.core.overlap import free_order
    from flowgit.store.repo import FlowRepo

    r = init_repo(tmp_path / "r", "2")
    r.plan("F", FILES)
    r.ok("claim", "F/T03", "--worker", "holder")  # holds src/shared.txt: every third task waits
    r.ok("claim", "F/T07", "--worker", "holder")
    repo = FlowRepo(r.path)
    plan, state = repo.load_plan("F").plan, repo.state("F", wall_now())
    whole = free_order(plan, state)
    assert len(whole) == 30 - 10 - 1 and "T00" not in whole and "T07" not in whole
    checked: list[str] = []
    real = lifecycle.clash
    monkeypatch.setattr(lifecycle, "clash", lambda p, t, h: checked.append(t) or real(p, t, h))
    for count in range(len(whole) + 3):
        checked.clear()
        assert lifecycle.free_front(plan, state, count) == whole[:count]
        if count and count < len(whole):
            assert checked[-1] == whole[count - 1]  # nothing checked past the last it takes
    # the choice is the same with the front as with the whole order, a task past it included
    for had in ["", "T01", whole[-1], "T00", "T07", "T99"]:
        for others in ([], ["wa"], [f"w{i}" for i in range(8)]):
            front = lifecycle.free_front(plan, state, lifecycle.front_needed(16, "wb", others))
            assert (lifecycle.after_lost_race(plan, state, had, 0.5, 16, "wb", others, (), front)
                    == lifecycle.after_lost_race(plan, state, had, 0.5, 16, "wb", others)), (had, others)
    assert lifecycle.front_needed(16, "wb", []) == 16
    assert lifecycle.front_needed(16, "wb", ["wa", "wb"]) == 2 * lifecycle.SHARE_SCAN


# ----- 5. a forged clock line holds its whole plan: removing it must stick ----------------------
def remove_line(r: Repo, tmp_path: Path, path: str, number: int) -> None:
    """docs/SECURITY.md's way out, as its commands: a state commit on the remote's state that
    drops line `number` of one log, pushed as a fast-forward."""
    import os
    import subprocess

    r.git("fetch", "-q", "origin", "+refs/heads/flow/state:refs/remotes/origin/flow/state")
    lines = r.git("show", f"origin/flow/state:{path}").split("\n")
    del lines[number - 1]
    (tmp_path / "log").write_text("\n".join(lines) + "\n")
    blob = r.git("hash-object", "-w", str(tmp_path / "log"))
    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "index")}
    for argv in (["read-tree", "origin/flow/state"], ["update-index", "--cacheinfo", f"100644,{blob},{path}"]):
        subprocess.run(["git", *argv], cwd=r.path, env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=r.path, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()
    commit = r.git("commit-tree", tree, "-p", "origin/flow/state", "-m", "flow: remove an unreadable line")
    r.git("push", "-q", "origin", f"{commit}:refs/heads/flow/state")


def test_a_forged_clock_line_removed_from_the_state_stays_removed(tmp_path: Path) -> None:
    """A teammate pushes one sound plan-log line with a clock past 2**53-1 (ADR 0014): it is
    unreadable, so it holds its plan (it might be a halt). The way out is a state commit that
    removes it; a clone with work of its own not pushed yet merged instead of fast-forwarding,
    and the union of the event sets brought the line back and pushed it on: the plan stayed
    held for good. A merge now keeps an unreadable line only when both sides hold it, or one
    brought it since their merge base."""
    from test_adversary_gates import forged_line, published, push_state_event
    from test_state_plan import PLAN as PINNED
    from test_state_plan import state_repo

    from flowgit.store.state import log_path

    m = state_repo(tmp_path / "m", approvals="{required: 0}")
    m.plan("P", PINNED)
    m.plan("Q", PINNED.replace("id: P", "id: Q"))
    m.ok("claim", "P/T2", "--worker", "w0")
    m.ok("claim", "Q/T2", "--worker", "w0")
    bare, mallory = published(m, tmp_path)
    m.git("push", "-q", "origin", "flow/state")
    b = clone(bare, tmp_path / "b")
    b.ok("sync")
    b.ok("claim", "Q/T1", "--worker", "wb")  # work of its own, not pushed
    mallory.ok("sync")
    path = log_path("P", "_plan")
    push_state_event(mallory, tmp_path, "P", forged_line("P", "plan.phase", {"to": "halted", "from": "execute"},
                                                         clock=2**53))
    number = len(git(bare, "show", f"flow/state:{path}").splitlines())
    res = b.run("sync")  # a merge (B has its own commit): the line came new from their side, kept
    assert res.code == 0 and f"{path}:{number}" in res.err and "clock" in res.err, res.err
    res = b.run("claim", "P/T1", "--worker", "wb")
    assert res.code == 1 and f"{path}:{number}" in res.err and "\n" not in res.err.strip()
    b.ok("heartbeat", "Q/T1", "--worker", "wb")  # more work of its own, not pushed
    # the way out: a state commit that removes the line, pushed by the maintainer
    remove_line(m, tmp_path, path, number)
    res = b.run("sync")
    assert res.code == 0 and "unreadable" not in res.err, res.err
    forged = '"clock":9007199254740992'
    assert forged not in b.git("show", f"flow/state:{path}") and forged not in git(bare, "show", f"flow/state:{path}")
    assert b.git("rev-parse", "flow/state^2") == git(bare, "rev-parse", "flow/state^2")  # B merged, and pushed
    b.ok("claim", "P/T1", "--worker", "wb")
    assert states(b, "Q")["T1"] == "claimed"  # B's own work kept
    # a readable event one side deleted still comes back (ADR 0011: a merge never loses one)
    m.ok("sync")
    m.ok("heartbeat", "Q/T2", "--worker", "w0")
    m.ok("sync")
    qlog = log_path("Q", "T2")
    lines = len(m.git("show", f"flow/state:{qlog}").splitlines())
    remove_line(b, tmp_path, qlog, lines)  # the heartbeat, removed on the remote by hand
    m.ok("heartbeat", "P/T2", "--worker", "w0")  # work of its own: the next sync merges
    m.ok("sync")
    assert len(m.git("show", f"flow/state:{qlog}").splitlines()) == lines
    assert len(git(bare, "show", f"flow/state:{qlog}").splitlines()) == lines


def test_a_removed_line_stays_removed_when_this_clone_appended_to_its_log(tmp_path: Path) -> None:
    """The cheap merge (`_merge_by_ids`) took our version of a log when it held every line of
    both sides: ours appended (a claim folded from a claim ref), theirs removed an unreadable
    line. It now leaves such a log to the whole merge, which lets the line go."""
    import os
    import subprocess

    from test_state_plan import PLAN as PINNED
    from test_state_plan import state_repo

    from flowgit.store.state import log_path

    r = state_repo(tmp_path / "r", approvals="{required: 0}")
    r.plan("P", PINNED)
    r.ok("claim", "P/T1", "--worker", "w0")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    r.git("remote", "add", "origin", str(bare))
    path = log_path("P", "T1")
    clean = r.git("show", f"flow/state:{path}") + "\n"
    forged = '{"id":"01JC0000000000000000000009","type":"task.heartbeat","plan":"P","task":"T1",' \
             '"actor":"mallory","at":"2026-12-07T00:00:00Z","clock":9007199254740992,"data":{}}\n'
    claim = json.dumps({**json.loads(clean.splitlines()[-1]), "id": "01JC0000000000000000000010", "clock": 2},
                       separators=(",", ":"))

    def commit(parent: str, text: str, message: str) -> str:
        blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=r.path, input=text, text=True,
                              capture_output=True, check=True).stdout.strip()
        env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "idx")}
        subprocess.run(["git", "read-tree", parent], cwd=r.path, env=env, check=True)
        subprocess.run(["git", "update-index", "--cacheinfo", f"100644,{blob},{path}"], cwd=r.path, env=env, check=True)
        tree = subprocess.run(["git", "write-tree"], cwd=r.path, env=env, capture_output=True, text=True,
                              check=True).stdout.strip()
        return r.git("commit-tree", tree, "-p", parent, "-m", message)

    base = commit(r.git("rev-parse", "flow/state"), clean + forged, "mallory")
    theirs = commit(base, clean, "flow: remove an unreadable line")
    ours = commit(base, clean + forged + claim + "\n", "flow: a claim folded")
    # a rejected push's rebase (ADR 0006) passes over their change to a log we touched only when
    # ours holds all of theirs: not when they removed an unreadable line ours still has
    from flowgit import git_state
    from flowgit.ops import statesync
    from flowgit.store.repo import FlowRepo

    theirs_change = git_state.tree_changes(r.path, base, theirs)
    assert [c.path for c in statesync._news(FlowRepo(r.path), ours, {path}, theirs_change)] == [path]
    r.git("push", "-q", "origin", f"{theirs}:refs/heads/flow/state")
    r.git("update-ref", "refs/heads/flow/state", ours)
    res = r.run("sync")
    assert res.code == 0, res.err
    for rev in (r.path, bare):
        text = git(rev, "show", f"flow/state:{path}")
        assert "9007199254740992" not in text and "01JC0000000000000000000010" in text, text
    assert r.ok("status", "P", "--json").json["phase"] == "execute"


def test_a_plan_only_the_default_branch_has_is_known_to_the_claim_refs(tmp_path: Path) -> None:
    """Approvals off, execution follows the default branch: a clone with another branch checked
    out (one without the plan's folder) and no plan recorded in its state still claims the
    plan's tasks, so it must fold their claims too. The plans a clone knows are listed once (a
    ref can name a thousand plans that are not there), the default branch's among them."""
    from helpers import init_repo

    from flowgit.ops import claimrefs
    from flowgit.store.repo import FlowRepo

    r = init_repo(tmp_path / "r", "2")
    r.git("branch", "feature")  # before the plan
    r.plan("P", PLAN)
    r.git("checkout", "-q", "feature")
    repo = FlowRepo(r.path)
    assert "T1" in {t.id for t in repo.load_plan("P").plan.tasks}  # what a claim decides on
    known = claimrefs._Known(repo)
    assert known.missing("P", "T1") is None
    assert "does not have here" in str(known.missing("P", "X9"))
    assert "a plan this clone does not have" in str(known.missing("Z", "T1"))
    assert known.default == {"P"} and known.here is not None and "P" not in known.here


def test_a_sync_that_failed_says_the_made_up_claims_next_time(tmp_path: Path) -> None:
    bare, _ = shared(tmp_path, PLAN)
    mallory, b = clone(bare, tmp_path / "m"), clone(bare, tmp_path / "b")
    tree = mallory.git("rev-parse", "origin/flow/state^{tree}")
    commit = mallory.git("commit-tree", tree, "-m", f"x\n\n{forged('X1', id=ulid(1))}")
    mallory.git("push", "-q", "origin", f"{commit}:refs/heads/{REF}X1")
    b.ok("claim", "P/T1", "--worker", "wb")  # something to push
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'closed for maintenance' >&2\nexit 1\n")
    hook.chmod(0o755)
    import time

    started = time.monotonic()
    res = b.run("sync")  # a hook's refusal is no race: exit 1 at once, in one line (it was 16 tries, exit 4)
    assert time.monotonic() - started < 5
    assert res.code == 1 and "closed for maintenance" in res.err and "hook declined" in res.err, res.err
    assert "\n" not in res.err.strip() and "Traceback" not in res.err
    hook.unlink()
    res = b.run("sync", "--json")
    assert res.code == 0 and len(res.json["unknown_claims"]) == 1 and f"{REF}X1" in res.err, res.err
    res = b.run("sync", "--json")
    assert res.code == 0 and res.json["unknown_claims"] == [] and res.err.strip() == ""


def test_a_claim_ref_named_like_a_command_or_an_option_is_never_read(tmp_path: Path) -> None:
    """A teammate's claim ref whose task part is no id (`$(...)`, `--upload-pack=...`) is no
    claim flowgit writes: `sync` neither reads, folds, pushes on nor repeats its name (which
    would reach a terminal, or a shell the advice is pasted into), and nothing runs."""
    bare, _ = shared(tmp_path, PLAN)
    mallory, b = clone(bare, tmp_path / "m"), clone(bare, tmp_path / "b")
    line = forged("X1", id=ulid(0), plan="P", actor="ghost")
    tree = mallory.git("rev-parse", "origin/flow/state^{tree}")
    commit = mallory.git("commit-tree", tree, "-m", f"x\n\n{line}")
    for name in ("P/$(touch${IFS}pwned)", "P/--upload-pack=touch"):
        mallory.git("push", "-q", "origin", f"{commit}:refs/heads/flow/state-claims/{name}")
    res = b.run("sync", "--json")
    assert res.code == 0 and res.err.strip() == "", res.err
    assert res.json["unknown_claims"] == [] and res.json["held_claims"] == []
    assert logs_of(b.path, "P") == logs_of(bare, "P") and "X1" not in logs_of(b.path, "P")
    assert not (tmp_path / "pwned").exists() and not (b.path / "pwned").exists()
