"""Bytes an agent reads for one loop of work (issue 15): `prime`, `claim --context`, `done`,
through the CLI and through `flowgit mcp` (the `mcp` extra), on a 6-task plan (the built-in webhooks example) and a generated 200-task plan.
The goal is at most 8,000 bytes for the loop on both. `status` (what an agent read before
`prime` existed) is measured beside it for comparison, outside the loop.

    python bench/agent_bytes.py [--json FILE] [--keep] [--sizes 6,200]

Not a timing: the figures are byte counts of stdout, the same on any machine. Each loop runs
in a fresh repository (pinned identity, its own HOME), as real processes. Each channel is one
entry of CHANNELS; the MCP one also gives the bytes of the tool list."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import ROOT, Runner, Workspace  # noqa: E402

GOAL_BYTES = 8000
WORKER = "agent-1"
PLAN = "big"


def plan_text(n: int) -> str:
    """A realistic plan of `n` tasks: each with a description, two acceptance criteria, files
    and 0-2 dependencies on earlier tasks, a checkpoint every 50 tasks."""
    lines = [f"id: {PLAN}", f"title: A generated plan of {n} tasks",
             "goal: Exercise what an agent reads for one task of a big plan",
             "scope:", "  included: [the service, its store, its API]", "  excluded: [the UI]",
             "tasks:"]
    for i in range(n):
        lines += [f"  - id: T-{i:04d}",
                  f"    title: \"Step {i}: implement part {i} of the service\"",
                  f"    description: \"Add part {i}; keep the public API as it is and cover it with tests.\"",
                  f"    files: [src/part_{i:04d}.py, tests/test_part_{i:04d}.py]",
                  f"    acceptance: [\"part {i} has unit tests\", \"the suite passes\"]"]
        deps = [f"T-{d:04d}" for d in (i - 1, i - 7) if d >= 0 and i % 3 != 0]
        if deps:
            lines.append(f"    depends_on: [{', '.join(deps)}]")
    cps = [(f"CP-{k}", f"T-{min(k * 50 + 49, n - 1):04d}") for k in range(max(1, n // 50))]
    lines.append("checkpoints:")
    for cp, after in cps:
        lines += [f"  - id: {cp}", f"    after: [{after}]"]
    return "\n".join(lines) + "\n"


def spec_text(n: int) -> str:
    """A spec with one requirement per ten tasks, each naming the tasks it covers."""
    lines = [f"plan: {PLAN}", "requirements:"]
    for k in range(max(1, n // 10)):
        tasks = ", ".join(f"T-{i:04d}" for i in range(k * 10, min(k * 10 + 10, n)))
        lines += [f"  - id: R-{k}", "    kind: ubiquitous",
                  f"    text: The service shall handle part group {k} as specified", f"    tasks: [{tasks}]"]
    lines += ["questions:", "  - id: Q-1", "    question: Which store backs the service?",
              "    options: [SQLite, Postgres]"]
    return "\n".join(lines) + "\n"


def prepare(ws: Workspace, n: int, name: str) -> tuple[Runner, str]:
    r = ws.new_repo(name)
    if n == 6:
        plan_id = "webhooks"
        src = ROOT / "flowgit" / "examples" / "webhooks.yaml"
        r.fg("plan", "new", plan_id, "--from", str(src))
    else:
        plan_id = PLAN
        src = ws.path / f"plan{n}.yaml"
        src.write_text(plan_text(n))
        r.fg("plan", "new", plan_id, "--from", str(src))
        (r.repo / ".flow" / "plans" / plan_id / "spec.yaml").write_text(spec_text(n))
        r.git("add", ".flow")
        r.git("commit", "-q", "-m", "spec")
    r.fg("submit", plan_id)
    return r, plan_id


def measure_cli(ws: Workspace, n: int, as_json: bool) -> dict[str, Any]:
    """One loop through the CLI: each step's stdout bytes."""
    r, plan_id = prepare(ws, n, f"cli{'-json' if as_json else ''}-{n}")
    j = ["--json"] if as_json else []
    steps: dict[str, int] = {}
    steps["status (for comparison)"] = len(r.fg(*j, "status", plan_id).stdout)
    steps["prime"] = len(r.fg(*j, "prime", "--worker", WORKER).stdout)
    claim = r.fg(*j, "claim", plan_id, "--worker", WORKER, "--context")
    steps["claim --context"] = len(claim.stdout)
    first = claim.stdout.decode().splitlines()[0]
    task = json.loads(claim.stdout)["task"] if as_json else first.split()[1]
    steps["done"] = len(r.fg(*j, "done", task, "--worker", WORKER, "--note",
                             "implemented it with tests; the suite passes").stdout)
    loop = steps["prime"] + steps["claim --context"] + steps["done"]
    return {"channel": "cli" + (" --json" if as_json else ""), "tasks": n, "steps": steps,
            "loop": loop, "goal": GOAL_BYTES, "ok": loop <= GOAL_BYTES}


