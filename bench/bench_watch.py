"""Issue 4 speed: from the last `done` to the watcher's phase commit, the watcher at rest, and
one `advance` on a 2,000-task plan.

1. A plan whose tasks alternate with checkpoints (A1 -> CP-1 -> A2 -> CP-2 ...), and a
   `flowgit watch` process running on the repository. Each run: claim Ak (not timed, then a
   pause so the watcher has handled the claim's commit), run `done Ak`, and from the moment
   that process exits, poll HEAD every 10 ms until a commit `flow(cp): phase checkpoint`
   appears. Then the checkpoint is approved (not timed) and the next run starts. HEAD is read
   from the branch's ref file (what `git rev-parse HEAD` reads, without spawning a process
   every 10 ms on a 2-core machine); new commits are listed with `git log`.
2. The watcher's CPU time at rest (from /proc/PID/stat) over a quiet window.
3. `flowgit advance big` on a 2,000-task plan with 20,000 events (warm cache): median.

Run: python bench/bench_watch.py [--quick] [--json FILE]
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    PLAN,
    Row,
    Runner,
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
    wall,
    write_json,
    write_plan,
)

CP_PLAN = "cp"
POLL = 0.010
TARGET_LATENCY = 1.0
TARGET_ADVANCE = 0.300
LATENCY_GIVE_UP = 15.0


def cp_plan_yaml(n: int) -> str:
    lines = [f"id: {CP_PLAN}", "title: Checkpoint latency", "goal: Measure the watcher", "tasks:"]
    for k in range(1, n + 2):
        lines += [f"  - id: A{k}", f"    title: Step {k}"]
        if k > 1:
            lines.append(f"    depends_on: [CP-{k - 1}]")
    lines.append("checkpoints:")
    for k in range(1, n + 1):
        lines += [f"  - id: CP-{k}", f"    title: Review after step {k}", f"    after: [A{k}]"]
    return "\n".join(lines) + "\n"


class Head:
    """HEAD of the current branch, read from its ref file (falls back to git rev-parse)."""

    def __init__(self, r: Runner) -> None:
        self.r = r
        ref = (r.repo / ".git" / "HEAD").read_text().strip()
        self.ref = r.repo / ".git" / ref[5:].strip() if ref.startswith("ref:") else None

    def __call__(self) -> str:
        if self.ref is not None:
            try:
                return self.ref.read_text().strip()
            except FileNotFoundError:
                pass
        return self.r.head()


def subjects(r: Runner, old: str, new: str) -> list[str]:
    return r.git("log", "--format=%s", f"{old}..{new}").stdout.decode().splitlines()


def wait_for_commit(r: Runner, head: Head, since: str, needle: str, t0: float) -> float | None:
    """Seconds from t0 until a commit after `since` whose subject contains `needle`."""
    seen = since
    while time.perf_counter() - t0 < LATENCY_GIVE_UP:
        now = head()
        if now != seen:
            t_seen = time.perf_counter()
            if any(needle in s for s in subjects(r, since, now)):
                return t_seen - t0
            seen = now
        time.sleep(POLL)
    return None


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def run(quick: bool = False, keep: bool = False, json_out: str | None = None) -> list[Row]:
    runs = 4 if quick else 10
    settle = 0.8
    idle_window = 3.0 if quick else 10.0
    n_adv = 3 if quick else 10
    rows: list[Row] = []
    extra: dict = {"load_before": loadavg()}
    with Workspace(keep=keep) as ws:
        r = ws.new_repo("watch")
        pdir = r.repo / ".flow" / "plans" / CP_PLAN
        (pdir / "events").mkdir(parents=True)
        (pdir / "plan.yaml").write_text(cp_plan_yaml(runs))
        r.git("add", ".flow")
        r.git("commit", "-q", "--no-verify", "-m", "checkpoint plan")
        log_path = ws.path / "watch.log"
        progress(f"starting `flowgit watch`; {runs} runs of done -> phase checkpoint")
        with open(log_path, "wb") as log:
            watcher = subprocess.Popen([*r.flowgit, "watch"], cwd=r.repo, env=r.env,
                                       stdout=log, stderr=subprocess.STDOUT)
        latencies: list[float] = []
        misses = 0
        try:
            deadline = time.time() + 20
            while b"watching" not in log_path.read_bytes():
                if watcher.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"watcher did not start:\n{log_path.read_text()}")
                time.sleep(0.05)
            head = Head(r)
            for k in range(1, runs + 1):
                r.fg("claim", f"{CP_PLAN}/A{k}", "--worker", "w1")
                time.sleep(settle)  # let the watcher handle the claim's commit first
                r.fg("done", f"{CP_PLAN}/A{k}", "--worker", "w1")
                t_exit = time.perf_counter()
                since = head()
                lat = wait_for_commit(r, head, since, "phase checkpoint", t_exit)
                if lat is None:
                    misses += 1
                else:
                    latencies.append(lat)
                r.fg("checkpoint", CP_PLAN, f"CP-{k}", "--approve", "--reviewer", "bench",
                     check=lat is not None)
                time.sleep(settle)
            progress(f"watcher at rest: CPU over {idle_window:g} s")
            time.sleep(1.0)
            c0, t0 = proc_cpu_seconds(watcher.pid), time.perf_counter()
            time.sleep(idle_window)
            c1, t1 = proc_cpu_seconds(watcher.pid), time.perf_counter()
            idle_cpu = (c1 - c0) / (t1 - t0)
            watcher_rss = int(Path(f"/proc/{watcher.pid}/status").read_text()
                              .split("VmRSS:")[1].split()[0])
        finally:
            watcher.send_signal(signal.SIGTERM)
            try:
                watcher.wait(timeout=10)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.wait()
        extra["watch_log_tail"] = log_path.read_text().splitlines()[-12:]
        stopped_cleanly = watcher.returncode == 0

        progress(f"advance on {2000} tasks: {n_adv} runs")
        big = ws.new_repo("big")
        write_plan(big, 2000, 20000, checkpoints=3)
        big.fg("advance", PLAN)
        adv = [big.timed_fg("advance", PLAN) for _ in range(n_adv)]
        extra["load_after"] = loadavg()

    lat = median(latencies)
    rows += [
        Row(f"last `done` exit -> `phase checkpoint` commit ({len(latencies)} runs, "
            f"min {ms(min(latencies, default=float('nan')))}, max {ms(max(latencies, default=float('nan')))})",
            ms(lat), f"<= {ms(TARGET_LATENCY)}", lat <= TARGET_LATENCY),
        Row("runs with no phase commit within 15 s", str(misses), "0", misses == 0),
        Row(f"watcher CPU at rest ({idle_window:g} s window)", f"{idle_cpu * 100:.2f}% of a core",
            "not measurable", idle_cpu < 0.005),
        Row("watcher memory (RSS) after the runs", f"{watcher_rss / 1024:.0f} MiB"),
        Row("watcher stopped cleanly on SIGTERM (exit 0)", "yes" if stopped_cleanly else
            f"no (exit {watcher.returncode})", "yes", stopped_cleanly),
        Row(f"advance big, 2000 tasks/20000 events, warm cache (cpu {ms(cpu(adv))}, min {ms(lo(adv))})", ms(wall(adv)),
            f"<= {ms(TARGET_ADVANCE)}", wall(adv) <= TARGET_ADVANCE),
    ]
    extra["latencies"] = latencies
    extra["advance"] = [(s.wall, s.cpu) for s in adv]
    print_table(f"bench_watch (issue 4): {machine()}; load {extra['load_before']} -> {extra['load_after']}", rows)
    write_json(json_out, "watch", rows, extra)
    return rows


def main() -> int:
    args = base_parser(__doc__).parse_args()
    rows = run(args.quick, args.keep, args.json_out)
    return 1 if args.strict and any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
