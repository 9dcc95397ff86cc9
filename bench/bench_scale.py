"""Issue 17: 50,000 tasks feel like 50. Whole-process medians of the everyday commands on
generated format 2 repositories (bench/scale_gen.py) of 100, 10,000 and 50,000 tasks in 10
chains, half of them with a claimed-and-done log on `flow/state`, phase `execute`.

Each command runs as its own process, the sizes interleaved round by round (whatever load
the machine has hits them alike). For each size: the median CPU time (user+system of the
process and the git processes it waited for), the median wall time, and the peak resident
memory (`ru_maxrss` from `os.wait4`: the largest of the process and its waited-for children).
Then the growth 50k/10k and the ratio 50k/100, each beside its target. The verdicts judge CPU
(wall times on a shared machine measure the neighbours).

Measured, in this order (each size in its own copy of the generated repository):
- `status big --json` cold: the derived cache (`.git/flowgit/cache`, `plans`) removed before each run (outside the timing);
- `status big --json` warm, `next big`, `graph big --format mermaid`, `validate`,
  `diff HEAD~5 HEAD`;
- rounds of `claim big`, `heartbeat big/T`, `done big/T` on the task the claim took;
- `retry big/T` on a task claimed and failed just before (outside the timing);
- `task add big NEW-k --title ... --dep T` once on the generated plan (`task add cold`: the
  first edit of a plan.yaml flowgit did not write), then timed again; `task add after a pull`:
  the first after a plain `git commit` retitled a task of plan.yaml (as a teammate's pushed
  edit arrives), the plan then read whole once; and `task edit big/T --title ...`;
- bytes of new objects (`git count-objects`) per transition and per `task add` (the adds after
  a pull included).

Each read runs once untimed first (its caches filled: warm is the measure). A command whose
first timed run takes longer than --slow seconds (30) at a size is run once there.

Run: python bench/bench_scale.py [--quick] [--sizes 100,10000,50000] [--runs N] [--json FILE]
     [--only 'task add,task edit,retry']
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale_gen  # noqa: E402
from common import Runner, base_parser, bench_env, drop_cache, loadavg, machine, median, progress  # noqa: E402

PLAN = scale_gen.PLAN


@dataclass(frozen=True)
class Target:
    abs_ms: float | None = None      # at the largest size
    vs_small: float | None = None    # largest / smallest (the 100-task plan)
    growth: float = 5.0              # largest / the one before (50k / 10k)


TRANSITION = Target(300, 3.0)
TARGETS: dict[str, Target] = {
    "status --json warm": TRANSITION,
    "status cold": Target(2000),
    "next": TRANSITION,
    "claim": TRANSITION,
    "done": TRANSITION,
    "heartbeat": TRANSITION,
    "graph --format mermaid": Target(1000),
    "validate": Target(2000),
    "diff HEAD~5 HEAD": Target(2000),
    "task add cold": Target(2000),  # the first on the generated plan (after status and validate)
    "task add after a pull": Target(2000),  # the first after a commit from outside changed plan.yaml
    "task add": Target(500),
    "task edit": Target(500),
    "retry": Target(500),
}
RSS_TARGET_MB = 300
BYTES_TRANSITION = 50_000
BYTES_ADD = 200_000


@dataclass
class Run:
    wall: float
    cpu: float
    rss_kb: int


@dataclass
class Size:
    n: int
    r: Runner
    samples: dict[str, list[Run]] = field(default_factory=dict)
    added: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def timed(self, *args: str) -> tuple[Run, bytes]:
        """One whole `flowgit ARGS` process: wall, CPU (it and its waited-for children) and
        peak RSS. stdout is kept (some callers need the task a claim took)."""
        with tempfile.TemporaryFile() as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen([*self.r.flowgit, *args], cwd=self.r.repo, env=self.r.env,
                                    stdout=out, stderr=subprocess.PIPE)
            err = proc.stderr.read() if proc.stderr else b""
            _, status, ru = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            if proc.stderr:
                proc.stderr.close()
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            data = out.read()
        if proc.returncode != 0:
            raise RuntimeError(f"flowgit {' '.join(args)} exited {proc.returncode} at {self.n} tasks: "
                               f"{err.decode(errors='replace').strip()}")
        return Run(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss), data

    def record(self, name: str, run: Run) -> None:
        self.samples.setdefault(name, []).append(run)

    def objects(self) -> dict[str, int]:
        """Every object in .git and its size on disk (zlib-compressed, or in its pack)."""
        out = self.r.git("cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objectsize:disk)")
        return {o: int(size) for o, size in (line.split() for line in out.stdout.decode().splitlines())}

    def disk(self) -> int:
        """Bytes of every file under .git/objects (what the repository really holds: a pack
        written again counts whole, the one it replaced no more)."""
        folder = self.r.repo / ".git" / "objects"
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

    def new_bytes(self, before: dict[str, int]) -> int:
        """Bytes on disk of the objects written since `before` (what a write adds before `gc`)."""
        return sum(size for o, size in self.objects().items() if o not in before)


ONLY: set[str] = set()  # --only: these rows alone (empty: every row)
EDITS = {"task add cold", "task add", "task add after a pull", "task edit"}


def wanted(name: str) -> bool:
    return not ONLY or name in ONLY


def measure(sizes: list[Size], name: str, runs: int, slow: float, step: Callable[[Size], Run],
            warm: bool = False) -> None:
    if not wanted(name):
        return
    progress(name)
    if warm:  # the command's own caches filled once, untimed (a warm read is the measure)
        for s in sizes:
            step(s)
    for k in range(runs):
        for s in sizes:
            have = s.samples.get(name, [])
            if k > 0 and have and have[0].wall > slow:
                continue
            s.record(name, step(s))


def claimed_task(out: bytes) -> str:
    task: str = json.loads(out)["task"]  # PLAN/TASK
    return task


def run_bench(ns: list[int], runs: int, slow: float, keep: bool) -> tuple[list[Size], dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="flowgit-scale-bench-"))
    (work / "home").mkdir()
    env = bench_env(work / "home")
    sizes = []
    try:
        for n in ns:
            progress(f"repository of {n} tasks (cached under {scale_gen.cache_root()})")
            scale_gen.repo_for(n)
            sizes.append(Size(n, Runner(scale_gen.copy(n, work / f"n{n}"), env)))
        load_before = loadavg()
        for s in sizes:
            s.r.fg("status", PLAN, "--json")  # warm

        def cold(s: Size) -> Run:
            drop_cache(s.r)
            run, _ = s.timed("status", PLAN, "--json")
            return run

        measure(sizes, "status cold", runs, slow, cold)
        reads: list[tuple[str, tuple[str, ...]]] = [
            ("status --json warm", ("status", PLAN, "--json")), ("next", ("next", PLAN)),
            ("graph --format mermaid", ("graph", PLAN, "--format", "mermaid")),
            ("validate", ("validate",)), ("diff HEAD~5 HEAD", ("diff", "HEAD~5", "HEAD"))]
        for name, argv in reads:
            def read(s: Size, argv: tuple[str, ...] = argv) -> Run:
                return s.timed(*argv)[0]
            measure(sizes, name, runs, slow, read, warm=True)

        before = {s.n: s.objects() for s in sizes}
        progress("claim, heartbeat, done")
        for _ in range(runs if any(wanted(n) for n in ("claim", "heartbeat", "done")) else 0):
            for s in sizes:
                run, out = s.timed("claim", PLAN, "--json")
                s.record("claim", run)
                task = claimed_task(out)
                s.record("heartbeat", s.timed("heartbeat", task)[0])
                s.record("done", s.timed("done", task)[0])
        for s in sizes if any(wanted(n) for n in ("claim", "heartbeat", "done")) else ():
            s.extra["bytes_per_transition"] = s.new_bytes(before[s.n]) / (3 * runs)

        def retry(s: Size) -> Run:
            task = claimed_task(s.r.fg("claim", PLAN, "--json").stdout)
            s.r.fg("fail", task, "--error", "bench")
            return s.timed("retry", task)[0]

        measure(sizes, "retry", runs, slow, retry)

        def add(s: Size) -> Run:
            s.added += 1
            objects, disk = s.objects(), s.disk()
            run = s.timed("task", "add", PLAN, f"NEW-{s.added}", "--title", f"Added task {s.added}",
                          "--dep", scale_gen.task_id(s.n - 1))[0]
            s.extra.setdefault("bytes_per_add", []).append(s.new_bytes(objects))
            s.extra.setdefault("disk_per_add", []).append(s.disk() - disk)
            return run

        if not wanted("task add cold") and ONLY & EDITS:  # the first edit, untimed: warm ones follow
            for s in sizes:
                add(s)
                s.extra["bytes_per_add"].clear()
                s.extra["disk_per_add"].clear()
        measure(sizes, "task add cold", 1, slow, add)  # the generated plan: never edited by flowgit
        measure(sizes, "task add", runs, slow, add)

        def pulled(s: Size) -> Run:  # a teammate's commit changed plan.yaml (as a pull brings)
            plan = s.r.repo / ".flow" / "plans" / PLAN / "plan.yaml"
            s.added += 1
            text = plan.read_text()
            head = f"  - id: {scale_gen.task_id(s.n // 2)}\n    title: "  # its title, whatever it is now
            at = text.index(head) + len(head)
            end = text.index("\n", at)
            plan.write_text(f"{text[:at]}Retitled by a teammate {s.added}{text[end:]}")
            s.r.git("commit", "-q", "--no-verify", "-am", f"a teammate's edit {s.added}")
            objects, disk = s.objects(), s.disk()  # the teammate's blob is not the add's
            run = s.timed("task", "add", PLAN, f"NEW-{s.added}", "--title", f"Added task {s.added}",
                          "--dep", scale_gen.task_id(s.n - 1))[0]
            s.extra.setdefault("bytes_per_add", []).append(s.new_bytes(objects))
            s.extra.setdefault("disk_per_add", []).append(s.disk() - disk)
            return run

        measure(sizes, "task add after a pull", min(runs, 3), slow, pulled)

        def edit(s: Size) -> Run:
            s.added += 1
            return s.timed("task", "edit", f"{PLAN}/{scale_gen.task_id(s.n // 3)}", "--title",
                           f"Edited title {s.added}")[0]

        measure(sizes, "task edit", runs, slow, edit)
        return sizes, {"load_before": load_before, "load_after": loadavg()}
    finally:
        if keep:
            print(f"(kept {work})", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _ms(x: float) -> str:
    return "n/a" if x != x else f"{x * 1000:,.0f}"


def _k(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def table(sizes: list[Size]) -> tuple[list[str], list[dict[str, Any]], bool]:
    big, small = sizes[-1], sizes[0]
    prev = sizes[-2] if len(sizes) > 2 else None  # the growth compares the two largest
    head = ["command"] + [f"{s.n:,} tasks cpu (wall) ms" for s in sizes] + \
        [f"peak MB at {_k(big.n)}", f"{_k(big.n)}/{_k(prev.n)}" if prev else "growth",
         f"{_k(big.n)}/{_k(small.n)}", "target", ""]
    rows_out: list[list[str]] = []
    data: list[dict[str, Any]] = []
    all_ok = True
    for name, target in TARGETS.items():
        if not wanted(name):
            continue
        cells = [name]
        cpus = []
        for s in sizes:
            runs = s.samples.get(name, [])
            c, w = median(r.cpu for r in runs), median(r.wall for r in runs)
            cpus.append(c)
            note = "" if len(runs) > 1 else " 1 run"
            cells.append(f"{_ms(c)} ({_ms(w)}){note}")
        peak = max((r.rss_kb for r in big.samples.get(name, [])), default=0) / 1024
        growth = cpus[-1] / cpus[-2] if prev and cpus[-2] else float("nan")
        ratio = cpus[-1] / cpus[0] if cpus[0] else float("nan")
        wants = []
        ok = peak <= RSS_TARGET_MB
        if target.abs_ms is not None:
            wants.append(f"<= {target.abs_ms:,.0f} ms")
            ok = ok and cpus[-1] * 1000 <= target.abs_ms
        if target.vs_small is not None:
            wants.append(f"<= {target.vs_small:g}x small")
            ok = ok and ratio <= target.vs_small
        wants.append(f"<= {target.growth:g}x growth")
        ok = ok and (growth != growth or growth <= target.growth)
        all_ok = all_ok and ok
        cells += [f"{peak:.0f}", f"{growth:.1f}x", f"{ratio:.1f}x", ", ".join(wants), "ok" if ok else "MISS"]
        rows_out.append(cells)
        data.append({"command": name, "cpu_ms": [round(c * 1000, 1) for c in cpus],
                     "wall_ms": [round(median(r.wall for r in s.samples.get(name, [])) * 1000, 1)
                                 for s in sizes],
                     "peak_mb": round(peak, 1), "growth": round(growth, 2), "vs_small": round(ratio, 2),
                     "ok": ok})
    lines: list[str] = []
    widths = [max(len(str(row[i])) for row in [head] + rows_out) for i in range(len(head))]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows_out:
        lines.append("| " + " | ".join(x.ljust(w) for x, w in zip(row, widths)) + " |")
    for s in sizes:
        per_t = s.extra.get("bytes_per_transition", float("nan"))
        adds: list[float] = s.extra.get("bytes_per_add", [])
        per_a = median(adds)
        ok = not per_t > BYTES_TRANSITION and not per_a > BYTES_ADD  # nan: not measured (--only)
        lines.append(f"\n{s.n:,} tasks: new objects per transition {per_t / 1000:,.1f} KB (target <= "
                     f"{BYTES_TRANSITION // 1000} KB), per task add {per_a / 1000:,.1f} KB (target <= "
                     f"{BYTES_ADD // 1000} KB){'' if ok or s is not big else '  MISS'}")
        disk: list[float] = s.extra.get("disk_per_add", [])
        if disk:  # a big plan's pack of versions (ADR 0012): its first add stores the base again
            lines.append(f"{s.n:,} tasks: .git/objects grew per task add by {median(disk) / 1000:,.1f} KB "
                         f"(median), {max(disk) / 1000:,.1f} KB at most")
        if s is big:
            all_ok = all_ok and ok
    return lines, data, all_ok


def main() -> int:
    p = base_parser(__doc__ or "")
    p.add_argument("--sizes", default="100,10000,50000", help="comma-separated task counts, smallest first")
    p.add_argument("--runs", type=int, default=None, help="runs per command and size (default 5, --quick 3)")
    p.add_argument("--slow", type=float, default=30.0,
                   help="a command whose first run takes longer than this (seconds) runs once")
    p.add_argument("--only", default="", help="comma-separated rows to measure (default: all), e.g. "
                   "'task add,task edit,retry'")
    args = p.parse_args()
    ONLY.update(x.strip() for x in args.only.split(",") if x.strip())
    unknown = ONLY - set(TARGETS)
    if unknown:
        p.error(f"--only: unknown rows {sorted(unknown)} (known: {', '.join(TARGETS)})")
    ns = sorted(int(x) for x in args.sizes.split(",") if x.strip())
    runs = args.runs or (3 if args.quick else 5)
    started = time.perf_counter()
    sizes, extra = run_bench(ns, runs, args.slow, args.keep)
    lines, data, ok = table(sizes)
    print(f"\n## Issue 17: scale ({machine()})\n")
    print(f"load average before {extra['load_before']}, after {extra['load_after']}; "
          f"{runs} runs a command (medians); {time.perf_counter() - started:.0f} s\n")
    print("\n".join(lines))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "bench": "scale", "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "sizes": ns, "runs": runs, "rows": data, **extra,
            "bytes": {str(s.n): {"per_transition": s.extra.get("bytes_per_transition"),
                                 "per_add": median(s.extra.get("bytes_per_add", [])),
                                 "disk_per_add": s.extra.get("disk_per_add", [])}
                      for s in sizes}}, indent=2) + "\n")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
