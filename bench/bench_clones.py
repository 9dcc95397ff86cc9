"""Issue 14, many machines: K clones of one bare remote (format 2), one worker each looping
`claim --sync` / `done` on independent tasks, K = 1, 2, 4, 8 in one run.

Per K: claims per second (the tasks / the time until the last worker stops), claims that exit
4, CPU per claim (the `claim --sync` processes alone, and with their `done`), the attempts the
claims report (median, max) and how many of them rebased their own commit onto a fetched tip
instead of deciding again; then every clone syncs and each of the remote's logs must hold
exactly one `task.claimed` and one `task.done`.

Targets (issue 14): zero exit 4 with the default retries at K=8, and claims/s at K=8 at least
the K=2 figure.

`--count-git` also counts the git processes each `claim --sync` and `done` starts (a shell
shim in front of git on PATH logs each one; its own start-up adds to the CPU figures, so
take those from a run without it).

`--ceiling` adds K=2 and K=8 on clones that never sync (each claims its share locally): what
this machine gives K flowgit processes with nothing to coordinate, beside which to read the
K=8/K=2 figure (a 2-core machine gives 8 processes less than 2 each, whatever they do).

`--turns N` runs the workers with FLOWGIT_TURNS=N (ADR 0015; 0: every process at once, as
before turns).

Run: python bench/bench_clones.py [--quick] [--ks 1,2,4,8] [--tasks N] [--ceiling] [--turns N] [--count-git] [--json FILE]
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_state import exactly_once, seeded_clones  # noqa: E402
from common import (  # noqa: E402
    PLAN,
    Row,
    Runner,
    Workspace,
    base_parser,
    cpu_ticks,
    loadavg,
    machine_busy,
    machine,
    median,
    ms,
    print_table,
    progress,
    write_json,
)

KS = (1, 2, 4, 8)




SHIM = """#!/bin/bash
[ -n "$BENCH_GIT_LOG" ] && echo "$PPID" > "$BENCH_GIT_LOG/s.$$"
export PATH="${PATH#*:}"  # the shim's folder comes first: the real git is after it
exec git "$@"
"""


def git_shim(ws: Workspace) -> tuple[Path, Path]:
    """A folder with a `git` that notes its parent's pid (one file a process) and execs the real
    git found after it on PATH; and the folder of notes."""
    folder, notes = ws.path / "shim", ws.path / "git-notes"
    folder.mkdir(exist_ok=True)
    notes.mkdir(exist_ok=True)
    (folder / "git").write_text(SHIM)
    (folder / "git").chmod(0o755)
    return folder, notes


def run_k(ws: Workspace, k: int, n_tasks: int, count_git: bool = False,
          alone: bool = False, turns: str | None = None) -> dict[str, Any]:
    """K workers, one clone each, looping `claim --sync` / `done` through the remote; `alone`:
    the same loop on K clones that never sync (each claims its n_tasks/K locally), which is what
    this machine gives K processes of flowgit with nothing to coordinate (the ceiling)."""
    cs = seeded_clones(ws, k, n_tasks, f"alone{k}" if alone else None)
    stats: dict[str, Any] = {"claims": 0, "dones": 0, "exit4": 0, "other": 0, "errors": [],
                             "attempts": [], "rebased": 0, "claim_cpu": 0.0, "done_cpu": 0.0}
    lock = threading.Lock()
    kinds: dict[int, str] = {}  # flowgit pid -> "claim" or "done" (with --count-git)
    env: dict[str, str] | None = None
    if turns is not None:  # FLOWGIT_TURNS for the workers' processes (bench_env drops it)
        env = {**cs[0].env, "FLOWGIT_TURNS": turns}
    if count_git:
        folder, notes = git_shim(ws)
        for old in notes.iterdir():
            old.unlink()
        env = {**(env or cs[0].env), "PATH": f"{folder}{os.pathsep}{cs[0].env.get('PATH', '')}",
               "BENCH_GIT_LOG": str(notes)}

    def one(c: Runner, *args: str) -> tuple[int, bytes, bytes, float]:
        proc = subprocess.Popen([*c.flowgit, *args], cwd=c.repo, env=env or c.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if count_git:
            with lock:
                kinds[proc.pid] = args[0]
        chunks: dict[int, list[bytes]] = {1: [], 2: []}
        with selectors.DefaultSelector() as sel:  # no reader threads: the bench's own CPU stays small
            assert proc.stdout is not None and proc.stderr is not None
            sel.register(proc.stdout, selectors.EVENT_READ, 1)
            sel.register(proc.stderr, selectors.EVENT_READ, 2)
            while sel.get_map():
                for key, _ in sel.select():
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.data].append(data)
                    else:
                        sel.unregister(key.fileobj)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.stdout.close()
        proc.stderr.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, b"".join(chunks[1]), b"".join(chunks[2]), ru.ru_utime + ru.ru_stime

    def worker(c: Runner, name: str) -> None:
        mine = n_tasks // k  # alone (no remote): this clone's own share of the loop
        while True:
            if alone and mine <= 0:
                return
            mine -= 1
            rc, out, err, used = one(c, "claim", PLAN, *(() if alone else ("--sync",)), "--worker", name, "--json")
            with lock:
                stats["claim_cpu"] += used
            if rc == 3:
                return  # every task is claimed or done
            if rc != 0:
                with lock:
                    stats["exit4" if rc == 4 else "other"] += 1
                    said = (out + err).decode(errors="replace").strip()
                    stats["errors"].append(f"{name} claim rc={rc}: {said[:300]}")
                continue
            res = json.loads(out)
            drc, _, derr, dused = one(c, "done", res["task"], "--worker", name)
            with lock:
                stats["claims"] += 1
                stats["done_cpu"] += dused
                stats["attempts"].append(int(res.get("attempts", 1)))
                stats["rebased"] += int(res.get("rebased", 0))
                if drc == 0:
                    stats["dones"] += 1
                else:
                    stats["other"] += 1
                    stats["errors"].append(f"{name} done rc={drc}: {derr.decode()[:160]}")

    threads = [threading.Thread(target=worker, args=(c, f"c{i}")) for i, c in enumerate(cs)]
    ticks = cpu_ticks()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["seconds"] = time.perf_counter() - t0
    stats["machine_busy"] = machine_busy(ticks, cpu_ticks())
    if count_git:  # git processes per flowgit process, by its kind (every exit counted)
        started: dict[int, int] = {}
        for note in notes.iterdir():
            pid = int(note.read_text().strip() or 0)
            started[pid] = started.get(pid, 0) + 1
        for kind in ("claim", "done"):
            pids = [pid for pid, what in kinds.items() if what == kind]
            stats[f"{kind}_gits"] = sum(started.get(pid, 0) for pid in pids) / max(1, len(pids))
    if alone:
        stats["problems"] = []
        return stats
    for c in cs:  # each clone's last `done` is still local
        c.fg("sync")
    stats["problems"] = exactly_once(cs[0], n_tasks)
    return stats


def busy(st: dict[str, Any]) -> str:
    """The machine's busy cores over a run: beside the workers' own CPU, the bench's threads,
    the kernel's and anything else running (a busy machine makes the figures meaningless)."""
    return "n/a" if st.get("machine_busy") is None else f"{st['machine_busy']:.2f}"


