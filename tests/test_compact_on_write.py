"""Compaction at write time (format 2): without `flowgit watch`, a transition that takes a log
past `compact.threshold` compacts it in the same state commit; the snapshot names the state
commit it folded; the state is the fold of the uncompacted history; a merge that brings an
event the snapshot did not see rebuilds the log from history, and the next write snapshots it
again."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import Repo
from test_state_branch import clone, executing, shared, state_repo

PLAN = "id: P\ntitle: long\ngoal: long logs\ntasks:\n  - {id: T1, title: one}\n  - {id: T2, title: two}\n"


def log_lines(r: Repo, task: str, rev: str = "flow/state") -> list[dict[str, Any]]:
    from flowgit.store.state import log_path

    text = r.git("show", f"{rev}:{log_path('P', task)}")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def folded(events: list[dict[str, Any]]) -> dict[str, Any]:
    from flowgit.core.events import canonical, parse_log
    from flowgit.core.fold import reduce_task

    data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events).encode()
    record = reduce_task(canonical(parse_log(data, "test").events)).to_dict()
    return {k: v for k, v in record.items() if k not in ("code",)}


def full_history(r: Repo, task: str) -> list[dict[str, Any]]:
    """Every event the task's log ever held on the state branch, snapshots left out."""
    out = r.ok("events", "P", task, "--from-git", "--json").json
    events = out["events"] if isinstance(out, dict) else out
    return [e for e in events if not e["type"].endswith(".snapshot")]


def test_heartbeats_past_the_threshold_without_a_watcher_compact_the_log_in_the_transition(tmp_path: Path) -> None:
    r = state_repo(tmp_path / "repo")
    from flowgit.store.repo import FlowRepo

    # format 2 compacts by default, at 500 events; the heartbeats below cross a lower threshold
    # (the same code path: 600 heartbeats at the default proved nothing more, in 20 s)
    assert FlowRepo(r.path).config.compact_threshold == 500
    config = r.path / ".flow" / "config.yaml"
    config.write_text(config.read_text() + "compact:\n  threshold: 50\n  keep: 10\n")
    r.git("commit", "-qam", "compact at 50 events")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.ok("claim", "P/T1", "--worker", "w1")
    for _ in range(60):
        r.ok("heartbeat", "P/T1", "--worker", "w1")
    lines = log_lines(r, "T1")
    assert len(lines) <= 50, len(lines)  # never past the threshold
    assert lines[0]["type"] == "task.snapshot"
    # the compaction went in with a heartbeat, in one commit: the first log with a snapshot
    from flowgit.store.state import log_path

    first = r.git("log", "--reverse", "--format=%H", "-G", "task.snapshot", "flow/state", "--",
                  log_path("P", "T1")).split()[0]
    assert r.git("log", "-1", "--format=%s", first) == "flow(P/T1): heartbeat"
    snap = log_lines(r, "T1", first)[0]
    assert snap["data"]["commit"] == r.git("rev-parse", f"{first}^")  # the state commit it folded
    # the state is the fold of the whole, uncompacted history
    history = full_history(r, "T1")
    assert len(history) == 61
    assert folded(lines) == folded(history)
    row = next(t for t in r.ok("status", "P", "--json").json["tasks"] if t["id"] == "T1")
    assert row["state"] == "claimed" and row["worker"] == "w1"
    assert r.ok("validate").code == 0


def test_a_merge_bringing_an_unseen_event_rebuilds_from_history_then_compacts_again(tmp_path: Path) -> None:
    bare, seed = shared(tmp_path, PLAN)
    config = seed.path / ".flow" / "config.yaml"
    config.write_text(config.read_text() + "compact:\n  threshold: 30\n  keep: 5\n")
    seed.git("commit", "-qam", "compact early")
    seed.ok("claim", "P/T1", "--worker", "w1")
    seed.git("push", "-q", "origin", "main", "flow/state")
    a, b = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    for _ in range(40):
        a.ok("heartbeat", "P/T1", "--worker", "w1")
    assert log_lines(a, "T1")[0]["type"] == "task.snapshot"
    a.ok("sync")
    # B, on the state before A's snapshot, records an event the snapshot never saw
    b.ok("heartbeat", "P/T1", "--worker", "w1")
    unseen = log_lines(b, "T1")[-1]["id"]
    b.ok("sync")
    merged = log_lines(b, "T1")
    assert not any(e["type"] == "task.snapshot" for e in merged)  # rebuilt from history
    assert unseen in {e["id"] for e in merged}
    assert folded(merged) == folded(full_history(b, "T1"))
    assert len(merged) == 42  # the claim, A's 40 heartbeats and B's one, once each
    # the next write past the threshold snapshots it again, naming the merge it folded
    tip = b.git("rev-parse", "flow/state")
    b.ok("heartbeat", "P/T1", "--worker", "w1")
    again = log_lines(b, "T1")
    assert again[0]["type"] == "task.snapshot" and again[0]["data"]["commit"] == tip
    assert len(again) <= 30
    assert folded(again) == folded(full_history(b, "T1"))


def test_a_log_with_an_unreadable_line_is_not_compacted_and_the_write_goes_in(tmp_path: Path) -> None:
    from test_state_branch import forge_state

    from flowgit.store.state import log_path

    r = executing(tmp_path / "repo", PLAN)
    config = r.path / ".flow" / "config.yaml"
    config.write_text(config.read_text() + "compact:\n  threshold: 10\n  keep: 2\n")
    r.git("commit", "-qam", "compact early")
    r.ok("claim", "P/T2", "--worker", "w1")
    for _ in range(5):
        r.ok("heartbeat", "P/T2", "--worker", "w1")
    text = r.git("show", f"flow/state:{log_path('P', 'T2')}") + "\n"
    forge_state(r, tmp_path, log_path("P", "T2"), text + "not json\n" * 6, "six broken lines")
    res = r.run("heartbeat", "P/T2", "--worker", "w1")
    # the task is held by the unreadable lines (as before); nothing was compacted
    assert not any(line.startswith('{"id"') and "task.snapshot" in line
                   for line in r.git("show", f"flow/state:{log_path('P', 'T2')}").splitlines())
    assert res.code in (0, 1) and "Traceback" not in res.err


@pytest.mark.format1
def test_format_1_still_compacts_only_when_asked(repo: Repo) -> None:
    config = repo.path / ".flow" / "config.yaml"
    config.write_text(config.read_text() + "compact:\n  threshold: 10\n  keep: 2\n")
    repo.git("commit", "-qam", "threshold")
    repo.plan("P", PLAN)
    repo.ok("submit", "P")
    repo.ok("claim", "P/T1", "--worker", "w1")
    for _ in range(12):
        repo.ok("heartbeat", "P/T1", "--worker", "w1")
    text = (repo.path / ".flow" / "plans" / "P" / "events" / "T1.jsonl").read_text()
    assert "task.snapshot" not in text and len(text.splitlines()) == 13
