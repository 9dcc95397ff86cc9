"""Shared helpers for flowgit's benchmarks: real processes, temp repos, generated plans.

Every bench runs flowgit as a separate process (the console script next to
``sys.executable``, or ``python -m flowgit`` when there is none) against a throw-away git
repository in a temp dir, with author/committer identity and dates pinned and the user's
global/system git config ignored, so a run on one machine is comparable with another.

Big plans are generated programmatically: ``plan.yaml`` is written as text and the event
logs as lines from ``flowgit.events.make_event(...).to_line()`` (valid per docs/FORMAT.md),
then everything is committed with plain git.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` from a checkout without installing
    sys.path.insert(0, str(ROOT))

from flowgit.core.events import PLAN_LOG, make_event  # noqa: E402

PLAN = "big"
ACTOR = "bench@example.com"

# --------------------------------------------------------------------------------------------
# processes


def flowgit_argv() -> list[str]:
    """The `flowgit` console script next to this interpreter, else `python -m flowgit`."""
    script = Path(sys.executable).with_name("flowgit")
    if script.exists() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "flowgit"]


def bench_env(home: Path) -> dict[str, str]:
    """A pinned, isolated environment: no user/system git config, fixed identity and dates."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_", "FLOWGIT_"))}
    env.update({
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),
        "GIT_AUTHOR_NAME": "Bench Author",
        "GIT_AUTHOR_EMAIL": ACTOR,
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+0000",
        "GIT_COMMITTER_NAME": "Bench Committer",
        "GIT_COMMITTER_EMAIL": ACTOR,
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+0000",
        "FLOWGIT_ACTOR": ACTOR,
        "LC_ALL": "C",
        # flowgit on PATH, as installed: the git hooks and merge driver `flowgit init` sets up
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    })
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled bytecode is part of a warm start
    (home / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n[gc]\n\tauto = 0\n")
    return env


@dataclass(frozen=True)
class Sample:
    wall: float   # seconds, spawn to exit
    cpu: float    # seconds of user+system CPU, the process and the children it reaped
    rc: int = 0

    def __add__(self, other: Sample) -> Sample:
        return Sample(self.wall + other.wall, self.cpu + other.cpu, self.rc or other.rc)


class Runner:
    """Runs git and flowgit in one repository with the pinned environment."""

    def __init__(self, repo: Path, env: dict[str, str]) -> None:
        self.repo = repo
        self.env = env
        self.flowgit = flowgit_argv()

    def run(self, argv: Sequence[str], check: bool = True, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(list(argv), cwd=self.repo, env=env or self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                               f"{proc.stdout.decode(errors='replace')}"
                               f"{proc.stderr.decode(errors='replace')}")
        return proc

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return self.run(["git", *args], check=check)

    def fg(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[bytes]:
        return self.run([*self.flowgit, *args], check=check, env=env)

    def timed(self, argv: Sequence[str], check: bool = True) -> Sample:
        """Wall time of one whole process from spawn to exit, and the CPU time it and the
        children it waited for (git) used. Output is discarded (sent to /dev/null)."""
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=self.repo, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        err = proc.stderr.read() if proc.stderr else b""
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.stderr:
            proc.stderr.close()
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.decode(errors='replace')}")
        return Sample(wall, ru.ru_utime + ru.ru_stime, proc.returncode)

    def timed_fg(self, *args: str, check: bool = True) -> Sample:
        return self.timed([*self.flowgit, *args], check=check)

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").stdout.decode().strip()


# --------------------------------------------------------------------------------------------
# repositories and generated plans


@dataclass
class Workspace:
    """A temp dir holding HOME and one or more repos; removed on exit."""

    keep: bool = False
    path: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="flowgit-bench-")))

    def __enter__(self) -> Workspace:
        (self.path / "home").mkdir()
        self.env = bench_env(self.path / "home")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.keep:
            print(f"(kept {self.path})", file=sys.stderr)
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def new_repo(self, name: str) -> Runner:
        repo = self.path / name
        repo.mkdir()
        r = Runner(repo, self.env)
        r.git("init", "-q")
        r.git("config", "user.email", ACTOR)
        r.git("config", "user.name", "Bench")
        r.git("config", "commit.gpgsign", "false")
        (repo / "README.md").write_text("bench repo\n")
        (repo / "src").mkdir()
        (repo / "src" / "work.txt").write_text("line 0\n")
        r.git("add", "-A")
        r.git("commit", "-q", "--no-verify", "-m", "initial")
        # format 1: write_plan writes logs in the branch (bench_state migrates them to format 2)
        r.fg("init", "--format", "1")
        return r


def task_id(i: int) -> str:
    return f"T-{i:05d}"


