"""Format 2's smaller gaps (issue 14): `migrate` hashes only the logs it changes, in one batch;
`sync` refuses a remote state with no history in common unless told; a state log too large to
read is refused by name before it is read; `validate` reports symlinks and submodules in the
state tree."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import Repo, make_git_repo

MANY = "id: P\ntitle: many\ngoal: many logs\ntasks:\n" + "".join(
    f"  - id: T{i}\n    title: task {i}\n" for i in range(1, 31))


def test_migrate_reuses_the_blobs_the_logs_have_and_hashes_the_rest_in_one_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowgit.core.events import make_event
    from flowgit.store.imports import TOMBSTONE
    from flowgit.store.state import log_path

    r = Repo(make_git_repo(tmp_path / "repo"))
    r.ok("init", "--format", "1")
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
