"""Issue 6 speed: what `flowgit run` adds per task, and what 4 workers buy over 1.

A config executor `noop` (`argv: [true]`) and a plan of independent tasks (`executor: noop`,
no dependencies, phase execute, no history), in a fresh repository for every run. Measures,
as whole processes (spawn to exit):
  1. `flowgit run PLAN -n 1` on 30 tasks: per-task cost = wall / tasks (median over runs); the
     fixed cost of one `run` (the same command again on the finished plan: nothing to do) and
     the marginal per-task cost (wall - fixed) / tasks; against the plain git a task's
     worktree life costs: `git worktree add -B BRANCH`, `git merge --no-ff`, `git worktree
     remove`, `git branch -D`, one process after the other, per task,
  2. `flowgit run PLAN -n 4` against `-n 1` on 100 tasks (fresh repositories, interleaved):
     the ratio of wall times.
Every run must finish with every task done, once, and nothing left uncommitted or worktree'd.

Run: python bench/bench_run.py [--quick] [--json FILE]
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    PLAN,
    Row,
    Runner,
    Sample,
    Workspace,
    base_parser,
    cpu,
    lo,
    loadavg,
    machine,
    median,
    ms,
    print_table,
    progress,
    task_id,
    wall,
    write_json,
    write_plan,
)

PER_TASK_TASKS = 30
PARALLEL_TASKS = 100
WORKERS = 4

TARGET_PER_TASK = 0.300
TARGET_PARALLEL = 0.5

NOOP_CONFIG = "executors:\n  noop:\n    argv: [\"true\"]\n    timeout: 60\n"


def independent_plan(n: int) -> str:
    lines = [f"id: {PLAN}", "title: No-op run benchmark", "goal: Measure what flowgit run adds per task",
             "executor: noop", "tasks:"]
    for i in range(n):
        lines += [f"  - id: {task_id(i)}", f"    title: No-op task {i}", "    priority: medium"]
    return "\n".join(lines) + "\n"


def noop_repo(ws: Workspace, name: str, n: int) -> Runner:
    """A fresh repository: the no-op executor in config.yaml, a plan of n independent tasks in
    phase execute, committed."""
    r = ws.new_repo(name)
    cfg = r.repo / ".flow" / "config.yaml"
    text = cfg.read_text()
    assert "executors: {}\n" in text, text
    cfg.write_text(text.replace("executors: {}\n", NOOP_CONFIG))
    write_plan(r, n, 0, commit=False)  # the plan log: created, phase execute
    (r.repo / ".flow" / "plans" / PLAN / "plan.yaml").write_text(independent_plan(n))
    r.git("add", "-A")
    r.git("commit", "-q", "--no-verify", "-m", f"bench: {n} no-op tasks")
    return r


def check_all_done(r: Runner, n: int) -> list[str]:
    problems = []
    status = json.loads(r.fg("status", PLAN, "--json").stdout)
    if status["counts"].get("done") != n:
        problems.append(f"{status['counts']} of {n} tasks")
    evdir = r.repo / ".flow" / "plans" / PLAN / "events"
    for i in range(n):
        log = evdir / f"{task_id(i)}.jsonl"
        types = [json.loads(line)["type"] for line in log.read_text().splitlines()] if log.exists() else []
        if types.count("task.claimed") != 1 or types.count("task.done") != 1:
            problems.append(f"{log.name}: {types}")
            break
    dirty = r.git("status", "--porcelain", "--untracked-files=no").stdout.decode().strip()
    if dirty:
        problems.append(f"uncommitted: {dirty[:200]}")
    worktrees = r.git("worktree", "list", "--porcelain").stdout.decode().count("worktree ")
    if worktrees != 1:
        problems.append(f"{worktrees - 1} worktree(s) left")
    return problems


def timed_lines(r: Runner, argv: list[str]) -> tuple[Sample, list[tuple[float, str]]]:
    """Like Runner.timed, but reads stdout as it comes: each line with the seconds since spawn."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=r.repo, env=r.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines = [(time.perf_counter() - t0, raw.decode(errors="replace").rstrip()) for raw in proc.stdout]
    proc.stdout.close()
    _, status, ru = os.wait4(proc.pid, 0)
    wall_s = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {rc}: {lines[-5:]}")
    return Sample(wall_s, ru.ru_utime + ru.ru_stime, rc), lines


def done_gaps(lines: list[tuple[float, str]]) -> list[float]:
    """Seconds between consecutive `... done:` lines (with one worker: the time per task)."""
    at = [t for t, line in lines if " done: " in line]
    return [b - a for a, b in itertools.pairwise(at)]


def timed_run(ws: Workspace, name: str, n: int, workers: int) -> tuple[Sample, Runner, list[float]]:
    r = noop_repo(ws, name, n)
    r.fg("status", PLAN)  # the same warm start every run would have in a used repository
    s, lines = timed_lines(r, [*r.flowgit, "run", PLAN, "-n", str(workers)])
    return s, r, done_gaps(lines)


def plain_git_task(r: Runner, k: int) -> Sample:
    """What the worktree life of one task costs in git alone (no executor, no events)."""
    wt = r.repo.parent / f"plain-wt-{k}"
    branch = f"plain/{k}"
    t0 = time.perf_counter()
    s = r.timed(["git", "worktree", "add", "-q", "-B", branch, str(wt), "HEAD"])
    (wt / f"plain-{k}.txt").write_text("x\n")
    s = s + r.timed(["git", "-C", str(wt), "add", "-A"])
    s = s + r.timed(["git", "-C", str(wt), "commit", "-q", "--no-verify", "-m", f"plain {k}"])
    s = s + r.timed(["git", "merge", "--no-ff", "-q", "--no-verify", "-m", f"merge {k}", branch])
    s = s + r.timed(["git", "worktree", "remove", "--force", str(wt)])
    s = s + r.timed(["git", "branch", "-q", "-D", branch])
    return Sample(time.perf_counter() - t0, s.cpu, s.rc)


