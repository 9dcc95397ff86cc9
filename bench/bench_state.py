"""Issue 14 speed: the state branch (format 2, ADR 0011) against format 1, side by side.

Format-2 fixtures are made as a user makes them: `common.write_plan` writes format-1 logs
in the branch, then `flowgit migrate` moves them onto `flow/state`.

a. `done` as a whole process: format 2, format 1 and a plain `git add` + `git commit` of a
   one-line change, interleaved (the order rotates), at 2,000 tasks / 20,000 events. Then
   the write alone, in process through flowgit's own git door: the state write (blob,
   private index, write-tree, commit-tree, update-ref) against format 1's
   `git commit --only` of the same one-line append.
b. `status PLAN --json`, warm, at 2,000 tasks / 20,000 events: format 2 against format 1.
c. K clones of one bare remote (format 2), one worker each looping `claim --sync` / `done`
   on 200 independent tasks, K = 1, 2, 4, 8: claims per second, claims that exit 4, CPU per
   claim+done, and every task claimed and done exactly once once every clone has synced.
d. Bytes of new objects one transition writes (the blob, the trees, the commit), at 2,000
   and 25,000 logs: a real `heartbeat` in the 2,000-task fixture, and at both sizes the same
   one-line append written by flowgit's state writer into a state tree of that many logs
   (fanned out), against the same append committed into a flat `events/` tree (format 1).
e. `heartbeat` on a task whose log holds 100, 1,000 and 10,000 events (format 2, compaction
   off) against the same on a fresh task, interleaved: the default `compact.threshold` is the
   longest log whose transition stays within 1.2x of a fresh one.
f. The same with compaction at write time (the default threshold) on a task whose log held
   100,000 events: its first heartbeat compacts it (timed apart); then heartbeats on it, on
   a 100-event one and on a fresh task, interleaved (issue 17: a 100,000-event history costs
   no more per transition than a 100-event one).

Run: python bench/bench_state.py [--quick] [--only a,b,c,d,e,f] [--json FILE]
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

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
    lo,
    loadavg,
    machine,
    median,
    ms,
    plan_yaml,
    print_table,
    progress,
    wall,
    write_json,
    write_plan,
)

from flowgit.core.events import format_time, make_event  # noqa: E402

BIG = (2000, 20000)
TARGET_DONE_VS_GIT = 2.0
TARGET_STATUS = 1.2
TARGET_LONG = 1.2
TARGET_BYTES = 50_000
KS = (1, 2, 4, 8)
LONG = (100, 500, 1000, 10000)
HISTORY = (100, 100000)


def migrated(r: Runner) -> None:
    out = json.loads(r.fg("migrate", "--json").stdout)
    assert out["migrated"], out


def fixture(ws: Workspace, name: str, fmt: int, n_tasks: int, n_events: int, **kw: Any) -> Runner:
    r = ws.new_repo(name)
    write_plan(r, n_tasks, n_events, **kw)
    if fmt == 2:
        migrated(r)
    r.fg("status", PLAN, "--json")  # warm the cache, as a used repository is
    return r


def plain_commit(r: Runner, i: int) -> Sample:
    """The baseline: a one-line change to a tracked file, `git add`, `git commit --no-verify`."""
    t0 = time.perf_counter()
    with open(r.repo / "src" / "work.txt", "a") as f:
        f.write(f"line {i}\n")
    s = r.timed(["git", "add", "src/work.txt"]) + r.timed(["git", "commit", "-q", "--no-verify", "-m", f"plain {i}"])
    return Sample(time.perf_counter() - t0, s.cpu, s.rc)


def claim(r: Runner, worker: str = "w1") -> str:
    proc = r.fg("claim", PLAN, "--worker", worker, "--json")
    return str(json.loads(proc.stdout)["task"])


# ---------------------------------------------------------------------------------------------
# a, b

def done_side_by_side(f1: Runner, f2: Runner, rounds: int) -> dict[str, list[Sample]]:
    progress(f"(a) done: format 2, format 1, plain git add + commit; {rounds} rounds, order rotating")
    out: dict[str, list[Sample]] = {"f2": [], "f1": [], "git": []}
    for r in (f1, f2):  # warm once, untimed
        r.fg("done", claim(r, "warm"), "--worker", "warm")
    plain_commit(f2, -1)
    for i in range(rounds):
        t1, t2 = claim(f1), claim(f2)
        steps = [("f1", lambda: f1.timed_fg("done", t1, "--worker", "w1")),
                 ("f2", lambda: f2.timed_fg("done", t2, "--worker", "w1")),
                 ("git", lambda: plain_commit(f2, i))]
        k = i % 3
        for name, step in steps[k:] + steps[:k]:
            out[name].append(step())
    return out


def write_alone(f1: Runner, f2: Runner, rounds: int) -> tuple[list[float], list[float]]:
    """The git part of one transition, in process through flowgit's git door: format 2's
    state write against format 1's `git commit --only` of the same one-line append."""
    from flowgit import git
    from flowgit.store.repo import FlowRepo

    progress(f"(a) the write alone: state write vs git commit --only, {rounds} rounds each")
    env_before = dict(os.environ)
    os.environ.update(f1.env)
    try:
        r1, r2 = FlowRepo(f1.repo), FlowRepo(f2.repo)
        store = r2.state_store
        assert store is not None and r1.state_store is None
        task = "T-00001"
        path1 = f1.repo / ".flow" / "plans" / PLAN / "events" / f"{task}.jsonl"
        rel1 = f".flow/plans/{PLAN}/events/{task}.jsonl"
        from flowgit.store.state import log_path

        rel2 = log_path(PLAN, task)
        content = store.read(PLAN, task) or b""
        state_t: list[float] = []
        commit_t: list[float] = []
        for i in range(rounds):
            line = make_event("task.note", PLAN, task, ACTOR, 100000 + i, {"text": f"n{i}"}, time.time()).to_line().encode()
            with open(path1, "ab") as f:
                f.write(line)
            content += line
            t0 = time.perf_counter()
            git.commit_paths(f1.repo, [rel1], f"bench: note {i}", [], r1.dirs)
            commit_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            store.commit({rel2: content}, f"bench: note {i}\n")
            state_t.append(time.perf_counter() - t0)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    return state_t, commit_t


