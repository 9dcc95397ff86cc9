"""Issue 17's generated repositories: a format 2 repository with one plan of N tasks.

The plan (`big`) has N tasks in 10 dependency chains (task i depends on task i-10), with the
phase `execute`. The first half of each chain is done: N/2 tasks carry a log of `claimed`
then `done` on the state branch `flow/state`, fanned out as flowgit writes it
(`.flow/plans/big/events/<2 hex of sha1(task)>/<task>.jsonl`), so 50,000 tasks means 25,000
logs and the next 10 tasks are ready. The code branch has the plan commit and 5 more commits
that each edit the plan (so `diff HEAD~5 HEAD` compares something); the last done tasks name
those commits in their events' `code`.

Every event is made by `flowgit.core.events.make_event`, so it is valid per docs/FORMAT.md.
The state tree is written in one `git fast-import` (seconds at 50,000 tasks), then the private
index flowgit keeps beside the branch (`.git/flowgit/state.index`) is built as the writer
would, so the first write measured is a steady-state one.

Nothing here is committed as data: repositories are generated at bench time and cached under
the temp dir, keyed by N, this generator's version and flowgit's version, so a rerun starts
in seconds. `copy(N, dest)` gives a fresh copy to write into.

    python bench/scale_gen.py 10000 50000         # generate (or find) and print the paths
    python bench/scale_gen.py --fresh 100          # regenerate
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import flowgit  # noqa: E402
from common import ACTOR, Runner, bench_env, flowgit_argv  # noqa: E402

from flowgit.core.events import PLAN_LOG, make_event  # noqa: E402

GEN_VERSION = 1
PLAN = "big"
CHAINS = 10
EDITS = 5  # commits after the plan's, each editing it: `diff HEAD~5 HEAD`
RECENT = 50  # the last done tasks name those commits in their `done`
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the events' clock (leases long expired)


def task_id(i: int) -> str:
    return f"T-{i:05d}"


def bucket(task: str) -> str:
    """As flowgit.store.state.bucket: the fan-out directory of a task's log."""
    return hashlib.sha1(task.encode("utf-8")).hexdigest()[:2]


def plan_yaml(n: int, edits: int = 0) -> str:
    """The plan after `edits` of the EDITS commits: edit k retitles task k*7 and gives it a
    description."""
    lines = [f"id: {PLAN}", "title: Generated scale plan",
             f"goal: Measure flowgit at {n} tasks in {CHAINS} chains", "tasks:"]
    edited = {k * 7: k for k in range(1, edits + 1)}
    for i in range(n):
        tid = task_id(i)
        lines.append(f"  - id: {tid}")
        if i in edited:
            lines.append(f"    title: Generated task number {i}, revised in edit {edited[i]}")
            lines.append(f"    description: Edit {edited[i]} of the plan")
        else:
            lines.append(f"    title: Generated task number {i}")
        if i >= CHAINS:
            lines.append(f"    depends_on: [{task_id(i - CHAINS)}]")
        lines.append(f"    priority: {('high', 'medium', 'low')[i % 3]}")
        lines.append(f"    estimate: {('30m', '1h', '2h', '4h')[i % 4]}")
    return "\n".join(lines) + "\n"


def cache_root() -> Path:
    return Path(os.environ.get("FLOWGIT_SCALE_CACHE") or Path(tempfile.gettempdir()) / "flowgit-scale")


def key(n: int) -> str:
    return f"n{n}-g{GEN_VERSION}-fg{flowgit.__version__}"


def _fmt(ts: float) -> str:
    from flowgit.core.events import format_time
    return format_time(ts)


def _blob(data: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(data), data)