def plan_yaml(n_tasks: int, checkpoints: int = 0, seed: int = 7, width: int = 40,
              plan_id: str = PLAN) -> str:
    """A plan of n tasks in a DAG: task i depends on 0-2 of the `width` tasks before it.
    Checkpoints are spread evenly; the task after each one depends on it."""
    rng = random.Random(seed)
    cp_after: dict[int, str] = {}
    for k in range(1, checkpoints + 1):
        cp_after[(n_tasks * k) // (checkpoints + 1) - 1] = f"CP-{k}"
    lines = [f"id: {plan_id}", "title: Generated benchmark plan",
             "goal: Measure flowgit on a plan of this size", "tasks:"]
    gate: str | None = None
    for i in range(n_tasks):
        deps: list[str] = []
        if i > 0:
            lo = max(0, i - width)
            for d in sorted(rng.sample(range(lo, i), min(i - lo, rng.choice((0, 1, 1, 2))))):
                deps.append(task_id(d))
        if gate is not None:
            deps.append(gate)
            gate = None
        prio = rng.choice(("high", "medium", "medium", "low"))
        lines.append(f"  - id: {task_id(i)}")
        lines.append(f"    title: Generated task number {i}")
        if deps:
            lines.append(f"    depends_on: [{', '.join(deps)}]")
        lines.append(f"    priority: {prio}")
        lines.append(f"    estimate: {rng.choice(('30m', '1h', '2h', '4h'))}")
        if i in cp_after:
            gate = cp_after[i]
    if cp_after:
        lines.append("checkpoints:")
        for i, cp in sorted(cp_after.items()):
            lines.append(f"  - id: {cp}")
            lines.append(f"    title: Checkpoint after {task_id(i)}")
            lines.append(f"    after: [{task_id(i)}]")
    return "\n".join(lines) + "\n"


def _done_history(plan: str, task: str, clock: int, t0: float, per_task: int) -> list[str]:
    """claimed, started, heartbeats..., done: `per_task` events, a finished task."""
    evs = [make_event("task.claimed", plan, task, ACTOR, clock, {
        "lease_until": _fmt(t0 + 900), "lease_seconds": 900.0}, t0)]
    evs.append(make_event("task.started", plan, task, ACTOR, clock + 1,
                          {"lease_until": _fmt(t0 + 900)}, t0 + 1))
    for k in range(per_task - 3):
        evs.append(make_event("task.heartbeat", plan, task, ACTOR, clock + 2 + k,
                              {"lease_until": _fmt(t0 + 960 + k)}, t0 + 2 + k))
    evs.append(make_event("task.done", plan, task, ACTOR, clock + per_task - 1,
                          {"note": f"finished {task}", "files_modified": ["src/work.txt"]},
                          t0 + per_task))
    return [e.to_line() for e in evs]


def _retried_history(plan: str, task: str, clock: int, t0: float, per_task: int) -> list[str]:
    """claimed, started, failed (retry, due long ago), then claimed, heartbeats..., released:
    `per_task` events leaving the task open (ready once its dependencies are)."""
    evs = [
        make_event("task.claimed", plan, task, ACTOR, clock,
                   {"lease_until": _fmt(t0 + 900), "lease_seconds": 900.0}, t0),
        make_event("task.started", plan, task, ACTOR, clock + 1, {"lease_until": _fmt(t0 + 900)}, t0 + 1),
        make_event("task.failed", plan, task, ACTOR, clock + 2,
                   {"error": "flaky", "retry": True, "retry_at": _fmt(t0 + 3), "attempt": 1}, t0 + 2),
        make_event("task.claimed", plan, task, ACTOR, clock + 3,
                   {"lease_until": _fmt(t0 + 904), "lease_seconds": 900.0}, t0 + 4),
    ]
    for k in range(per_task - 5):
        evs.append(make_event("task.heartbeat", plan, task, ACTOR, clock + 4 + k,
                              {"lease_until": _fmt(t0 + 960 + k)}, t0 + 5 + k))
    evs.append(make_event("task.released", plan, task, ACTOR, clock + per_task - 1,
                          {"reason": "bench"}, t0 + per_task + 5))
    return [e.to_line() for e in evs]


def _fmt(ts: float) -> str:
    from flowgit.core.events import format_time
    return format_time(ts)


def write_plan(r: Runner, n_tasks: int, n_events: int, *, checkpoints: int = 0,
               done_fraction: float = 0.7, plan_id: str = PLAN, commit: bool = True,
               phase: str = "execute") -> dict[str, Any]:
    """Write .flow/plans/PLAN/plan.yaml and its event logs directly, then commit them.

    `n_events` task events are spread evenly over the tasks (at least 5 per task that has a
    history). The first `done_fraction` of the tasks are done; the others carry a history of a
    failed attempt and a release, so they are open (ready once their dependencies are done).
    Checkpoints before the done frontier are approved. Returns a small summary."""
    pdir = r.repo / ".flow" / "plans" / plan_id
    evdir = pdir / "events"
    evdir.mkdir(parents=True, exist_ok=True)
    (pdir / "plan.yaml").write_text(plan_yaml(n_tasks, checkpoints, plan_id=plan_id))
    per_task = max(5, n_events // max(1, n_tasks)) if n_events else 0
    with_history = min(n_tasks, n_events // per_task) if per_task else 0
    n_done = int(with_history * done_fraction)
    t0 = time.time() - 86400.0
    clock = 10
    written = 0
    for i in range(with_history):
        tid = task_id(i)
        lines = (_done_history if i < n_done else _retried_history)(plan_id, tid, clock, t0 + i, per_task)
        clock += per_task
        written += len(lines)
        (evdir / f"{tid}.jsonl").write_text("".join(lines))
    plan_events = [make_event("plan.created", plan_id, None, ACTOR, 1, {"title": "bench"}, t0 - 10)]
    if phase != "draft":
        plan_events.append(make_event("plan.phase", plan_id, None, ACTOR, 2, {
            "to": "execute", "reason": "bench", "from": "draft", "base_commit": r.head()}, t0 - 5))
    for k in range(1, checkpoints + 1):
        last = (n_tasks * k) // (checkpoints + 1) - 1
        if last < n_done:
            plan_events.append(make_event("checkpoint.approved", plan_id, None, ACTOR, 2 + k, {
                "checkpoint": f"CP-{k}", "reviewer": "bench", "comment": ""}, t0 + last + per_task + 1))
    (evdir / f"{PLAN_LOG}.jsonl").write_text("".join(e.to_line() for e in plan_events))
    if commit:
        r.git("add", "--", f".flow/plans/{plan_id}")
        r.git("commit", "-q", "--no-verify", "-m", f"bench: generated plan {plan_id} "
              f"({n_tasks} tasks, {written} events)")
    return {"tasks": n_tasks, "events": written, "done": n_done, "plan_events": len(plan_events)}


def drop_cache(r: Runner) -> None:
    for kind in ("cache", "plans"):  # the derived cache, in the git dir (ADR 0012)
        shutil.rmtree(r.repo / ".git" / "flowgit" / kind, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# statistics and output


def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def ms(x: float) -> str:
    return "n/a" if x != x else f"{x * 1000:.0f} ms"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


@dataclass
class Row:
    """One line of a results table: what, measured figure, target, pass/fail."""

    what: str
    value: str
    target: str = ""
    ok: bool | None = None

    def cells(self) -> list[str]:
        return [self.what, self.value, self.target, "" if self.ok is None else verdict(self.ok)]


def print_table(title: str, rows: Sequence[Row], file: Any = None) -> None:
    file = file or sys.stdout
    head = ["measure", "median / figure", "target", ""]
    cells = [head] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    print(f"\n## {title}\n", file=file)
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |", file=file)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=file)
    for c in cells[1:]:
        print("| " + " | ".join(x.ljust(w) for x, w in zip(c, widths)) + " |", file=file)
    file.flush()


def machine() -> str:
    return (f"{platform.node() or 'host'}: {os.cpu_count()} cores, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, "
            f"{subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.strip()}")


def base_parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir for inspection")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return p


def write_json(path: str | None, name: str, rows: Sequence[Row], extra: dict[str, Any]) -> None:
    if not path:
        return
    data = {"bench": name, "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "rows": [r.__dict__ for r in rows], **extra}
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def progress(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


Timer = Callable[[], float]


def wall(samples: Sequence[Sample]) -> float:
    return median(s.wall for s in samples)


def lo(samples: Sequence[Sample]) -> float:
    """The fastest run: the least disturbed by other load on the machine."""
    return min((s.wall for s in samples), default=float("nan"))


def cpu(samples: Sequence[Sample]) -> float:
    return median(s.cpu for s in samples)


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_ticks() -> tuple[int, int] | None:
    """The machine's (busy, all) clock ticks since boot, from /proc/stat; iowait and steal count
    as not busy. None where there is no /proc."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    return sum(fields[:8]) - idle - (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def machine_busy(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the machine's cores that ran anything between two `cpu_ticks` (flowgit, git,
    the bench itself, other tenants of the machine), times the number of cores."""
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


def import_report(r: Runner, args: Sequence[str], runs: int = 3) -> dict[str, Any]:
    """`python -X importtime -m flowgit ARGS`: the modules imported, and the largest by
    cumulative time (median of `runs`)."""
    per_run: list[dict[str, tuple[int, int, int]]] = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "flowgit", *args],
                              cwd=r.repo, env=r.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        mods: dict[str, tuple[int, int, int]] = {}
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            head = line.split("|")
            self_us = int(head[0].split(":")[1])
            cum_us = int(head[1])
            raw = head[2]
            depth = (len(raw) - len(raw.lstrip(" ")) - 1) // 2
            mods[raw.strip()] = (self_us, cum_us, depth)
        per_run.append(mods)
    names = set().union(*per_run)
    med = {n: (median(m[n][0] for m in per_run if n in m), median(m[n][1] for m in per_run if n in m),
               per_run[0].get(n, (0, 0, 0))[2]) for n in names}
    top_level = [n for n, v in med.items() if v[2] == 0]
    total = sum(med[n][1] for n in top_level)
    return {"modules": sorted(names), "total_us": total,
            "top": sorted(((n, v[1]) for n, v in med.items()), key=lambda x: -x[1])[:15],
            "top_self": sorted(((n, v[0]) for n, v in med.items()), key=lambda x: -x[1])[:15]}


def has_module(report: dict[str, Any], prefix: str) -> bool:
    return any(m == prefix or m.startswith(prefix + ".") for m in report["modules"])