def status_side_by_side(f1: Runner, f2: Runner, runs: int) -> tuple[list[Sample], list[Sample]]:
    progress(f"(b) status warm: format 2 vs format 1, {runs} runs interleaved")
    a: list[Sample] = []
    b: list[Sample] = []
    for r in (f1, f2):
        r.fg("status", PLAN, "--json")
    for i in range(runs):
        if i % 2:
            a.append(f2.timed_fg("status", PLAN, "--json"))
            b.append(f1.timed_fg("status", PLAN, "--json"))
        else:
            b.append(f1.timed_fg("status", PLAN, "--json"))
            a.append(f2.timed_fg("status", PLAN, "--json"))
    return a, b


# ---------------------------------------------------------------------------------------------
# c

def seeded_clones(ws: Workspace, k: int, n_tasks: int, name: str | None = None) -> list[Runner]:
    """A migrated seed with `n_tasks` independent tasks pushed to a bare remote; K fresh clones
    (in a folder `name`, `k<K>` by default)."""
    base = ws.path / (name or f"k{k}")
    base.mkdir()
    seed = Runner(base / "seed", ws.env)
    seed.repo.mkdir()
    seed.git("init", "-q")
    for key, val in (("user.email", ACTOR), ("user.name", "Bench"), ("commit.gpgsign", "false")):
        seed.git("config", key, val)
    (seed.repo / "README.md").write_text("bench\n")
    seed.git("add", "-A")
    seed.git("commit", "-q", "-m", "initial")
    seed.fg("init", "--format", "1")
    write_plan(seed, n_tasks, 0, done_fraction=0.0)
    (seed.repo / ".flow" / "plans" / PLAN / "plan.yaml").write_text(plan_yaml(n_tasks, width=0))
    seed.git("commit", "-q", "--no-verify", "-am", "independent tasks")
    migrated(seed)
    bare = base / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, env=ws.env)
    seed.git("remote", "add", "origin", str(bare))
    seed.git("push", "-q", "origin", "main", "flow/state")
    out = []
    for i in range(k):
        path = base / f"c{i}"
        subprocess.run(["git", "clone", "-q", str(bare), str(path)], check=True, env=ws.env)
        c = Runner(path, ws.env)
        c.fg("status", PLAN, "--json")
        out.append(c)
    return out


