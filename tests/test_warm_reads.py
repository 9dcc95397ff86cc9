"""Warm reads at any size (issue 17): in format 2 a plan whose state nobody moved is answered
from its kept evaluation without reading the task logs' records, and `status PLAN --json` from
its kept output. Each answer equals the one with the cache off, through writes to another
plan (the state branch moves, this plan's logs do not), writes to this plan, the clock
passing a lease, and a plan edit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import init_repo

PLAN = """id: {id}
title: Plan {id}
tasks:
  - id: a
    title: First
  - id: b
    title: Second
    depends_on: [a]
    executor: shell
  - id: c
    title: Third
  - id: d
    title: Fourth
    depends_on: [c]
"""
READS = (("status", "p", "--json"), ("next", "p", "--json"), ("status", "--json"), ("status", "p"),
         ("task", "show", "p/b", "--json"), ("graph", "p", "--json"))


def fg(root: Path, *args: str, at: float, cache: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWGIT_")}
    env.update({"FLOWGIT_TESTING": "1", "FLOWGIT_TEST_NOW_OFFSET": str(at - time.time()),
                "FLOWGIT_ACTOR": "w@example.com"})
    if not cache:
        env["FLOWGIT_NO_CACHE"] = "1"
    proc = subprocess.run([sys.executable, "-m", "flowgit", "--repo", str(root), *args], env=env,
                          capture_output=True, text=True, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def agree(root: Path, at: float, times: int = 2) -> dict[str, str]:
    truth = {" ".join(a): fg(root, *a, at=at, cache=False) for a in READS}
    for _ in range(times):  # the first may evaluate and keep; the next ones read what was kept
        for args in READS:
            assert fg(root, *args, at=at) == truth[" ".join(args)], args
    return truth


def test_warm_reads_agree_with_the_cache_off_in_format_2(tmp_path: Path) -> None:
    r = init_repo(tmp_path / "repo", "2")
    for plan in ("p", "q"):
        r.plan(plan, PLAN.format(id=plan))
    now = time.time()
    first = agree(r.path, now)
    cache = r.path / ".git" / "flowgit" / "cache"
    assert (cache / "p@status.marshal").is_file() and (cache / "p@eval.marshal").is_file()

    # another plan's transition moves the state branch, not this plan's logs
    assert fg(r.path, "claim", "q/a", "--lease", "60", at=now).startswith("exit 0")
    moved = agree(r.path, now)
    assert all(moved[k] == first[k] for k in first if " p" in k)

    # this plan's transitions
    assert fg(r.path, "claim", "p/a", "--lease", "60", at=now).startswith("exit 0")
    claimed = agree(r.path, now)
    assert claimed["status p --json"] != first["status p --json"]
    assert fg(r.path, "done", "p/a", at=now).startswith("exit 0")
    assert fg(r.path, "claim", "p/c", "--lease", "30", at=now).startswith("exit 0")
    done = agree(r.path, now)
    rows = {t["id"]: t for t in json.loads(done["status p --json"].split("\n", 1)[1])["tasks"]}
    assert rows["a"]["state"] == "done" and rows["c"]["state"] == "claimed"

    # the clock passes c's lease: the kept rows are not the state any more
    later = agree(r.path, now + 120)
    rows = {t["id"]: t for t in json.loads(later["status p --json"].split("\n", 1)[1])["tasks"]}
    assert rows["c"].get("interrupted") is True
    assert agree(r.path, now) == done  # and a clock that goes back is never answered from later

    # a plan edit: the kept output was made from another plan
    assert fg(r.path, "task", "add", "p", "e", "--title", "Fifth", "--dep", "d", at=now).startswith("exit 0")
    edited = agree(r.path, now)
    assert '"e"' in edited["status p --json"]


def test_a_kept_status_of_another_shape_is_never_used(tmp_path: Path) -> None:
    """A kept output that is not what this version writes (a part missing, not text) is made
    again, never printed nor a traceback."""
    import marshal

    r = init_repo(tmp_path / "repo", "2")
    r.plan("p", PLAN.format(id="p"))
    now = time.time()
    truth = agree(r.path, now, times=1)["status p --json"]
    path = r.path / ".git" / "flowgit" / "cache" / "p@status.marshal"
    raw = path.read_bytes()
    header, body = raw.split(b"\n", 1)
    entry = marshal.loads(body)
    for broken in ({**entry["parts"], "tasks": 7}, {k: v for k, v in entry["parts"].items() if k != "counts"}):
        path.write_bytes(header + b"\n" + marshal.dumps({"key": entry["key"], "parts": broken}))
        assert fg(r.path, "status", "p", "--json", at=now) == truth
    path.write_bytes(raw[: len(raw) // 2])  # cut short
    assert fg(r.path, "status", "p", "--json", at=now) == truth


def test_a_task_read_alone_from_its_bucket_is_the_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An indexed plan's `task(id)` reads one bucket of rows (store/planindex.py): the same task
    as the plan parsed from its file, None for an id it lacks, and a bucket cut short is
    written again."""
    from flowgit.store.repo import FlowRepo

    r = init_repo(tmp_path / "repo", "2")
    r.plan("p", PLAN.format(id="p"))
    ids = ("a", "b", "c", "d", "zz")

    def tasks() -> list[object]:
        return [FlowRepo(r.path).load_plan("p").plan.task(t) for t in ids]  # a fresh process each

    monkeypatch.setenv("FLOWGIT_NO_CACHE", "1")
    truth = tasks()
    monkeypatch.delenv("FLOWGIT_NO_CACHE")
    r.ok("status", "p")  # the index
    for _ in range(2):
        repo = FlowRepo(r.path)
        assert [repo.load_plan("p").plan.task(t) for t in ids] == truth
        repo.save_cache()
    buckets = sorted((r.path / ".git" / "flowgit" / "plans").glob("p@task*.marshal"))
    assert len(buckets) == 64 and truth[-1] is None
    for path in buckets:
        path.write_bytes(path.read_bytes()[:-3])
    assert tasks() == truth
