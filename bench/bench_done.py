"""Issue 3 speed: `done` as a whole process, and 8 workers on one repository.

1. `done` vs plain git, interleaved in one run: for each round, `claim` a task (not timed),
   then time `flowgit done TASK` and, in the same repository, a plain `git add` + `git commit`
   of a one-line change to a tracked file (src/work.txt); the order alternates each round.
   Done at 20 tasks (200 events) and at 2,000 tasks (20,000 events): ratio done/git in each,
   and the ratio of `done` at 2,000 tasks to `done` at 20 tasks.
2. 8 worker processes looping `claim` / `done` on one repository (a 200-task plan with
   dependencies): successful transitions per second, against one process making serialized
   plain `git add` + `git commit`s per second (8 processes committing at once would fail on
   index.lock). Counts failed transitions (exit codes other than 0, and 3 from a claim that
   found nothing ready yet), and checks every task was done exactly once.
3. The same `done` through `flowgit mcp` (one long-lived process, as an agent uses it), when
   the `mcp` extra is installed: the time of the tool call against the same plain git commit,
   to show what start-up costs (docs/adr/0007).
4. Start-up (`--only startup` runs this alone): `done` in format 2 (the state branch, what
   `flowgit init` makes) at 2,000 tasks / 20,000 events, side by side with the plain
   `git add` + `git commit` in the same repository, `python -c pass` (the interpreter, the
   floor of any Python command) and importing what `done` imports; order rotating each round;
   then the same `done` as a `flowgit mcp` tool call (start-up paid once), when installed.

Run: python bench/bench_done.py [--quick] [--only startup] [--json FILE]
"""
from __future__ import annotations

import json
import os
import resource
import sys
import threading
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
    has_module,
    import_report,
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

BIG = (2000, 20000)
SMALL = (20, 200)
WORKERS = 8

TARGET_VS_GIT = 2.0
TARGET_SIZE_RATIO = 1.3
TARGET_RATE_RATIO = 0.5


def plain_commit(r: Runner, i: int) -> Sample:
    """A one-line change to a tracked file, `git add` and `git commit`: the baseline.
    `--no-verify`, as flowgit's own commits: pure git, not the pre-commit hook `flowgit init`
    installs (that hook adds a `sh` and a `git diff --cached` to every commit)."""
    t0 = time.perf_counter()
    with open(r.repo / "src" / "work.txt", "a") as f:
        f.write(f"line {i}\n")
    s = r.timed(["git", "add", "src/work.txt"]) + r.timed(["git", "commit", "-q", "--no-verify",
                                                            "-m", f"plain {i}"])
    return Sample(time.perf_counter() - t0, s.cpu, s.rc)


def claim(r: Runner, worker: str, target: str = PLAN) -> str | None:
    proc = r.fg("claim", target, "--worker", worker, "--json", check=False)
    if proc.returncode == 3:
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"claim exited {proc.returncode}: {proc.stdout.decode()} {proc.stderr.decode()}")
    return json.loads(proc.stdout)["task"]


def done_vs_git(r: Runner, rounds: int, label: str) -> tuple[list[Sample], list[Sample]]:
    progress(f"done vs git add+commit, {label}: {rounds} rounds (interleaved)")
    task = claim(r, "warmup")  # warm the cache and the page cache once, untimed
    assert task, "nothing to claim"
    r.fg("done", task, "--worker", "warmup")
    plain_commit(r, -1)
    dones: list[Sample] = []
    plains: list[Sample] = []
    for i in range(rounds):
        task = claim(r, "w1")
        assert task, f"nothing left to claim in round {i}"
        if i % 2 == 0:
            dones.append(r.timed_fg("done", task, "--worker", "w1"))
            plains.append(plain_commit(r, i))
        else:
            plains.append(plain_commit(r, i))
            dones.append(r.timed_fg("done", task, "--worker", "w1"))
    return dones, plains