def clones_run(ws: Workspace, k: int, n_tasks: int) -> dict[str, Any]:
    """K clones of one bare remote, one worker each, `claim --sync` / `done` until every task
    is done; then every clone syncs and the remote's state is checked."""
    clones = seeded_clones(ws, k, n_tasks)
    stats: dict[str, Any] = {"claims": 0, "dones": 0, "exit4": 0, "other": 0, "errors": [], "attempts": []}
    lock = threading.Lock()

    def worker(c: Runner, name: str) -> None:
        while True:
            p = c.fg("claim", PLAN, "--sync", "--worker", name, "--json", check=False)
            if p.returncode == 3:
                return  # every task is claimed or done
            if p.returncode != 0:
                with lock:
                    stats["exit4" if p.returncode == 4 else "other"] += 1
                    said = (p.stdout + p.stderr).decode(errors="replace").strip()
                    stats["errors"].append(f"{name} claim rc={p.returncode}: {said[:300]}")
                continue
            res = json.loads(p.stdout)
            d = c.fg("done", res["task"], "--worker", name, check=False)
            with lock:
                stats["claims"] += 1
                stats["attempts"].append(res.get("attempts", 1))
                if d.returncode == 0:
                    stats["dones"] += 1
                else:
                    stats["other"] += 1
                    stats["errors"].append(f"{name} done rc={d.returncode}: {d.stderr.decode()[:160]}")

    threads = [threading.Thread(target=worker, args=(c, f"c{i}")) for i, c in enumerate(clones)]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["seconds"] = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats["cpu_seconds"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    for c in clones:  # each clone's last `done` is still local
        c.fg("sync")
    stats["problems"] = exactly_once(clones[0], n_tasks)
    return stats


def exactly_once(r: Runner, n_tasks: int) -> list[str]:
    from flowgit import git, git_state

    r.fg("sync")
    tip = r.git("rev-parse", "origin/flow/state").stdout.decode().strip()
    blobs = git_state.list_blobs(r.repo, tip, f".flow/plans/{PLAN}/events/")
    data = git.cat_blobs(r.repo, list(blobs.values()))
    problems = []
    seen = 0
    for path, blob in blobs.items():
        if path.endswith("_plan.jsonl"):
            continue
        seen += 1
        types = [json.loads(line)["type"] for line in data[blob].decode().splitlines() if line.strip()]
        if types.count("task.claimed") != 1 or types.count("task.done") != 1:
            problems.append(f"{path}: {types}")
    if seen != n_tasks:
        problems.append(f"{seen} task logs on the remote's state, not {n_tasks}")
    return problems


# ---------------------------------------------------------------------------------------------
# d

def new_objects(r: Runner, new: str, old: str) -> dict[str, int]:
    """Sizes (uncompressed, as git stores them before zlib) of the objects `new` added to `old`."""
    ids = r.git("rev-list", "--objects", new, f"^{old}").stdout.decode().split("\n")
    ids = [line.split(" ", 1)[0] for line in ids if line.strip()]
    out = subprocess.run(["git", "cat-file", "--batch-check=%(objecttype) %(objectsize) %(objectsize:disk)"],
                         cwd=r.repo, env=r.env, input="\n".join(ids).encode(), capture_output=True, check=True)
    sizes = {"commit": 0, "tree": 0, "blob": 0, "disk": 0, "trees": 0}
    for line in out.stdout.decode().splitlines():
        kind, size, disk = line.split()
        sizes[kind] += int(size)
        sizes["disk"] += int(disk)
        if kind == "tree":
            sizes["trees"] += 1
    sizes["total"] = sizes["commit"] + sizes["tree"] + sizes["blob"]
    return sizes


def synthetic_write(ws: Workspace, n_logs: int, flat: bool) -> dict[str, int]:
    """A repository whose state tree holds `n_logs` task logs (fanned out as format 2 keeps
    them, or flat as format 1 does), then one one-line append written by flowgit's state
    writer (format 2) or committed on top with plumbing (flat): the new objects it made."""
    from flowgit.store.repo import FlowRepo
    from flowgit.store.state import log_path

    r = ws.new_repo(f"bytes-{n_logs}-{'flat' if flat else 'fan'}")
    line = make_event("task.note", PLAN, "T-00000", ACTOR, 1, {"text": "x"}, time.time()).to_line().encode()
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=r.repo, env=r.env, input=line,
                          capture_output=True, check=True).stdout.decode().strip()
    paths = [f".flow/plans/{PLAN}/events/T-{i:05d}.jsonl" if flat else log_path(PLAN, f"T-{i:05d}")
             for i in range(n_logs)]
    env = {**r.env, "GIT_INDEX_FILE": str(ws.path / f"idx-{n_logs}-{flat}")}
    subprocess.run(["git", "update-index", "--index-info"], cwd=r.repo, env=env, check=True,
                   input="".join(f"100644 {blob}\t{p}\n" for p in paths).encode())
    tree = subprocess.run(["git", "write-tree"], cwd=r.repo, env=env, capture_output=True, check=True).stdout.decode().strip()
    base = r.git("commit-tree", tree, "-m", "fixture").stdout.decode().strip()
    r.git("update-ref", "refs/heads/flow/state", base)
    changed = line + make_event("task.note", PLAN, "T-00007", ACTOR, 2, {"text": "y"}, time.time()).to_line().encode()
    if flat:
        new_blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=r.repo, env=r.env, input=changed,
                                  capture_output=True, check=True).stdout.decode().strip()
        subprocess.run(["git", "update-index", "--cacheinfo", f"100644,{new_blob},{paths[7]}"], cwd=r.repo,
                       env=env, check=True)
        tree = subprocess.run(["git", "write-tree"], cwd=r.repo, env=env, capture_output=True,
                              check=True).stdout.decode().strip()
        new = r.git("commit-tree", tree, "-p", base, "-m", "flow(big/T-00007): note").stdout.decode().strip()
    else:
        (r.repo / ".flow" / "config.yaml").write_text("version: 2\n")
        env_before = dict(os.environ)
        os.environ.update(r.env)
        try:
            store = FlowRepo(r.repo).state_store
            assert store is not None
            new = store.commit({paths[7]: changed}, "flow(big/T-00007): note\n")
        finally:
            os.environ.clear()
            os.environ.update(env_before)
    return new_objects(r, new, base)