def _state_stream(n: int, codes: list[str], plan_commit: str) -> bytes:
    """The fast-import stream of the state branch's one commit: the plan log and N/2 task logs."""
    plan_events = [
        make_event("plan.created", PLAN, None, ACTOR, 1, {"title": "Generated scale plan", "tasks": n,
                                                           "parent": None, "code": plan_commit}, T0),
        make_event("plan.phase", PLAN, None, ACTOR, 2, {
            "to": "plan_review", "reason": "submitted", "from": "draft", "code": plan_commit}, T0 + 1),
        make_event("plan.phase", PLAN, None, ACTOR, 3, {
            "to": "execute", "reason": "no approval required", "from": "plan_review",
            "base_commit": plan_commit, "code": plan_commit}, T0 + 2),
    ]
    out = [b"commit refs/heads/flow/state\n",
           b"committer Bench <%s> %d +0000\n" % (ACTOR.encode(), int(T0)),
           _blob(f"flow({PLAN}): generated state, {n // 2} tasks done".encode()),
           f"M 100644 inline .flow/plans/{PLAN}/events/{PLAN_LOG}.jsonl\n".encode(),
           _blob("".join(e.to_line() for e in plan_events).encode())]
    done = n // 2
    for i in range(done):
        tid = task_id(i)
        at = T0 + 100 + i
        recent = i - (done - RECENT)
        code = codes[recent * len(codes) // RECENT] if recent >= 0 else plan_commit
        evs = [make_event("task.claimed", PLAN, tid, ACTOR, 1, {
                   "lease_until": _fmt(at + 900), "lease_seconds": 900.0, "code": code}, at),
               make_event("task.done", PLAN, tid, ACTOR, 2, {"code": code}, at + 0.5)]
        out.append(f"M 100644 inline .flow/plans/{PLAN}/events/{bucket(tid)}/{tid}.jsonl\n".encode())
        out.append(_blob("".join(e.to_line() for e in evs).encode()))
    out.append(b"\n")
    return b"".join(out)


def generate(n: int, dest: Path) -> dict[str, Any]:
    """Write the repository of N tasks at `dest` (which must not exist)."""
    started = time.perf_counter()
    dest.mkdir(parents=True)
    home = dest.parent / f".home-{dest.name}"
    home.mkdir(exist_ok=True)
    r = Runner(dest, bench_env(home))
    r.git("init", "-q")
    r.git("config", "user.email", ACTOR)
    r.git("config", "user.name", "Bench")
    r.git("config", "commit.gpgsign", "false")
    r.git("config", "gc.auto", "0")
    (dest / "README.md").write_text("scale bench repo\n")
    (dest / "src").mkdir()
    (dest / "src" / "work.txt").write_text("line 0\n")
    r.git("add", "-A")
    r.git("commit", "-q", "--no-verify", "-m", "initial")
    r.run([*flowgit_argv(), "init"])  # format 2, the default
    plan_file = dest / ".flow" / "plans" / PLAN / "plan.yaml"
    plan_file.parent.mkdir(parents=True)
    plan_file.write_text(plan_yaml(n))
    r.git("add", "--", str(plan_file))
    r.git("commit", "-q", "--no-verify", "-m", f"flow({PLAN}): created ({n} tasks)")
    plan_commit = r.head()
    codes = []
    for k in range(1, EDITS + 1):
        plan_file.write_text(plan_yaml(n, k))
        r.git("commit", "-q", "--no-verify", "-am", f"flow({PLAN}): edit {k}")
        codes.append(r.head())
    proc = subprocess.run(["git", "fast-import", "--quiet", "--done"], cwd=dest, env=r.env,
                          input=_state_stream(n, codes, plan_commit) + b"done\n",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"git fast-import exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    state = r.git("rev-parse", "refs/heads/flow/state").stdout.decode().strip()
    # the private index flowgit keeps in step with the branch (store/state.py)
    folder = dest / ".git" / "flowgit"
    folder.mkdir(exist_ok=True)
    r.run(["git", "read-tree", state], env={**r.env, "GIT_INDEX_FILE": str(folder / "state.index")})
    (folder / "state.index.base").write_text(state)
    for kind in ("cache", "plans"):  # the derived cache (ADR 0012): the copy starts cold
        shutil.rmtree(folder / kind, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    return {"tasks": n, "logs": n // 2, "seconds": round(time.perf_counter() - started, 2),
            "head": codes[-1], "state": state}


def repo_for(n: int, fresh: bool = False) -> Path:
    """The cached generated repository of N tasks (generated when missing). Read it only:
    `copy` one to write into."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / key(n)
    done = root / f"{key(n)}.complete"
    if fresh or not done.exists():
        shutil.rmtree(path, ignore_errors=True)
        done.unlink(missing_ok=True)
        info = generate(n, path)
        done.write_text(repr(info) + "\n")
    return path


def copy(n: int, dest: Path) -> Path:
    """A fresh copy of the repository of N tasks at `dest`, to write into."""
    src = repo_for(n)
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    return dest


def main() -> int:
    p = argparse.ArgumentParser(description="Generate (or find) issue 17's scale repositories.")
    p.add_argument("sizes", nargs="*", type=int, default=[100, 10_000, 50_000])
    p.add_argument("--fresh", action="store_true", help="regenerate even when cached")
    args = p.parse_args()
    for n in args.sizes:
        t0 = time.perf_counter()
        path = repo_for(n, args.fresh)
        print(f"{n:>7} tasks: {path} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