def done_via_mcp(r: Runner, rounds: int) -> tuple[list[float], list[float]] | None:
    """`done` as an MCP tool call to one `flowgit mcp` server, interleaved with plain commits."""
    try:
        import anyio
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client
    except ImportError:
        return None
    progress(f"done through `flowgit mcp`: {rounds} rounds (interleaved with git)")
    params = StdioServerParameters(command=r.flowgit[0], args=[*r.flowgit[1:], "mcp"],
                                   env=r.env, cwd=str(r.repo))
    dones: list[float] = []
    plains: list[float] = []

    async def session_rounds() -> None:
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                for i in range(rounds + 1):
                    claimed = await session.call_tool("claim", {"target": PLAN, "worker": "mcp"})
                    data = claimed.structured_content or json.loads(claimed.content[0].text)
                    task = data.get("result", data)["task"]
                    t0 = time.perf_counter()
                    res = await session.call_tool("done", {"task": task, "worker": "mcp"})
                    took = time.perf_counter() - t0
                    assert not res.is_error, res.content
                    if i:  # the first round warms the server's caches
                        dones.append(took)
                        plains.append(plain_commit(r, 1000 + i).wall)

    anyio.run(session_rounds)
    return dones, plains


def workers_run(r: Runner, n_tasks: int, workers: int) -> dict:
    """`workers` threads, each looping claim/done through its own flowgit processes."""
    lock = threading.Lock()
    stats = {"ok": 0, "failed": 0, "nothing_ready": 0, "done": 0, "errors": []}
    stop = threading.Event()

    def worker(name: str) -> None:
        while not stop.is_set():
            proc = r.fg("claim", PLAN, "--worker", name, "--json", check=False)
            if proc.returncode == 3:
                with lock:
                    stats["nothing_ready"] += 1
                    finished = stats["done"] >= n_tasks
                if finished:
                    return
                time.sleep(0.05)
                continue
            if proc.returncode != 0:
                with lock:
                    stats["failed"] += 1
                    stats["errors"].append(f"claim rc={proc.returncode}: {proc.stdout.decode()[:200]}")
                continue
            task = json.loads(proc.stdout)["task"]
            with lock:
                stats["ok"] += 1
            proc = r.fg("done", task, "--worker", name, "--json", check=False)
            with lock:
                if proc.returncode == 0:
                    stats["ok"] += 1
                    stats["done"] += 1
                else:
                    stats["failed"] += 1
                    stats["errors"].append(f"done {task} rc={proc.returncode}: {proc.stdout.decode()[:200]}")

    threads = [threading.Thread(target=worker, args=(f"w{k}",)) for k in range(workers)]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["seconds"] = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats["cpu_seconds"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return stats


def workers_via_mcp(r: Runner, n_tasks: int, workers: int) -> dict | None:
    """The same loop, each worker one `flowgit mcp` server it keeps (start-up paid once)."""
    try:
        import anyio
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client
    except ImportError:
        return None
    params = StdioServerParameters(command=r.flowgit[0], args=[*r.flowgit[1:], "mcp"],
                                   env=r.env, cwd=str(r.repo))
    stats = {"ok": 0, "failed": 0, "nothing_ready": 0, "done": 0, "errors": []}

    async def worker(name: str, ready: anyio.Event, go: anyio.Event, started: list[str]) -> None:
        # errlog: the servers log each refused claim ("nothing ready yet") to stderr
        async with stdio_client(params, errlog=quiet) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                started.append(name)
                if len(started) == workers:
                    ready.set()
                await go.wait()
                while True:
                    res = await session.call_tool("claim", {"target": PLAN, "worker": name})
                    if res.is_error:
                        text = res.content[0].text
                        if "exit 3" in text:
                            stats["nothing_ready"] += 1
                            if stats["done"] >= n_tasks:
                                return
                            await anyio.sleep(0.05)
                            continue
                        stats["failed"] += 1
                        stats["errors"].append(f"claim: {text[:200]}")
                        continue
                    data = res.structured_content or json.loads(res.content[0].text)
                    task = data.get("result", data)["task"]
                    stats["ok"] += 1
                    res = await session.call_tool("done", {"task": task, "worker": name})
                    if res.is_error:
                        stats["failed"] += 1
                        stats["errors"].append(f"done {task}: {res.content[0].text[:200]}")
                    else:
                        stats["ok"] += 1
                        stats["done"] += 1

    async def all_workers() -> None:
        ready, go, started = anyio.Event(), anyio.Event(), []
        async with anyio.create_task_group() as tg:
            for k in range(workers):
                tg.start_soon(worker, f"m{k}", ready, go, started)
            await ready.wait()  # every server started: time the work, not the start-up
            t0 = time.perf_counter()
            go.set()
            stats["t0"] = t0
        stats["seconds"] = time.perf_counter() - stats.pop("t0")

    with open(os.devnull, "w") as quiet:
        anyio.run(all_workers)
    return stats


def check_exactly_once(r: Runner, n_tasks: int) -> list[str]:
    """Every task has exactly one claim and one done in its log; status agrees."""
    problems = []
    status = json.loads(r.fg("status", PLAN, "--json").stdout)
    if status["counts"]["done"] != n_tasks:
        problems.append(f"{status['counts']['done']} of {n_tasks} tasks done")
    evdir = r.repo / ".flow" / "plans" / PLAN / "events"
    for log in evdir.glob("T-*.jsonl"):
        types = [json.loads(line)["type"] for line in log.read_text().splitlines()]
        if types.count("task.claimed") != 1 or types.count("task.done") != 1:
            problems.append(f"{log.name}: {types}")
    dirty = r.git("status", "--porcelain", "--", ".flow").stdout.decode().strip()
    if dirty:
        problems.append(f"uncommitted .flow changes: {dirty[:200]}")
    return problems


TARGET_F2_TODAY = 3.7  # issue 14: `done` no slower than 3.7x git add + commit (the goal stays 2.0x)
DONE_IMPORTS = "import flowgit.main, flowgit.cli.tasks_cli, flowgit.cli.commands.tasks"


def startup(ws: Workspace, rounds: int) -> tuple[list[Row], dict[str, list[tuple[float, float]]]]:
    """`done` in format 2 against plain git, the bare interpreter and its own imports."""
    progress(f"start-up: format 2, {BIG[0]} tasks / {BIG[1]} events (generate, migrate)")
    r = ws.new_repo("startup-f2")
    write_plan(r, *BIG, done_fraction=0.7)
    r.fg("migrate")
    r.fg("status", PLAN, "--json")  # the cache warm, as in a used repository
    task = claim(r, "warm")
    assert task
    r.fg("done", task, "--worker", "warm")
    plain_commit(r, -1)
    progress(f"start-up: done, git add + commit, python -c pass, imports; {rounds} rounds, order rotating")
    out: dict[str, list[Sample]] = {"done": [], "git": [], "python": [], "imports": []}
    for i in range(rounds):
        held = claim(r, "w1")
        assert held, f"nothing left to claim in round {i}"
        steps = [("done", lambda: r.timed_fg("done", held, "--worker", "w1")),
                 ("git", lambda: plain_commit(r, i)),
                 ("python", lambda: r.timed([sys.executable, "-c", "pass"])),
                 ("imports", lambda: r.timed([sys.executable, "-c", DONE_IMPORTS]))]
        k = i % len(steps)
        for name, step in steps[k:] + steps[:k]:
            out[name].append(step())
    d, g, py, imp = out["done"], out["git"], out["python"], out["imports"]
    # setuptools' finder of an editable install runs at every interpreter start (ADR 0007)
    install = "editable install" if any(m.startswith("__editable__") for m in sys.modules) else "installed"
    ratio, cpu_ratio = wall(d) / wall(g), cpu(d) / cpu(g)
    rows = [
        Row(f"python -c pass, this interpreter, {install}: the floor (cpu {ms(cpu(py))}, min {ms(lo(py))})",
            ms(wall(py))),
        Row(f"python -c 'import <what done imports>' (cpu {ms(cpu(imp))}, min {ms(lo(imp))})", ms(wall(imp))),
        Row(f"done, format 2, {BIG[0]} tasks/{BIG[1]} events (cpu {ms(cpu(d))}, min {ms(lo(d))})", ms(wall(d))),
        Row(f"git add + commit, same repo (cpu {ms(cpu(g))}, min {ms(lo(g))})", ms(wall(g))),
        Row(f"done / git, format 2 (cpu ratio {cpu_ratio:.1f}x; goal {TARGET_VS_GIT}x)", f"{ratio:.2f}x",
            f"<= {TARGET_F2_TODAY}x", ratio <= TARGET_F2_TODAY),
        Row(f"done above the interpreter: done - python -c pass (cpu {ms(cpu(d) - cpu(py))})",
            ms(wall(d) - wall(py))),
        Row(f"  of which importing (cpu {ms(cpu(imp) - cpu(py))})", ms(wall(imp) - wall(py))),
    ]
    via = done_via_mcp(r, rounds)  # the same repository, start-up paid once
    if via is not None:
        m_done, m_git = median(via[0]), median(via[1])
        rows += [Row("done through `flowgit mcp`, a tool call, same repository", ms(m_done)),
                 Row("  / git add + commit, interleaved", f"{m_done / m_git:.2f}x", f"<= {TARGET_VS_GIT}x",
                     m_done / m_git <= TARGET_VS_GIT)]
    return rows, {k: [(s.wall, s.cpu) for s in v] for k, v in out.items()}


def run(quick: bool = False, keep: bool = False, json_out: str | None = None,
        only: str | None = None) -> list[Row]:
    rounds = 5 if quick else 15
    n_workers_tasks = 48 if quick else 200
    n_serial = 15 if quick else 40
    rows: list[Row] = []
    extra: dict = {"load_before": loadavg()}
    if only == "startup":
        with Workspace(keep=keep) as ws:
            rows, samples = startup(ws, rounds)
        print_table(f"bench_done --only startup (issues 14, 17): {machine()}; load {extra['load_before']} "
                    f"-> {loadavg()}", rows)
        write_json(json_out, "done-startup", rows, {**extra, "samples": samples, "load_after": loadavg()})
        return rows
    with Workspace(keep=keep) as ws:
        progress("generating plans")
        small = ws.new_repo("small")
        write_plan(small, *SMALL, done_fraction=0.1)
        big = ws.new_repo("big")
        write_plan(big, *BIG, done_fraction=0.7)

        d_small, g_small = done_vs_git(small, rounds, f"{SMALL[0]} tasks")
        d_big, g_big = done_vs_git(big, rounds, f"{BIG[0]} tasks")
        rs = wall(d_small) / wall(g_small)
        rb = wall(d_big) / wall(g_big)
        size = wall(d_big) / wall(d_small)
        rows += [
            Row(f"done, {SMALL[0]} tasks (cpu {ms(cpu(d_small))}, min {ms(lo(d_small))})", ms(wall(d_small))),
            Row(f"git add + commit, same repo (cpu {ms(cpu(g_small))}, min {ms(lo(g_small))})", ms(wall(g_small))),
            Row(f"done / git, {SMALL[0]} tasks (cpu ratio {cpu(d_small) / cpu(g_small):.1f}x)", f"{rs:.2f}x", f"<= {TARGET_VS_GIT}x", rs <= TARGET_VS_GIT),
            Row(f"done, {BIG[0]} tasks/{BIG[1]} events (cpu {ms(cpu(d_big))}, min {ms(lo(d_big))})", ms(wall(d_big))),
            Row(f"git add + commit, same repo (cpu {ms(cpu(g_big))}, min {ms(lo(g_big))})", ms(wall(g_big))),
            Row(f"done / git, {BIG[0]} tasks (cpu ratio {cpu(d_big) / cpu(g_big):.1f}x)", f"{rb:.2f}x", f"<= {TARGET_VS_GIT}x", rb <= TARGET_VS_GIT),
            Row(f"done {BIG[0]} tasks / done {SMALL[0]} tasks (cpu ratio {cpu(d_big) / cpu(d_small):.2f}x)",
                f"{size:.2f}x",
                f"<= {TARGET_SIZE_RATIO}x", size <= TARGET_SIZE_RATIO),
        ]
        fresh = ws.new_repo("mcp")  # the same 20-task shape, every task still open
        write_plan(fresh, *SMALL, done_fraction=0.0)
        via = done_via_mcp(fresh, rounds)
        if via is not None:
            m_done, m_git = median(via[0]), median(via[1])
            rows += [
                Row(f"done through `flowgit mcp` (one long-lived process), a tool call, {SMALL[0]} tasks", ms(m_done)),
                Row("git add + commit, same repo", ms(m_git)),
                Row("done through mcp / git", f"{m_done / m_git:.2f}x"),
            ]
        progress("imports of `done` (-X importtime)")
        task = claim(small, "imp")
        rep = import_report(small, ("done", task or "none", "--worker", "imp"), runs=1)
        heavy = [m for m in ("jsonschema", "watchdog", "git", "ruamel") if has_module(rep, m)]
        rows.append(Row("`done` imports (of jsonschema, watchdog, git, ruamel)",
                        ", ".join(heavy) or "none of them", "no jsonschema, no watchdog",
                        not any(m in heavy for m in ("jsonschema", "watchdog"))))

        srows, extra["startup_samples"] = startup(ws, rounds)
        rows += srows

        progress(f"{WORKERS} workers looping claim/done on a {n_workers_tasks}-task plan")
        wr = ws.new_repo("workers")
        write_plan(wr, n_workers_tasks, 0, done_fraction=0.0)
        stats = workers_run(wr, n_workers_tasks, WORKERS)
        problems = check_exactly_once(wr, n_workers_tasks)
        rate = stats["ok"] / stats["seconds"]

        progress(f"one process, {n_serial} serialized git add + git commit in the same repo")
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        for i in range(n_serial):
            plain_commit(wr, i)
        git_rate = n_serial / (time.perf_counter() - t0)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        git_cpu = ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) / n_serial
        ratio = rate / git_rate
        # every process (flowgit, its git children, the claims that found nothing) costs CPU;
        # on this many cores that bounds the rate whatever the lock does
        cpu_per = stats["cpu_seconds"] / max(1, stats["ok"])
        ceiling = (os.cpu_count() or 1) / cpu_per
        rows += [
            Row(f"{WORKERS} workers: transitions/s ({stats['ok']} in {stats['seconds']:.1f} s)", f"{rate:.1f}/s"),
            Row(f"CPU per transition, all processes (git add+commit: {ms(git_cpu)})", ms(cpu_per)),
            Row(f"CPU-bound ceiling on {os.cpu_count()} cores (cores / CPU per transition)", f"{ceiling:.1f}/s"),
            Row("serialized plain git add + commit/s (1 process)", f"{git_rate:.1f}/s"),
            Row(f"{WORKERS} workers rate / serialized git rate", f"{ratio:.2f}x", f">= {TARGET_RATE_RATIO}x",
                ratio >= TARGET_RATE_RATIO),
            Row(f"failed transitions ({stats['nothing_ready']} claims found nothing ready yet)",
                str(stats["failed"]), "0", stats["failed"] == 0),
            Row("every task claimed and done exactly once, all committed",
                "yes" if not problems else f"NO: {problems[0]}", "yes", not problems),
        ]
        progress(f"{WORKERS} workers through `flowgit mcp`, one server each, on a {n_workers_tasks}-task plan")
        wm = ws.new_repo("workers-mcp")
        write_plan(wm, n_workers_tasks, 0, done_fraction=0.0)
        mstats = workers_via_mcp(wm, n_workers_tasks, WORKERS)
        if mstats is not None:
            mproblems = check_exactly_once(wm, n_workers_tasks)
            mrate = mstats["ok"] / mstats["seconds"]
            rows += [
                Row(f"{WORKERS} workers through `flowgit mcp`: transitions/s ({mstats['ok']} in {mstats['seconds']:.1f} s)",
                    f"{mrate:.1f}/s"),
                Row(f"  / serialized git rate (failed transitions: {mstats['failed']}; "
                    f"exactly once: {'yes' if not mproblems else 'NO'})", f"{mrate / git_rate:.2f}x"),
            ]
            extra["workers_mcp"] = {k: v for k, v in mstats.items() if k != "errors"}
        extra.update({"workers": {k: v for k, v in stats.items() if k != "errors"},
                      "worker_errors": stats["errors"][:20], "exactly_once_problems": problems[:20],
                      "samples": {"done_small": [(s.wall, s.cpu) for s in d_small],
                                  "git_small": [(s.wall, s.cpu) for s in g_small],
                                  "done_big": [(s.wall, s.cpu) for s in d_big],
                                  "git_big": [(s.wall, s.cpu) for s in g_big]},
                      "load_after": loadavg()})
    print_table(f"bench_done (issue 3): {machine()}; load {extra['load_before']} -> {extra['load_after']}", rows)
    if stats["errors"]:
        print("\nfirst failures:", *stats["errors"][:5], sep="\n  ")
    write_json(json_out, "done", rows, extra)
    return rows


def main() -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--only", choices=["startup"], help="run only section 4 (start-up)")
    args = parser.parse_args()
    rows = run(args.quick, args.keep, args.json_out, args.only)
    return 1 if args.strict and any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