# ---------------------------------------------------------------------------------------------
# e

def long_logs_repo(ws: Workspace, lengths: tuple[int, ...], name: str = "long",
                   threshold: int | None = 0) -> Runner:
    """20 generated tasks plus FRESH and one task L<n> per length whose log holds n events
    (claimed by ACTOR, then heartbeats, the lease far ahead); migrated to format 2, with
    `compact.threshold` set to `threshold` (0: never compacted, the raw cost of a long log;
    None: the default)."""
    r = ws.new_repo(name)
    write_plan(r, 20, 200, done_fraction=0.5, commit=False)
    pdir = r.repo / ".flow" / "plans" / PLAN
    extra = ["FRESH", *[f"L{n}" for n in lengths]]
    with open(pdir / "plan.yaml", "a") as f:
        for t in extra:
            f.write(f"  - id: {t}\n    title: {t}\n    priority: low\n")
    t0 = time.time() - 3600.0
    far = format_time(time.time() + 30 * 86400)
    for n in lengths:
        evs = [make_event("task.claimed", PLAN, f"L{n}", ACTOR, 1, {"lease_until": far, "lease_seconds": 900.0}, t0)]
        evs += [make_event("task.heartbeat", PLAN, f"L{n}", ACTOR, 2 + k, {"lease_until": far}, t0 + k * 0.01)
                for k in range(n - 1)]
        (pdir / "events" / f"L{n}.jsonl").write_text("".join(e.to_line() for e in evs))
    if threshold is not None:
        config = r.repo / ".flow" / "config.yaml"
        config.write_text(config.read_text() + f"compact:\n  threshold: {threshold}\n")
    r.git("add", "--", ".flow")
    r.git("commit", "-q", "--no-verify", "-m", "bench: long logs")
    migrated(r)
    r.fg("claim", f"{PLAN}/FRESH", "--worker", ACTOR)
    r.fg("status", PLAN, "--json")
    return r


