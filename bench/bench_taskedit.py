"""Issue 15 speed: `task add`, `task edit` and `task remove` on a 10,000-task plan.

Each splices one task's lines into plan.yaml (flowgit/formats/planslice.py) and checks the
result with the C safe loader and the plan checks, instead of a round-trip load and dump of the
whole file (which took 12 s for `task add` at 10,000 tasks). Measured as whole processes, with
the derived cache warm (a `status` first, untimed), rounds interleaved: add a task, edit its
title, remove it. Also checks that every byte of plan.yaml outside the task's lines is kept.

Run: python bench/bench_taskedit.py [--quick] [--json FILE] [--tasks N]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    PLAN,
    Row,
    Sample,
    Workspace,
    base_parser,
    cpu,
    loadavg,
    machine,
    ms,
    print_table,
    progress,
    wall,
    write_json,
    write_plan,
)

TASKS = 10_000
TARGET = 3.0  # seconds for one `task add` / `task edit` at 10,000 tasks (it was 12 s)


def run(quick: bool = False, keep: bool = False, json_out: str | None = None,
        n_tasks: int = TASKS) -> list[Row]:
    rounds = 2 if quick else 5
    extra: dict[str, object] = {"load_before": loadavg(), "tasks": n_tasks}
    adds: list[Sample] = []
    edits: list[Sample] = []
    removes: list[Sample] = []
    with Workspace(keep) as ws:
        r = ws.new_repo("taskedit")
        progress(f"a {n_tasks}-task plan")
        write_plan(r, n_tasks, 0)
        r.fg("status", PLAN)  # warm the derived cache, untimed
        path = r.repo / ".flow" / "plans" / PLAN / "plan.yaml"
        original = path.read_bytes()
        for i in range(rounds):
            progress(f"round {i + 1}/{rounds}: task add, task edit, task remove")
            tid = f"NEW-{i}"
            adds.append(r.timed_fg("task", "add", PLAN, tid, "--title", f"New task {i}",
                                   "--dep", "T-00001", "--file", f"src/new{i}.py"))
            edits.append(r.timed_fg("task", "edit", f"{PLAN}/{tid}", "--title", f"Renamed {i}"))
            removes.append(r.timed_fg("task", "remove", f"{PLAN}/{tid}"))
        kept = path.read_bytes() == original
        extra["load_after"] = loadavg()
        extra["samples"] = {"add": [(s.wall, s.cpu) for s in adds],
                            "edit": [(s.wall, s.cpu) for s in edits],
                            "remove": [(s.wall, s.cpu) for s in removes]}
    rows = [
        Row(f"task add at {n_tasks} tasks (median wall; cpu {cpu(adds):.2f} s)", ms(wall(adds)),
            f"< {TARGET:.0f} s", wall(adds) < TARGET),
        Row(f"task edit at {n_tasks} tasks (cpu {cpu(edits):.2f} s)", ms(wall(edits)),
            f"< {TARGET:.0f} s", wall(edits) < TARGET),
        Row(f"task remove at {n_tasks} tasks (cpu {cpu(removes):.2f} s)", ms(wall(removes))),
        Row("plan.yaml byte for byte after add, edit, remove", "yes" if kept else "NO", "yes", kept),
    ]
    print_table(f"bench_taskedit (issue 15): {machine()}; load {extra['load_before']} -> "
                f"{extra['load_after']}", rows)
    write_json(json_out, "taskedit", rows, extra)
    return rows


def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--tasks", type=int, default=TASKS, help="plan size (default 10,000)")
    args = p.parse_args()
    rows = run(args.quick, args.keep, args.json_out, args.tasks)
    return 1 if args.strict and any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
