"""Format 2's smaller gaps (issue 14): `migrate` hashes only the logs it changes, in one batch;
`sync` refuses a remote state with no history in common unless told; a state log too large to
read is refused by name before it is read; `validate` reports symlinks and submodules in the
state tree."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import Repo, init_repo

MANY = "id: P\ntitle: many\ngoal: many logs\ntasks:\n" + "".join(
    f"  - id: T{i}\n    title: task {i}\n" for i in range(1, 31))


def test_migrate_reuses_the_blobs_the_logs_have_and_hashes_the_rest_in_one_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowgit.core.events import make_event
    from flowgit.store.imports import TOMBSTONE
    from flowgit.store.state import log_path

    r = init_repo(tmp_path / "repo", "1")
    r.plan("P", MANY)
    r.ok("submit", "P")
    for i in range(1, 31):
        r.ok("claim", f"P/T{i}", "--worker", "w1")
    events = r.path / ".flow/plans/P/events"
    stale = make_event(TOMBSTONE, "P", None, "old", 0, {"state_branch": "flow/state"}, 0.0).to_line()
    with open(events / "T3.jsonl", "a") as f:  # an old migration's tombstone, merged in
        f.write(stale)
    r.git("commit", "-qam", "a tombstone in a task log", "--no-verify")
    head = r.git("rev-parse", "HEAD")
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    r.ok("migrate")
    monkeypatch.delenv("GIT_TRACE")
    hashing = [line for line in trace.read_text().splitlines() if "built-in: git" in line and "hash-object" in line]
    assert len(hashing) <= 3, hashing  # the tombstoned log, the code branch's files: not one per log
    for i in (1, 2, 30):
        assert r.git("rev-parse", f"flow/state:{log_path('P', f'T{i}')}") == \
            r.git("rev-parse", f"{head}:.flow/plans/P/events/T{i}.jsonl")
    moved = r.git("show", f"flow/state:{log_path('P', 'T3')}")
    assert TOMBSTONE not in moved and len(moved.splitlines()) == 1
    assert {t["state"] for t in r.ok("status", "P", "--json").json["tasks"]} == {"claimed"}
    assert json.loads(moved)["type"] == "task.claimed"


def test_sync_refuses_a_remote_state_with_no_history_in_common(tmp_path: Path) -> None:
    from test_state_branch import executing

    plan = "id: P\ntitle: p\ngoal: g\ntasks:\n  - {id: T1, title: one}\n  - {id: T2, title: two}\n"
    ours = executing(tmp_path / "ours", plan)
    ours.ok("claim", "P/T1", "--worker", "w1")
    other = executing(tmp_path / "other", plan)  # another repository's state, never shared
    other.ok("claim", "P/T2", "--worker", "w2")
    bare = tmp_path / "remote.git"
    import subprocess

    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    other.git("remote", "add", "origin", str(bare))
    other.git("push", "-q", "origin", "flow/state")
    ours.git("remote", "add", "origin", str(bare))
    before = ours.git("rev-parse", "flow/state")
    for args in (("sync",), ("claim", "P/T2", "--sync", "--worker", "w1")):
        res = ours.run(*args, "--json")
        assert res.code == 1, (args, res.out, res.err)
        error = res.json["error"]
        assert error["code"] == "unrelated_state" and "--allow-unrelated" in error["message"]
        assert ours.git("rev-parse", "flow/state") == before  # nothing merged, nothing pushed
        assert ours.run(*args).err.count("\n") <= 1
    assert git_ok(bare, "rev-parse", "flow/state") == other.git("rev-parse", "flow/state")
    merged = ours.ok("sync", "--allow-unrelated", "--json").json
    assert merged["merge"] == "merged"
    states = {t["id"]: t["state"] for t in ours.ok("status", "P", "--json").json["tasks"]}
    assert states == {"T1": "claimed", "T2": "claimed"}


def git_ok(path: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, check=True).stdout.strip()


def _forge_entries(r: Repo, tmp_path: Path, entries: list[tuple[str, str, str]]) -> None:
    """A state commit adding index entries (mode, object, path) by hand, as a hostile tool."""
    import os
    import subprocess

    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "forge-index")}
    subprocess.run(["git", "read-tree", "flow/state"], cwd=r.path, env=env, check=True)
    for mode, obj, path in entries:
        subprocess.run(["git", "update-index", "--add", "--cacheinfo", f"{mode},{obj},{path}"],
                       cwd=r.path, env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=r.path, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    r.git("update-ref", "refs/heads/flow/state", r.git("commit-tree", tree, "-p", "flow/state", "-m", "forged"))


def test_validate_reports_symlinks_and_submodules_in_the_state_tree(tmp_path: Path) -> None:
    from test_state_branch import executing

    from flowgit.store.state import log_path

    r = executing(tmp_path / "repo", "id: P\ntitle: p\ngoal: g\ntasks:\n  - {id: T1, title: one}\n")
    r.ok("claim", "P/T1", "--worker", "w1")
    assert r.ok("validate", "--json").json["ok"] is True
    link = r.git("rev-parse", f"flow/state:{log_path('P', 'T1')}")
    head = r.git("rev-parse", "HEAD")
    _forge_entries(r, tmp_path, [("120000", link, ".flow/plans/P/events/_link.jsonl"),
                                 ("160000", head, ".flow/plans/P/events/sub")])
    res = r.run("validate")
    assert res.code == 1, res.out
    errors = res.out + res.err
    assert "flow/state:.flow/plans/P/events/_link.jsonl: a symlink" in errors
    assert "flow/state:.flow/plans/P/events/sub: a submodule" in errors


def test_a_state_log_above_the_size_limit_is_refused_by_path_before_it_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_state_branch import executing

    from flowgit.core import storage
    from flowgit.store.state import log_path

    r = executing(tmp_path / "repo", "id: P\ntitle: p\ngoal: g\ntasks:\n  - {id: T1, title: one}\n"
                                     "  - {id: T2, title: two}\n")
    r.ok("claim", "P/T1", "--worker", "w1")
    line = r.git("show", f"flow/state:{log_path('P', 'T1')}").splitlines()[0]
    import subprocess

    big = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=r.path, check=True, capture_output=True,
                         input=(line.replace('"T1"', '"T2"') + "\n") * 200, text=True).stdout.strip()
    _forge_entries(r, tmp_path, [("100644", big, log_path("P", "T2"))])
    monkeypatch.setattr(storage, "MAX_LOG_BYTES", 20_000)
    for args in (("status", "P"), ("claim", "P/T2", "--worker", "w2")):
        res = r.run(*args)
        assert res.code == 1, (args, res.out)
        assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
        assert f"flow/state:{log_path('P', 'T2')}" in res.err and "limit" in res.err


def test_a_sync_bringing_a_state_log_above_the_limit_is_refused_by_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from test_state_branch import clone, shared

    from flowgit.core import storage
    from flowgit.store.state import log_path

    plan = "id: P\ntitle: p\ngoal: g\ntasks:\n  - {id: T1, title: one}\n  - {id: T2, title: two}\n"
    bare, seed = shared(tmp_path, plan)
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    a.ok("claim", "P/T1", "--sync", "--worker", "wa")
    a.ok("sync")  # the claim was won on its claim ref (ADR 0013): now on flow/state too
    b.ok("claim", "P/T2", "--worker", "wb")  # local, unpushed: the sync must merge
    a.git("fetch", "-q", "origin", "flow/state:flow/state")
    line = a.git("show", f"flow/state:{log_path('P', 'T1')}").splitlines()[0]
    big = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=a.path, check=True, capture_output=True,
                         input=(line + "\n") * 200, text=True).stdout.strip()
    _forge_entries(a, tmp_path, [("100644", big, log_path("P", "T1"))])
    a.git("push", "-q", "origin", "flow/state")
    before = b.git("rev-parse", "flow/state")
    monkeypatch.setattr(storage, "MAX_LOG_BYTES", 20_000)
    res = b.run("sync")
    assert res.code == 1 and len(res.err.strip().splitlines()) == 1, res.err
    assert f"flow/state:{log_path('P', 'T1')}" in res.err and "limit" in res.err
    assert b.git("rev-parse", "flow/state") == before