def heartbeats(r: Runner, lengths: tuple[int, ...], rounds: int, part: str = "e") -> dict[str, list[Sample]]:
    progress(f"({part}) heartbeat on logs of {', '.join(map(str, lengths))} events vs a fresh task, {rounds} rounds")
    names = ["FRESH", *[f"L{n}" for n in lengths]]
    out: dict[str, list[Sample]] = {n: [] for n in names}
    for n in names:  # warm: each log's fold cached once (part f: the long one compacted here)
        out[f"first {n}"] = [r.timed_fg("heartbeat", f"{PLAN}/{n}", "--worker", ACTOR)]
    for i in range(rounds):
        k = i % len(names)
        for n in names[k:] + names[:k]:
            out[n].append(r.timed_fg("heartbeat", f"{PLAN}/{n}", "--worker", ACTOR))
    return out


# ---------------------------------------------------------------------------------------------

def run(quick: bool, keep: bool, json_out: str | None, only: str,
        ks: tuple[int, ...] = KS) -> list[Row]:
    parts = set(only.split(","))
    rounds = 6 if quick else 12
    rows: list[Row] = []
    extra: dict[str, Any] = {"load_before": loadavg()}
    with Workspace(keep=keep) as ws:
        if parts & {"a", "b", "d"}:
            progress(f"fixtures: {BIG[0]} tasks / {BIG[1]} events, format 1 and (migrated) format 2")
            f1 = fixture(ws, "f1", 1, *BIG)
            t0 = time.perf_counter()
            f2 = fixture(ws, "f2", 2, *BIG)
            extra["fixture_f2_seconds"] = time.perf_counter() - t0
        if "a" in parts:
            s = done_side_by_side(f1, f2, rounds)
            g = wall(s["git"])
            r2, r1 = wall(s["f2"]) / g, wall(s["f1"]) / g
            rows += [
                Row(f"done, format 2, {BIG[0]} tasks (cpu {ms(cpu(s['f2']))}, min {ms(lo(s['f2']))})", ms(wall(s["f2"]))),
                Row(f"done, format 1, {BIG[0]} tasks (cpu {ms(cpu(s['f1']))}, min {ms(lo(s['f1']))})", ms(wall(s["f1"]))),
                Row(f"git add + commit, one line (cpu {ms(cpu(s['git']))}, min {ms(lo(s['git']))})", ms(g)),
                Row(f"done format 2 / git (cpu ratio {cpu(s['f2']) / cpu(s['git']):.1f}x)", f"{r2:.2f}x",
                    f"<= {TARGET_DONE_VS_GIT}x", r2 <= TARGET_DONE_VS_GIT),
                Row(f"done format 1 / git (cpu ratio {cpu(s['f1']) / cpu(s['git']):.1f}x)", f"{r1:.2f}x"),
                Row("done format 2 / format 1", f"{wall(s['f2']) / wall(s['f1']):.2f}x", "<= 1.0x",
                    wall(s["f2"]) <= wall(s["f1"])),
            ]
            st, ct = write_alone(f1, f2, rounds)
            ratio = median(st) / median(ct)
            rows += [
                Row(f"the write alone, format 2: state write (min {ms(min(st))})", ms(median(st))),
                Row(f"the write alone, format 1: git commit --only, {BIG[0]} logs (min {ms(min(ct))})", ms(median(ct))),
                Row("state write / git commit --only", f"{ratio:.2f}x", "< 1.0x", ratio < 1.0),
            ]
            extra["a"] = {k: [(x.wall, x.cpu) for x in v] for k, v in s.items()}
            extra["a_write"] = {"state": st, "commit_only": ct}
        if "b" in parts:
            a, b = status_side_by_side(f1, f2, rounds + 3)
            ratio = wall(a) / wall(b)
            rows += [
                Row(f"status warm, format 2, {BIG[0]} tasks (cpu {ms(cpu(a))}, min {ms(lo(a))})", ms(wall(a))),
                Row(f"status warm, format 1, {BIG[0]} tasks (cpu {ms(cpu(b))}, min {ms(lo(b))})", ms(wall(b))),
                Row(f"status format 2 / format 1 (cpu ratio {cpu(a) / cpu(b):.2f}x, min ratio {lo(a) / lo(b):.2f}x)",
                    f"{ratio:.2f}x", f"<= {TARGET_STATUS}x", ratio <= TARGET_STATUS),
            ]
            extra["b"] = {"f2": [(x.wall, x.cpu) for x in a], "f1": [(x.wall, x.cpu) for x in b]}
        if "d" in parts:
            progress("(d) bytes of new objects per transition")
            old = f2.git("rev-parse", "flow/state").stdout.decode().strip()
            task = claim(f2, ACTOR)
            mid = f2.git("rev-parse", "flow/state").stdout.decode().strip()
            f2.fg("heartbeat", task, "--worker", ACTOR)
            new = f2.git("rev-parse", "flow/state").stdout.decode().strip()
            real = new_objects(f2, new, mid)
            del old
            rows.append(Row(f"real heartbeat, format 2, {BIG[0]} logs: new objects (trees {real['tree']} B in "
                            f"{real['trees']}, blob {real['blob']} B; {real['disk']} B on disk)", f"{real['total']} B"))
            extra["d"] = {"real_2000": real}
            for n in ((2000,) if quick else (2000, 25000)):
                fan = synthetic_write(ws, n, flat=False)
                flat = synthetic_write(ws, n, flat=True)
                ok = fan["total"] <= TARGET_BYTES if n >= 25000 else None
                rows += [
                    Row(f"one append, {n} logs fanned out (format 2): trees {fan['tree']} B in {fan['trees']}, "
                        f"blob {fan['blob']} B, commit {fan['commit']} B", f"{fan['total']} B",
                        f"<= {TARGET_BYTES // 1000} KB" if ok is not None else "", ok),
                    Row(f"one append, {n} logs flat (format 1): trees {flat['tree']} B in {flat['trees']}",
                        f"{flat['total']} B"),
                ]
                extra["d"][f"synthetic_{n}"] = {"fanned": fan, "flat": flat}
        if "e" in parts:
            lengths = LONG
            r = long_logs_repo(ws, lengths)
            hb = heartbeats(r, lengths, rounds)
            fresh = wall(hb["FRESH"])
            rows.append(Row(f"heartbeat, fresh task (cpu {ms(cpu(hb['FRESH']))}, min {ms(lo(hb['FRESH']))})", ms(fresh)))
            best = 0
            for n in lengths:
                s = hb[f"L{n}"]
                ratio = wall(s) / fresh
                if ratio <= TARGET_LONG:
                    best = n
                rows.append(Row(f"heartbeat, log of {n} events (cpu {ms(cpu(s))}, min {ms(lo(s))}): / fresh "
                                f"(cpu ratio {cpu(s) / cpu(hb['FRESH']):.2f}x)", f"{ms(wall(s))} = {ratio:.2f}x",
                                f"<= {TARGET_LONG}x"))
            rows.append(Row("longest log measured within 1.2x of a fresh task", str(best or "none")))
            extra["e"] = {k: [(x.wall, x.cpu) for x in v] for k, v in hb.items()}
        if "f" in parts:
            r = long_logs_repo(ws, HISTORY, "history", threshold=None)
            hb = heartbeats(r, HISTORY, rounds, "f")
            fresh = wall(hb["FRESH"])
            first = hb[f"first L{HISTORY[-1]}"][0]
            rows.append(Row(f"f: heartbeat, fresh task, compaction at write time (cpu {ms(cpu(hb['FRESH']))}, "
                            f"min {ms(lo(hb['FRESH']))})", ms(fresh)))
            rows.append(Row(f"f: the first heartbeat on the {HISTORY[-1]:,}-event log, which compacts it "
                            f"(cpu {ms(first.cpu)})", ms(first.wall)))
            for n in HISTORY:
                s_ = hb[f"L{n}"]
                ratio = wall(s_) / fresh
                rows.append(Row(f"f: heartbeat, a history of {n:,} events, compacted as written (cpu "
                                f"{ms(cpu(s_))}, min {ms(lo(s_))}): / fresh (cpu ratio {cpu(s_) / cpu(hb['FRESH']):.2f}x)",
                                f"{ms(wall(s_))} = {ratio:.2f}x", f"<= {TARGET_LONG}x", ratio <= TARGET_LONG))
            big, small = hb[f"L{HISTORY[-1]}"], hb[f"L{HISTORY[0]}"]
            rows.append(Row(f"f: {HISTORY[-1]:,}-event history / {HISTORY[0]}-event one (cpu ratio "
                            f"{cpu(big) / cpu(small):.2f}x)", f"{wall(big) / wall(small):.2f}x", f"<= {TARGET_LONG}x",
                            wall(big) <= wall(small) * TARGET_LONG))
            extra["f"] = {k: [(x.wall, x.cpu) for x in v] for k, v in hb.items()}
        if "c" in parts:
            n_tasks = 60 if quick else 200
            rates: dict[int, float] = {}
            for k in ks:
                progress(f"(c) {k} clone(s) of one bare remote, claim --sync / done on {n_tasks} tasks")
                st_ = clones_run(ws, k, n_tasks)
                rates[k] = st_["claims"] / st_["seconds"]
                per = st_["cpu_seconds"] / max(1, st_["claims"])
                att = st_["attempts"]
                rows.append(Row(f"K={k}: {st_['claims']} claims in {st_['seconds']:.1f} s; exit 4: {st_['exit4']}, "
                                f"other failures {st_['other']}; cpu per claim+done {ms(per)}; attempts median "
                                f"{median(att):.0f}, max {max(att, default=0)}; exactly once: "
                                f"{'yes' if not st_['problems'] else 'NO ' + st_['problems'][0]}",
                                f"{rates[k]:.2f} claims/s", "exit 4: 0" if k == 8 else "",
                                (st_["exit4"] == 0 and not st_["problems"]) if k == 8 else None))
                extra[f"c_{k}"] = {x: y for x, y in st_.items() if x not in ("errors",)}
                extra[f"c_{k}_errors"] = st_["errors"][:10]
            if 2 in rates and 8 in rates:
                rows.append(Row("claims/s at K=8 / K=2", f"{rates[8] / rates[2]:.2f}x", ">= 1.0x", rates[8] >= rates[2]))
        extra["load_after"] = loadavg()
    print_table(f"bench_state (issue 14): {machine()}; load {extra['load_before']} -> {extra['load_after']}", rows)
    write_json(json_out, "state", rows, extra)
    return rows




def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--only", default="a,b,c,d,e,f", help="comma-separated parts: a,b,c,d,e,f")
    p.add_argument("--ks", default=",".join(map(str, KS)), help="part c: the numbers of clones")
    args = p.parse_args()
    rows = run(args.quick, args.keep, args.json_out, args.only, tuple(int(k) for k in args.ks.split(",")))
    return 1 if args.strict and any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