def measure_mcp(ws: Workspace, n: int) -> dict[str, Any]:
    """One loop through `flowgit mcp` with the official MCP client (the `mcp` package's stdio
    client): the bytes of each result as the model reads it (its text, and any structured copy),
    and the bytes of the tool list on the wire."""
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    r, plan_id = prepare(ws, n, f"mcp-{n}")
    params = StdioServerParameters(command=r.flowgit[0], args=[*r.flowgit[1:], "mcp"], env=r.env,
                                   cwd=str(r.repo))
    steps: dict[str, int] = {}
    extra: dict[str, int] = {}

    async def loop() -> None:
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                listed = await session.list_tools()
                extra["tool_list"] = len(listed.model_dump_json(by_alias=True, exclude_none=True).encode())

                async def call(name: str, **args: Any) -> tuple[int, str]:
                    res = await session.call_tool(name, args)
                    if res.is_error:
                        raise RuntimeError(f"{name}: {res.content}")
                    text = "".join(getattr(c, "text", "") for c in res.content)
                    copy = json.dumps(res.structured_content) if res.structured_content is not None else ""
                    return len(text.encode()) + len(copy.encode()), text

                steps["status (for comparison)"], _ = await call("status", plan=plan_id)
                steps["prime"], _ = await call("prime", worker=WORKER)
                steps["claim --context"], text = await call("claim", target=plan_id, worker=WORKER, context=True)
                steps["done"], _ = await call("done", task=json.loads(text)["task"], worker=WORKER,
                                              note="implemented it with tests; the suite passes")

    anyio.run(loop)
    loop_bytes = steps["prime"] + steps["claim --context"] + steps["done"]
    return {"channel": "mcp", "tasks": n, "steps": steps, "loop": loop_bytes, "goal": GOAL_BYTES,
            "ok": loop_bytes <= GOAL_BYTES, **extra}


CHANNELS: dict[str, Callable[[Workspace, int], dict[str, Any]]] = {
    "cli": lambda ws, n: measure_cli(ws, n, False),
    "cli --json": lambda ws, n: measure_cli(ws, n, True),
    "mcp": measure_mcp,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", dest="json_out", type=Path, help="Also write the figures to FILE.")
    parser.add_argument("--keep", action="store_true", help="Keep the temp repositories.")
    parser.add_argument("--sizes", default="6,200", help="Plan sizes (6 is the webhooks example).")
    args = parser.parse_args()
    rows = []
    channels = dict(CHANNELS)
    if importlib.util.find_spec("mcp") is None:
        del channels["mcp"]
        print("(no mcp package: the MCP channel is left out; pip install 'flowgit[mcp]')", file=sys.stderr)
    with Workspace(keep=args.keep) as ws:
        for n in [int(s) for s in args.sizes.split(",")]:
            for measure in channels.values():
                rows.append(measure(ws, n))
    print(f"{'channel':<12} {'tasks':>5} {'status*':>8} {'prime':>7} {'claim+ctx':>10} {'done':>6} "
          f"{'loop':>7}  goal {GOAL_BYTES}")
    for row in rows:
        s = row["steps"]
        print(f"{row['channel']:<12} {row['tasks']:>5} {s['status (for comparison)']:>8} {s['prime']:>7} "
              f"{s['claim --context']:>10} {s['done']:>6} {row['loop']:>7}  {'ok' if row['ok'] else 'OVER'}")
    print("* status is not part of the loop: prime replaces it")
    for row in rows:
        if "tool_list" in row:
            print(f"MCP tool list: {row['tool_list']} bytes on the wire ({row['tasks']}-task plan's server)")
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