def run(ks: tuple[int, ...], n_tasks: int, keep: bool, json_out: str | None,
        count_git: bool = False, ceiling: bool = False, turns: str | None = None) -> list[Row]:
    rows: list[Row] = []
    extra: dict[str, Any] = {"load_before": loadavg(), "tasks": n_tasks}
    rates: dict[int, float] = {}
    with Workspace(keep=keep) as ws:
        for k in ks:
            progress(f"{k} clone(s) of one bare remote, claim --sync / done on {n_tasks} tasks")
            st = run_k(ws, k, n_tasks, count_git, turns=turns)
            n = max(1, st["claims"])
            rates[k] = st["claims"] / st["seconds"]
            att = st["attempts"]
            once = "yes" if not st["problems"] else "NO " + st["problems"][0]
            rows.append(Row(
                f"K={k}: {st['claims']} claims in {st['seconds']:.1f} s; exit 4: {st['exit4']}, other "
                f"{st['other']}; cpu per claim {ms(st['claim_cpu'] / n)}, per claim+done "
                f"{ms((st['claim_cpu'] + st['done_cpu']) / n)}; cores busy "
                f"{(st['claim_cpu'] + st['done_cpu']) / st['seconds']:.2f} ({busy(st)} all told); attempts mean {sum(att) / max(1, len(att)):.2f}, "
                f"median {median(att):.0f}, max {max(att, default=0)}; rebased {st['rebased']}; "
                + (f"git processes per claim {st['claim_gits']:.1f}, per done {st['done_gits']:.1f}; "
                   if count_git else "") + f"exactly once: {once}",
                f"{rates[k]:.2f} claims/s", "exit 4: 0" if k == 8 else "",
                (st["exit4"] == 0 and not st["problems"]) if k == 8 else None))
            extra[f"k{k}"] = {x: y for x, y in st.items() if x != "errors"}
            extra[f"k{k}_errors"] = st["errors"][:10]
        if 2 in rates and 8 in rates:
            rows.append(Row("claims/s at K=8 / K=2", f"{rates[8] / rates[2]:.2f}x", ">= 1.0x",
                            rates[8] >= rates[2]))
        if ceiling:
            alone: dict[int, float] = {}
            for k in (2, 8):
                progress(f"ceiling: {k} clone(s) claiming and finishing alone (no remote), {n_tasks} tasks in all")
                st = run_k(ws, k, n_tasks, alone=True, turns=turns)
                n = max(1, st["claims"])
                alone[k] = st["claims"] / st["seconds"]
                rows.append(Row(f"ceiling K={k}: the same loop on clones that never sync, {st['claims']} "
                                f"claims in {st['seconds']:.1f} s; cpu per claim+done "
                                f"{ms((st['claim_cpu'] + st['done_cpu']) / n)}; cores busy "
                                f"{(st['claim_cpu'] + st['done_cpu']) / st['seconds']:.2f} ({busy(st)} all told)",
                                f"{alone[k]:.2f} claims/s", "", None))
            rows.append(Row("ceiling: claims/s at K=8 / K=2 with nothing to coordinate",
                            f"{alone[8] / alone[2]:.2f}x", "", None))
    extra["load_after"] = loadavg()
    print_table(f"bench_clones (issue 14): {machine()}; load {extra['load_before']} -> "
                f"{extra['load_after']}", rows)
    write_json(json_out, "clones", rows, extra)
    return rows


def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--ks", default=",".join(map(str, KS)), help="the numbers of clones")
    p.add_argument("--tasks", type=int, help="independent tasks per K (default 200, 60 with --quick)")
    p.add_argument("--ceiling", action="store_true",
                   help="also run K=2 and K=8 on clones that never sync: what this machine gives K "
                        "flowgit processes with nothing to coordinate")
    p.add_argument("--count-git", action="store_true",
                   help="also count the git processes of each claim and done (a shim on PATH)")
    p.add_argument("--turns", help="FLOWGIT_TURNS for the workers (0: no turns; default: the cores)")
    args = p.parse_args()
    n_tasks = args.tasks or (60 if args.quick else 200)
    rows = run(tuple(int(k) for k in args.ks.split(",")), n_tasks, args.keep, args.json_out, args.count_git,
               args.ceiling, args.turns)
    return 1 if args.strict and any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