def run(quick: bool = False, keep: bool = False, json_out: str | None = None) -> list[Row]:
    n_per = 3 if quick else 7
    n_par = 1 if quick else 3
    n_plain = 10 if quick else 30
    rows: list[Row] = []
    extra: dict = {"load_before": loadavg()}
    problems: list[str] = []
    with Workspace(keep=keep) as ws:
        progress(f"run -n 1 on {PER_TASK_TASKS} no-op tasks: {n_per} runs, a fresh repository each")
        per: list[Sample] = []
        fixed: list[Sample] = []
        for k in range(n_per):
            s, r, _ = timed_run(ws, f"per-{k}", PER_TASK_TASKS, 1)
            per.append(s)
            problems += check_all_done(r, PER_TASK_TASKS)
            fixed.append(r.timed_fg("run", PLAN, "-n", "1"))  # nothing left to do
        progress(f"plain git: worktree add, commit, merge --no-ff, worktree remove, branch -D: {n_plain} tasks")
        pr = ws.new_repo("plain")
        plain_git_task(pr, -1)
        plain = [plain_git_task(pr, k) for k in range(n_plain)]

        progress(f"run -n {WORKERS} vs -n 1 on {PARALLEL_TASKS} no-op tasks: {n_par} pairs (interleaved)")
        one: list[Sample] = []
        four: list[Sample] = []
        first: list[float] = []  # time per task, -n 1: the first and the last 10 of 100
        last: list[float] = []
        for k in range(n_par):
            for w in ((1, WORKERS) if k % 2 == 0 else (WORKERS, 1)):
                s, r, gaps = timed_run(ws, f"par-{k}-{w}", PARALLEL_TASKS, w)
                (one if w == 1 else four).append(s)
                if w == 1:
                    first += gaps[:10]
                    last += gaps[-10:]
                problems += check_all_done(r, PARALLEL_TASKS)
        extra["load_after"] = loadavg()

    per_task = [s.wall / PER_TASK_TASKS for s in per]
    per_task_cpu = [s.cpu / PER_TASK_TASKS for s in per]
    marginal = (wall(per) - wall(fixed)) / PER_TASK_TASKS
    ratio = wall(four) / wall(one)
    git_per = wall(plain)
    rows += [
        Row(f"run -n 1, {PER_TASK_TASKS} no-op tasks: wall / tasks (cpu {ms(median(per_task_cpu))}, "
            f"min {ms(min(per_task))})", ms(median(per_task)), f"<= {ms(TARGET_PER_TASK)}",
            median(per_task) <= TARGET_PER_TASK),
        Row(f"run -n 1, {PER_TASK_TASKS} tasks, whole process (cpu {ms(cpu(per))}, min {ms(lo(per))})",
            ms(wall(per))),
        Row(f"run -n 1 with nothing to do: fixed cost (cpu {ms(cpu(fixed))}, min {ms(lo(fixed))})",
            ms(wall(fixed))),
        Row("marginal cost per task: (run - fixed) / tasks", ms(marginal)),
        Row(f"plain git per task: worktree add + commit + merge --no-ff + worktree remove + branch -D "
            f"(cpu {ms(cpu(plain))}, min {ms(lo(plain))})", ms(git_per)),
        Row(f"run per task / plain git per task (cpu ratio "
            f"{median(per_task_cpu) / max(cpu(plain), 1e-9):.1f}x)", f"{median(per_task) / git_per:.1f}x"),
        Row(f"run -n 1, {PARALLEL_TASKS} tasks (cpu {ms(cpu(one))}, min {ms(lo(one))})", ms(wall(one))),
        Row(f"run -n 1, {PARALLEL_TASKS} tasks: wall / tasks (cpu {ms(cpu(one) / PARALLEL_TASKS)})",
            ms(wall(one) / PARALLEL_TASKS)),
        Row(f"  per task, tasks 2-11 of {PARALLEL_TASKS} (between `done` lines)", ms(median(first))),
        Row(f"  per task, the last 10 of {PARALLEL_TASKS}", ms(median(last))),
        Row(f"run -n {WORKERS}, {PARALLEL_TASKS} tasks (cpu {ms(cpu(four))}, min {ms(lo(four))})", ms(wall(four))),
        Row(f"run -n {WORKERS} / run -n 1, wall ({os.cpu_count()} cores)", f"{ratio:.2f}x",
            f"<= {TARGET_PARALLEL}x", ratio <= TARGET_PARALLEL),
        Row("every task done exactly once, nothing uncommitted, no worktree left",
            "yes" if not problems else f"NO: {problems[0]}", "yes", not problems),
    ]
    extra["problems"] = problems[:20]
    extra["samples"] = {name: [(s.wall, s.cpu) for s in xs] for name, xs in (
        ("run_n1_per_task_tasks", per), ("run_fixed", fixed), ("plain_git_task", plain),
        ("run_n1_parallel_tasks", one), (f"run_n{WORKERS}_parallel_tasks", four))}
    extra["done_gaps_n1"] = {"first": first, "last": last}
    print_table(f"bench_run (issue 6): {machine()}; load {extra['load_before']} -> {extra['load_after']}", rows)
    write_json(json_out, "run", rows, extra)
    return rows


def main() -> int:
    args = base_parser(__doc__).parse_args()
    rows = run(args.quick, args.keep, args.json_out)
    return 1 if args.strict and any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
