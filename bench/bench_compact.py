"""Issue 7 speed: `status` and `claim` on a task whose log had 100,000 events, after
`flowgit compact`, against the same on a fresh task.

Two repositories with the same plan (20 generated tasks with 10 events each, plus one
independent task, LONG). In one, LONG's log holds 100,000 events written directly
(`make_event(...).to_line()`: claimed, heartbeat, heartbeat, released by one actor, with
increasing clocks, so the task ends open); in the other LONG has no log at all (a fresh task).
Both are committed with plain git. Measures, as whole processes (spawn to exit):
  1. for context, before compaction: `status PLAN --json` without a cache and warm, and
     `claim PLAN/LONG` (each claim appends to the long log, so the next command re-reads it);
  2. `flowgit compact PLAN --keep 100` (one run): it must leave LONG's state as it was;
  3. after compaction, interleaved with the same commands in the fresh-task repository:
     `status PLAN --json` warm and without a cache, and `claim PLAN/LONG --worker w` (each
     claim is followed by `release`, outside the timing). Target: within 1.2x of the fresh task.

Run: python bench/bench_compact.py [--quick] [--json FILE]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ACTOR,
    PLAN,
    Row,
    Runner,
    Sample,
    Workspace,
    base_parser,
    cpu,
    drop_cache,
    lo,
    loadavg,
    machine,
    make_event,
    ms,
    print_table,
    progress,
    wall,
    write_json,
    write_plan,
)

TASKS = (20, 200)
LONG = "LONG"
LONG_EVENTS = 100_000
KEEP = 100
TARGET_RATIO = 1.2
CYCLE = ("task.claimed", "task.heartbeat", "task.heartbeat", "task.released")


def long_log(n: int) -> tuple[str, int]:
    """n events on LONG: claimed, heartbeat, heartbeat, released, ... (ends released, open)."""
    assert n % len(CYCLE) == 0
    t0 = time.time() - 30 * 86400.0
    out = []
    for i in range(n):
        kind = CYCLE[i % len(CYCLE)]
        at = t0 + i * 0.01
        data: dict = {}
        if kind == "task.claimed":
            data = {"lease_until": _fmt(at + 900), "lease_seconds": 900.0}
        elif kind == "task.heartbeat":
            data = {"lease_until": _fmt(at + 900)}
        elif kind == "task.released":
            data = {"reason": "bench"}
        out.append(make_event(kind, PLAN, LONG, ACTOR, i + 1, data, at).to_line())
    return "".join(out), n


def _fmt(ts: float) -> str:
    from flowgit.core.events import format_time
    return format_time(ts)


def make_repo(ws: Workspace, name: str, long_events: int) -> Runner:
    r = ws.new_repo(name)
    write_plan(r, *TASKS, done_fraction=0.1, commit=False)
    pdir = r.repo / ".flow" / "plans" / PLAN
    with open(pdir / "plan.yaml", "a") as f:  # no checkpoints: the task list is last
        f.write(f"  - id: {LONG}\n    title: The long-lived task\n    priority: high\n")
    if long_events:
        text, _ = long_log(long_events)
        (pdir / "events" / f"{LONG}.jsonl").write_text(text)
    r.git("add", "-A")
    r.git("commit", "-q", "--no-verify", "-m", f"bench: plan, {LONG} with {long_events} events")
    return r


def states(r: Runner) -> dict[str, str]:
    data = json.loads(r.fg("status", PLAN, "--json").stdout)
    return {t["id"]: t["state"] for t in data["tasks"]}


def claim_release(r: Runner) -> Sample:
    s = r.timed_fg("claim", f"{PLAN}/{LONG}", "--worker", "w")
    r.fg("release", f"{PLAN}/{LONG}", "--worker", "w")
    return s


def run(quick: bool = False, keep: bool = False, json_out: str | None = None) -> list[Row]:
    n = 5 if quick else 15
    n_cold = 3 if quick else 7
    n_before = 2 if quick else 3
    rows: list[Row] = []
    extra: dict = {"load_before": loadavg()}
    with Workspace(keep=keep) as ws:
        progress(f"generating: {TASKS[0] + 1} tasks, {LONG} with {LONG_EVENTS} events / a fresh {LONG}")
        big = make_repo(ws, "long", LONG_EVENTS)
        fresh = make_repo(ws, "fresh", 0)
        log_path = big.repo / ".flow" / "plans" / PLAN / "events" / f"{LONG}.jsonl"
        extra["long_log_bytes"] = log_path.stat().st_size
        before_states = states(big)
        assert before_states[LONG] == "ready", before_states[LONG]
        assert states(fresh) == before_states

        progress(f"before compaction: status (no cache, warm) and claim, {n_before} runs each")
        b_cold: list[Sample] = []
        for _ in range(n_before):
            drop_cache(big)
            b_cold.append(big.timed_fg("status", PLAN, "--json"))
        big.fg("status", PLAN, "--json")
        b_warm = [big.timed_fg("status", PLAN, "--json") for _ in range(n_before)]
        b_claim = [claim_release(big) for _ in range(n_before)]

        progress(f"compact {PLAN} --keep {KEEP}")
        big.fg("status", PLAN, "--json")
        comp = big.timed_fg("compact", PLAN, "--keep", str(KEEP))
        lines_after = len(log_path.read_bytes().splitlines())
        after_states = states(big)
        same = after_states == before_states
        extra["long_log_lines_after"] = lines_after
        dirty = big.git("status", "--porcelain", "--", ".flow").stdout.decode().strip()
        assert not dirty, dirty

        progress(f"after compaction vs a fresh task: status warm ({n} runs), no cache ({n_cold}), "
                 f"claim ({n}), interleaved")
        res: dict[str, list[Sample]] = {k: [] for k in ("warm", "warm_f", "cold", "cold_f", "claim", "claim_f")}
        for r in (big, fresh):
            r.fg("status", PLAN, "--json")
            claim_release(r)
        for i in range(n):
            pair = ((big, ""), (fresh, "_f")) if i % 2 == 0 else ((fresh, "_f"), (big, ""))
            for r, sfx in pair:
                res["warm" + sfx].append(r.timed_fg("status", PLAN, "--json"))
            for r, sfx in pair:
                res["claim" + sfx].append(claim_release(r))
        for i in range(n_cold):
            for r, sfx in (((big, ""), (fresh, "_f")) if i % 2 == 0 else ((fresh, "_f"), (big, ""))):
                drop_cache(r)
                res["cold" + sfx].append(r.timed_fg("status", PLAN, "--json"))
        extra["load_after"] = loadavg()

    def ratio(k: str) -> float:
        return wall(res[k]) / wall(res[k + "_f"])

    def cpu_ratio(k: str) -> float:
        return cpu(res[k]) / cpu(res[k + "_f"])

    size = f"{extra['long_log_bytes'] / 1e6:.0f} MB"
    rows += [
        Row(f"before: status --json, {LONG} with {LONG_EVENTS} events ({size}), no cache "
            f"(cpu {ms(cpu(b_cold))}, min {ms(lo(b_cold))})", ms(wall(b_cold))),
        Row(f"before: status --json, warm cache (cpu {ms(cpu(b_warm))}, min {ms(lo(b_warm))})", ms(wall(b_warm))),
        Row(f"before: claim {LONG} (cpu {ms(cpu(b_claim))}, min {ms(lo(b_claim))})", ms(wall(b_claim))),
        Row(f"compact {PLAN} --keep {KEEP}: {LONG_EVENTS} events -> {lines_after} (cpu {ms(comp.cpu)})",
            ms(comp.wall)),
        Row("state of every task the same after compaction", "yes" if same else "NO", "yes", same),
        Row(f"after: status --json, warm (cpu {ms(cpu(res['warm']))}, min {ms(lo(res['warm']))})",
            ms(wall(res["warm"]))),
        Row(f"fresh task: status --json, warm (cpu {ms(cpu(res['warm_f']))}, min {ms(lo(res['warm_f']))})",
            ms(wall(res["warm_f"]))),
        Row(f"status warm: compacted / fresh (cpu ratio {cpu_ratio('warm'):.2f}x)", f"{ratio('warm'):.2f}x",
            f"<= {TARGET_RATIO}x", ratio("warm") <= TARGET_RATIO),
        Row(f"after: status --json, no cache (cpu {ms(cpu(res['cold']))}, min {ms(lo(res['cold']))})",
            ms(wall(res["cold"]))),
        Row(f"fresh task: status --json, no cache (cpu {ms(cpu(res['cold_f']))}, min {ms(lo(res['cold_f']))})",
            ms(wall(res["cold_f"]))),
        Row(f"status no cache: compacted / fresh (cpu ratio {cpu_ratio('cold'):.2f}x)", f"{ratio('cold'):.2f}x",
            f"<= {TARGET_RATIO}x", ratio("cold") <= TARGET_RATIO),
        Row(f"after: claim {LONG} (cpu {ms(cpu(res['claim']))}, min {ms(lo(res['claim']))})",
            ms(wall(res["claim"]))),
        Row(f"fresh task: claim {LONG} (cpu {ms(cpu(res['claim_f']))}, min {ms(lo(res['claim_f']))})",
            ms(wall(res["claim_f"]))),
        Row(f"claim: compacted / fresh (cpu ratio {cpu_ratio('claim'):.2f}x)", f"{ratio('claim'):.2f}x",
            f"<= {TARGET_RATIO}x", ratio("claim") <= TARGET_RATIO),
    ]
    extra["samples"] = {k: [(s.wall, s.cpu) for s in v] for k, v in res.items()} | {
        "before_cold": [(s.wall, s.cpu) for s in b_cold], "before_warm": [(s.wall, s.cpu) for s in b_warm],
        "before_claim": [(s.wall, s.cpu) for s in b_claim], "compact": [(comp.wall, comp.cpu)]}
    print_table(f"bench_compact (issue 7): {machine()}; load {extra['load_before']} -> {extra['load_after']}", rows)
    write_json(json_out, "compact", rows, extra)
    return rows


def main() -> int:
    args = base_parser(__doc__).parse_args()
    rows = run(args.quick, args.keep, args.json_out)
    return 1 if args.strict and any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
