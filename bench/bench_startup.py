"""The Python CPU of one flowgit process (ADR 0007): what issue 14's many-clones rate pays per
claim and done, with the interpreter's own start beside it.

In one format 2 clone of a bare remote (the state branch, as `flowgit init` makes it; a plan
of independent tasks), each round runs, order fixed: `python -c pass`, `import flowgit.cli.main`
and `import flowgit.main` (what every process imports before its command), `status PLAN --json`, `status` (text), a local
`claim PLAN` and its `done`, a `claim PLAN --sync` and its `done`. Each is a whole process whose
CPU (user+sys) is split into its own (`self`: the interpreter, imports, the command) and that of
the git processes it waited for (`git`), from getrusage at its end; medians over the rounds.

`--compare DIR` runs every row a second time, interleaved, with the flowgit package of DIR
first on PYTHONPATH (e.g. `git archive OLD flowgit | tar -x -C DIR`): before and after side
by side on the same machine at the same load.

Run: python bench/bench_startup.py [--quick] [--rounds N] [--tasks N] [--compare DIR] [--json FILE]
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_state import seeded_clones  # noqa: E402
from common import PLAN, Row, Workspace, base_parser, loadavg, machine, median, print_table, progress, write_json  # noqa: E402,E501

# a flowgit process as the console script runs it, which reports its own CPU and its children's
# at exit (on stderr's last line)
WRAP = """import resource, sys
from flowgit.main import main
code = 1
try:
    code = main(sys.argv[1:])
finally:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    sys.stderr.write(f"\\nRUSAGE {s.ru_utime + s.ru_stime} {c.ru_utime + c.ru_stime}\\n")
sys.exit(code)
"""
SELF_ONLY = """import resource, sys
{code}
s = resource.getrusage(resource.RUSAGE_SELF)
sys.stderr.write(f"\\nRUSAGE {{s.ru_utime + s.ru_stime}} 0\\n")
"""


def measured(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(own CPU, children's CPU) in seconds and stdout of one process."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    last = proc.stderr.rstrip().splitlines()[-1] if proc.stderr.strip() else ""
    if proc.returncode != 0 or not last.startswith("RUSAGE "):
        raise RuntimeError(f"{argv[3:]} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
    own, children = (float(x) for x in last.split()[1:])
    return own, children, proc.stdout


def one_round(repo: Path, env: dict[str, str], worker: str, out: dict[str, list[tuple[float, float]]],
              label: str) -> None:
    py = sys.executable

    def fg(row: str, *args: str) -> str:
        own, children, stdout = measured([py, "-c", WRAP, *args], repo, env)
        out.setdefault(f"{row}{label}", []).append((own, children))
        return stdout

    for row, code in (("python -c pass", "pass"), ("import flowgit.cli.main", "import flowgit.cli.main"),
                      ("import flowgit.main", "import flowgit.main")):
        own, _, _ = measured([py, "-c", SELF_ONLY.format(code=code)], repo, env)
        out.setdefault(f"{row}{label}", []).append((own, 0.0))
    fg("status PLAN --json", "status", PLAN, "--json")
    fg("status (text)", "status")
    task = json.loads(fg("claim PLAN (local)", "claim", PLAN, "--worker", worker, "--json"))["task"]
    fg("done", "done", task, "--worker", worker)
    task = json.loads(fg("claim PLAN --sync", "claim", PLAN, "--sync", "--worker", worker, "--json"))["task"]
    fg("done (after --sync)", "done", task, "--worker", worker)


def main() -> int:
    p = base_parser(__doc__ or "")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--tasks", type=int, default=0, help="tasks in the plan (default: 2 per round + 10)")
    p.add_argument("--compare", metavar="DIR", help="a tree holding another flowgit/ to run beside this one")
    a = p.parse_args()
    rounds = 5 if a.quick else a.rounds
    variants = [("", None)] + ([(" [compare]", str(Path(a.compare).resolve()))] if a.compare else [])
    load0 = loadavg()
    with Workspace(keep=a.keep) as ws:
        progress("seeding a format 2 clone")
        clone = seeded_clones(ws, 1, a.tasks or 2 * rounds * len(variants) + 10)[0]
        env = dict(ws.env)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled byte code is part of a warm start
        envs = {label: {**env, **({"PYTHONPATH": where} if where else {})} for label, where in variants}
        samples: dict[str, list[tuple[float, float]]] = {}
        for label, _ in variants:  # one unmeasured round: byte code compiled, caches warm
            one_round(clone.repo, envs[label], "warm", {}, label)
        t0 = time.perf_counter()
        for i in range(rounds):
            progress(f"round {i + 1}/{rounds}")
            for label, _ in variants:
                one_round(clone.repo, envs[label], "w1", samples, label)
        elapsed = time.perf_counter() - t0
    rows = []
    for name, got in sorted(samples.items(), key=lambda kv: list(samples).index(kv[0].replace(" [compare]", ""))):
        own, children = median(x[0] for x in got), median(x[1] for x in got)
        rows.append(Row(name, f"{1000 * (own + children):.1f} ms CPU: self {1000 * own:.1f}, "
                              f"git {1000 * children:.1f}"))
    info = f"{machine()}; {rounds} rounds in {elapsed:.0f} s; load {load0} -> {loadavg()}"
    print_table(f"bench_startup: CPU per process, medians ({info})", rows)
    extra: dict[str, Any] = {"rounds": rounds, "samples": {k: v for k, v in samples.items()}}
    write_json(a.json_out, "bench_startup", rows, extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
