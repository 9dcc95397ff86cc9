"""Issue 2 speed: `status PLAN --json` and `next PLAN` on a 2,000-task plan with 20,000 events.

Measures, as whole processes (spawn to exit):
  - median time with a warm cache (each command run once to warm it first),
  - the ratio to the same command on a 20-task plan of the same shape (10 events a task),
  - median time with no cache (the derived cache (`.git/flowgit/cache`, `plans`) deleted before each run, outside the timing),
  - `validate .flow/plans/big`,
  - that `status` imports neither jsonschema nor watchdog (`python -X importtime`),
and checks that the answer is the same with and without the cache.

Run: python bench/bench_status.py [--quick] [--json FILE]
"""
from __future__ import annotations

import json
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
    drop_cache,
    has_module,
    import_report,
    lo,
    loadavg,
    machine,
    ms,
    print_table,
    progress,
    wall,
    write_json,
    write_plan,
)

BIG = (2000, 20000)
SMALL = (20, 200)
CHECKPOINTS = 3

TARGET_WARM = 0.150
TARGET_RATIO = 1.5
TARGET_COLD = 1.0
TARGET_VALIDATE = 1.0


def _stable(data: dict) -> dict:
    """The parts of `status --json` that do not depend on the clock."""
    return {k: data[k] for k in ("phase", "progress", "counts", "ready", "stalled", "checkpoints")} | {
        "tasks": [(t["id"], t["state"], t.get("worker"), t["attempts"]) for t in data["tasks"]]}


def run(quick: bool = False, keep: bool = False, json_out: str | None = None) -> list[Row]:
    n = 5 if quick else 15
    n_cold = 3 if quick else 7
    n_val = 2 if quick else 5
    rows: list[Row] = []
    extra: dict = {"load_before": loadavg()}
    with Workspace(keep=keep) as ws:
        progress(f"generating plans: {BIG[0]} tasks/{BIG[1]} events and {SMALL[0]} tasks/{SMALL[1]} events")
        big = ws.new_repo("big")
        info_big = write_plan(big, *BIG, checkpoints=CHECKPOINTS)
        small = ws.new_repo("small")
        info_small = write_plan(small, *SMALL, checkpoints=CHECKPOINTS)
        extra["plans"] = {"big": info_big, "small": info_small}

        # correctness first: the cache changes no answer, and the plan is what we think it is
        drop_cache(big)
        cold = json.loads(big.fg("status", PLAN, "--json").stdout)
        warm = json.loads(big.fg("status", PLAN, "--json").stdout)
        assert len(cold["tasks"]) == BIG[0], len(cold["tasks"])
        assert _stable(cold) == _stable(warm), "status differs with and without the cache"
        extra["status_counts"] = cold["counts"]
        nxt = big.fg("next", PLAN, "--json").stdout
        assert json.loads(nxt)["task"].startswith(f"{PLAN}/"), nxt

        results: dict[str, dict[str, list[Sample]]] = {}
        for cmd in (("status", PLAN, "--json"), ("next", PLAN)):
            name = cmd[0]
            progress(f"{name}: warm cache, {n} runs each on {BIG[0]} and {SMALL[0]} tasks (interleaved)")
            big.fg(*cmd)
            small.fg(*cmd)
            res: dict[str, list[Sample]] = {"big": [], "small": [], "cold": [], "small_cold": []}
            for _ in range(n):
                res["big"].append(big.timed_fg(*cmd))
                res["small"].append(small.timed_fg(*cmd))
            progress(f"{name}: no cache, {n_cold} runs")
            for _ in range(n_cold):
                drop_cache(big)
                res["cold"].append(big.timed_fg(*cmd))
                drop_cache(small)
                res["small_cold"].append(small.timed_fg(*cmd))
            big.fg(*cmd)  # leave it warm
            results[name] = res
            wb, ws_, wc = wall(res["big"]), wall(res["small"]), wall(res["cold"])
            label = f"{name} PLAN" + (" --json" if "--json" in cmd else "")
            rows += [
                Row(f"{label}, {BIG[0]} tasks, warm cache (cpu {ms(cpu(res['big']))}, min {ms(lo(res['big']))})", ms(wb),
                    f"<= {ms(TARGET_WARM)}", wb <= TARGET_WARM),
                Row(f"{label}, {SMALL[0]} tasks, warm cache (cpu {ms(cpu(res['small']))}, min {ms(lo(res['small']))})", ms(ws_)),
                Row(f"{label}: ratio {BIG[0]} / {SMALL[0]} tasks, warm "
                    f"(cpu ratio {cpu(res['big']) / cpu(res['small']):.2f}x)", f"{wb / ws_:.2f}x",
                    f"<= {TARGET_RATIO}x", wb / ws_ <= TARGET_RATIO),
                Row(f"{label}, {BIG[0]} tasks, no cache (cpu {ms(cpu(res['cold']))}, min {ms(lo(res['cold']))})", ms(wc),
                    f"<= {ms(TARGET_COLD)}", wc <= TARGET_COLD),
                Row(f"{label}, {SMALL[0]} tasks, no cache", ms(wall(res["small_cold"]))),
            ]

        progress(f"validate .flow/plans/{PLAN}: {n_val} runs")
        big.fg("validate", f".flow/plans/{PLAN}")
        val = [big.timed_fg("validate", f".flow/plans/{PLAN}") for _ in range(n_val)]
        wv = wall(val)
        rows.append(Row(f"validate .flow/plans/{PLAN}, {BIG[0]} tasks/{BIG[1]} events "
                        f"(cpu {ms(cpu(val))}, min {ms(lo(val))})", ms(wv), f"<= {ms(TARGET_VALIDATE)}", wv <= TARGET_VALIDATE))
        results["validate"] = {"big": val}

        progress("imports of `status` and `next` (-X importtime)")
        imports = {}
        for cmd in (("status", PLAN, "--json"), ("next", PLAN)):
            rep = import_report(big, cmd, runs=1 if quick else 3)
            imports[cmd[0]] = rep
            heavy = [m for m in ("jsonschema", "watchdog", "git", "ruamel", "fastjsonschema")
                     if has_module(rep, m)]
            forbidden = [m for m in heavy if m in ("jsonschema", "watchdog")]
            rows.append(Row(f"`{cmd[0]}` imports (of jsonschema, watchdog, git, ruamel)",
                            ", ".join(heavy) or "none of them", "no jsonschema, no watchdog",
                            not forbidden))
            rows.append(Row(f"`{cmd[0]}` import time, all modules", ms(rep["total_us"] / 1e6)))
        extra["imports_top"] = {k: v["top"] for k, v in imports.items()}
        extra["imports_top_self"] = {k: v["top_self"] for k, v in imports.items()}
        extra["load_after"] = loadavg()
        extra["samples"] = {k: {kk: [(s.wall, s.cpu) for s in vv] for kk, vv in v.items()}
                            for k, v in results.items()}

    print_table(f"bench_status (issue 2): {machine()}; load {extra['load_before']} -> {extra['load_after']}", rows)
    print("\nlargest imports of `status` (cumulative, median):")
    for name, us in imports["status"]["top"][:10]:
        print(f"  {us / 1000:7.1f} ms  {name}")
    write_json(json_out, "status", rows, extra)
    return rows


def main() -> int:
    args = base_parser(__doc__).parse_args()
    rows = run(args.quick, args.keep, args.json_out)
    return 1 if args.strict and any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
