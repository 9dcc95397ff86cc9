"""Run every flowgit benchmark and print their tables, then a summary of the targets.

    python bench/run.py [--quick] [--only status,done,watch,review,run,compact,board,taskedit,state,clones] [--out DIR] [--strict]

Each bench runs in its own process (so one failing does not stop the others) and can be run
alone: python bench/bench_status.py | bench_done.py | bench_watch.py | bench_review.py |
bench_run.py | bench_compact.py | bench_board.py | bench_taskedit.py | bench_state.py |
bench_clones.py [--quick].
With --out DIR, each writes DIR/<name>.json (figures, raw samples, machine, load average).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("status", "done", "watch", "review", "run", "compact", "board", "taskedit", "state", "clones")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run, ~5 min)")
    p.add_argument("--only", default=",".join(BENCHES), help="comma-separated: " + ",".join(BENCHES))
    p.add_argument("--out", metavar="DIR", help="write each bench's results as DIR/<name>.json")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="flowgit-bench-results-"))
    out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(BENCHES)
    if unknown:
        p.error(f"unknown bench(es): {', '.join(sorted(unknown))}")
    failed: list[str] = []
    misses: list[str] = []
    t0 = time.time()
    print(f"# flowgit benchmarks ({time.strftime('%Y-%m-%d %H:%M:%S %z')})", flush=True)
    for name in names:
        argv = [sys.executable, str(HERE / f"bench_{name}.py"), "--json", str(out / f"{name}.json")]
        if args.quick:
            argv.append("--quick")
        rc = subprocess.call(argv)
        if rc != 0:
            failed.append(f"{name} (exit {rc})")
            continue
        data = json.loads((out / f"{name}.json").read_text())
        misses += [f"{name}: {r['what']} = {r['value']} (target {r['target']})"
                   for r in data["rows"] if r["ok"] is False]
    print(f"\n# summary ({time.time() - t0:.0f} s; results in {out})")
    for line in failed:
        print(f"  ERROR  {line}")
    for line in misses:
        print(f"  MISS   {line}")
    if not failed and not misses:
        print("  every target met")
    return 1 if failed or (args.strict and misses) else 0


if __name__ == "__main__":
    raise SystemExit(main())
