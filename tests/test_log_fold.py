"""A clean task log is folded in one pass (core/logfold.py, issue 17): on generated logs, clean
and broken (blank, torn, refused, foreign, repeated and unknown lines), the record and what
the read found are those of `fold_log(parse_log(...))`, and the one-pass fold is taken for
every clean log; a log with a bad line still holds its task in `status`, in the same words."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import Repo, make_git_repo

from flowgit.core.events import make_event, parse_log
from flowgit.core.fold import fold_log
from flowgit.core.logfold import fold_clean, fold_task_log

T0 = 1_767_225_600.0
PLAN, TASK = "big", "T-1"


def line(kind: str, actor: str, clock: int, data: dict[str, Any], task: str = TASK, plan: str = PLAN) -> bytes:
    return make_event(kind, plan, task, actor, clock, data, T0 + clock).to_line().rstrip("\n").encode()


def clean_log(rng: random.Random) -> list[bytes]:
    out = []
    for clock in range(1, rng.randint(1, 7)):
        actor = rng.choice(["w1", "w2"])
        kind = rng.choice(["task.claimed", "task.started", "task.heartbeat", "task.done", "task.failed",
                           "task.released", "task.note", "task.skipped", "task.retried"])
        data: dict[str, Any] = {}
        if kind in ("task.claimed", "task.heartbeat", "task.started"):
            data = {"lease_until": "2026-01-01T00:15:00.000000Z", "lease_seconds": 900.0}
        elif kind == "task.failed":
            data = {"error": "boom"}
        elif kind == "task.note":
            data = {"text": "a note"}
        elif kind == "task.done":
            data = {"note": "ok", "code": "a" * 40}
        out.append(line(kind, actor, clock, data))
    return out


def broken(rng: random.Random, lines: list[bytes]) -> list[bytes]:
    lines = list(lines)
    k = rng.randrange(len(lines) + 1)
    roll = rng.random()
    if roll < 0.15:
        lines.insert(k, rng.choice([b"", b"   ", b"\t"]))
    elif roll < 0.3:
        lines.insert(k, rng.choice([b"{not json", b"[]", b"3", b'{"id": 1}', b"[" * 150 + b"]" * 150]))
    elif roll < 0.45:
        lines.insert(k, line("task.note", "w1", 9, {"text": "x"}, task="T-2"))
    elif roll < 0.55:
        lines.insert(k, line("task.note", "w1", 9, {"text": "x"}, plan="other"))
    elif roll < 0.7 and lines:
        lines.insert(k, rng.choice(lines))  # the same event twice
    elif roll < 0.8:
        obj = json.loads(line("task.note", "w1", 9, {"text": "x"}))
        obj["type"] = rng.choice(["task.future_thing", "plan.phase", "Task.Bad"])
        lines.insert(k, json.dumps(obj).encode())
    elif roll < 0.9 and lines:
        lines[k - 1] = lines[k - 1] + b"\r"
    else:
        obj = json.loads(line("task.claimed", "w1", 9, {"lease_until": "soon"}))
        lines.insert(k, json.dumps(obj).encode())
    return lines


@pytest.mark.parametrize("seed", range(8))
def test_one_pass_folds_as_the_long_way(seed: int) -> None:
    rng = random.Random(seed)
    fast = 0
    for _ in range(300):
        lines = clean_log(rng)
        if rng.random() < 0.5:
            lines = broken(rng, lines)
        data = b"".join(x + b"\n" for x in lines)
        if rng.random() < 0.1 and data:
            data = data[:-rng.randint(1, 5)]  # torn at the end
        slow = parse_log(data, f"flow/state:{TASK}", PLAN, TASK)
        rec, read = fold_task_log(data, PLAN, TASK, lambda p, t: f"flow/state:{t}")
        assert rec == fold_log(slow), data
        assert (read.bad, read.torn) == (slow.bad, slow.torn), data
        if fold_clean(data, PLAN, TASK) is not None:
            fast += 1
            assert not slow.bad and not slow.torn and not slow.unknown
        elif not slow.bad and not slow.torn and not slow.unknown and data and \
                len({e.id for e in slow.events}) == len(data.splitlines()):
            pytest.fail(f"a clean log took the long way: {data!r}")
    assert fast > 100


def test_a_bad_line_still_holds_its_task_in_status(tmp_path: Path) -> None:
    """Format 2: a task log with a refused line, beside clean ones, read cold: the task is
    held and the line named, the clean ones fold as before."""
    repo = Repo(make_git_repo(tmp_path / "repo"))
    repo.ok("init")
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - id: A\n    title: a\n  - id: B\n    title: b\n")
    repo.ok("claim", "p/A", "--worker", "w1")
    repo.ok("done", "p/A", "--worker", "w1")
    repo.ok("claim", "p/B", "--worker", "w1")
    before = repo.ok("--json", "status", "p").json
    assert {t["id"]: t["state"] for t in before["tasks"]} == {"A": "done", "B": "claimed"}
    tree = repo.git("ls-tree", "-r", "refs/heads/flow/state")
    path = next(row.split("\t")[1] for row in tree.splitlines() if row.endswith("/B.jsonl"))
    blob = repo.git("cat-file", "-p", f"refs/heads/flow/state:{path}") + "\n{not json\n"

    def git(*args: str, **kw: Any) -> str:
        env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "state.index")}
        return subprocess.run(["git", *args], cwd=repo.path, env=env, capture_output=True, text=True,
                              check=True, **kw).stdout.strip()

    new_blob = git("hash-object", "-w", "--stdin", input=blob)
    git("read-tree", "refs/heads/flow/state")
    git("update-index", "--cacheinfo", f"100644,{new_blob},{path}")
    commit = git("commit-tree", git("write-tree"), "-p", "refs/heads/flow/state", "-m", "a bad line")
    repo.git("update-ref", "refs/heads/flow/state", commit)
    for cache in ("cache", "plans"):
        shutil.rmtree(repo.path / ".git" / "flowgit" / cache, ignore_errors=True)
    res = repo.run("--json", "status", "p")
    states = {t["id"]: t["state"] for t in res.json["tasks"]}
    assert states["A"] == "done"
    assert states["B"] != "ready"  # held, never handed out again
    assert f"{path}:2" in res.err and "not a JSON event line" in res.err
