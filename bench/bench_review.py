"""Issue 5 speed: `validate --staged` (the pre-commit check) and `diff` on a 2,000-task plan.

Measures, as whole processes (spawn to exit):
  1. `flowgit validate --staged` with the whole 2,000-task plan and its 2,001 event logs
     (20,000 events) staged and not yet in any commit (a plan's first commit),
  2. `flowgit validate --staged` on a one-task change to it: the plan committed, one task's
     title edited and only plan.yaml staged; next to it, the whole `git commit` with the
     pre-commit hook `flowgit init` installs against `git commit --no-verify` (each commit
     undone with `git reset --soft`, outside the timing),
  3. `flowgit diff REV_A REV_B` between two revisions of the plan (the second adds, removes
     and edits a few tasks and appends events to a few logs), against a plain
     `git diff --stat REV_A REV_B` in the same repository, interleaved.

Run: python bench/bench_review.py [--quick] [--json FILE]
"""
from __future__ import annotations

import json
import re
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
    lo,
    loadavg,
    machine,
    make_event,
    ms,
    print_table,
    progress,
    task_id,
    wall,
    write_json,
    write_plan,
)

BIG = (2000, 20000)
CHECKPOINTS = 3

TARGET_STAGED_ALL = 1.0
TARGET_STAGED_ONE = 0.300
TARGET_DIFF = 1.0

PLAN_REL = f".flow/plans/{PLAN}/plan.yaml"
EDITED = 1000          # the task whose title the one-task change edits
CHANGED = (100, 500, 900, 1300, 1700)   # tasks whose title/priority the second revision edits
REMOVED = (1997, 1998, 1999)            # the last three: nothing after them depends on them
ADDED = 5
EVENT_TASKS = range(1400, 1410)         # open tasks that get claimed, started and done


def _blocks(text: str) -> tuple[list[str], list[list[str]], list[str]]:
    """plan.yaml split into the header, one list of lines per task, and the rest."""
    lines = text.splitlines()
    head: list[str] = []
    tasks: list[list[str]] = []
    tail: list[str] = []
    where = "head"
    for line in lines:
        if where == "head":
            head.append(line)
            if line == "tasks:":
                where = "tasks"
            continue
        if where == "tasks":
            if line.startswith("  - id: "):
                tasks.append([line])
                continue
            if line.startswith("    "):
                tasks[-1].append(line)
                continue
            where = "tail"
        tail.append(line)
    return head, tasks, tail


def second_revision(text: str) -> str:
    """The plan with ADDED tasks added, REMOVED removed and CHANGED edited."""
    head, tasks, tail = _blocks(text)
    removed = {task_id(i) for i in REMOVED}
    out: list[list[str]] = []
    for block in tasks:
        tid = block[0].split(": ", 1)[1]
        if tid in removed:
            continue
        if int(tid[2:]) in CHANGED:
            block = [re.sub(r"^    title: (.*)$", r"    title: \1 (revised)", ln) for ln in block]
            block = [re.sub(r"^    priority: \w+$", "    priority: high", ln) for ln in block]
        out.append(block)
    for k in range(ADDED):
        i = BIG[0] + k
        out.append([f"  - id: {task_id(i)}", f"    title: Added task number {i}",
                    f"    depends_on: [{task_id(1900 + k)}]", "    priority: medium", "    estimate: 1h"])
    return "\n".join(head + [ln for b in out for ln in b] + tail) + "\n"


def append_events(r: Runner) -> int:
    """claimed, started, done on a few open tasks: their states change between the revisions."""
    evdir = r.repo / ".flow" / "plans" / PLAN / "events"
    t0 = time.time() - 3600
    n = 0
    for i in EVENT_TASKS:
        path = evdir / f"{task_id(i)}.jsonl"
        last = max(json.loads(line)["clock"] for line in path.read_text().splitlines())
        evs = [make_event("task.claimed", PLAN, task_id(i), ACTOR, last + 1,
                          {"lease_until": "2099-01-01T00:00:00.000Z", "lease_seconds": 900.0}, t0),
               make_event("task.started", PLAN, task_id(i), ACTOR, last + 2,
                          {"lease_until": "2099-01-01T00:00:00.000Z"}, t0 + 1),
               make_event("task.done", PLAN, task_id(i), ACTOR, last + 3,
                          {"note": "bench", "files_modified": []}, t0 + 2)]
        with open(path, "a") as f:
            f.write("".join(e.to_line() for e in evs))
        n += len(evs)
    return n


def edit_title(r: Runner, i: int, suffix: str) -> None:
    path = r.repo / PLAN_REL
    text = path.read_text()
    old = f"    title: Generated task number {i}\n"
    assert old in text, old
    path.write_text(text.replace(old, f"    title: Generated task number {i}{suffix}\n", 1))


def run(quick: bool = False, keep: bool = False, json_out: str | None = None) -> list[Row]:
    n = 3 if quick else 9
    n_commit = 3 if quick else 7
    rows: list[Row] = []
    extra: dict = {"load_before": loadavg()}
    with Workspace(keep=keep) as ws:
        progress(f"generating a {BIG[0]}-task plan with {BIG[1]} events, staged, not committed")
        r = ws.new_repo("review")
        info = write_plan(r, *BIG, checkpoints=CHECKPOINTS, commit=False)
        extra["plan"] = info
        r.git("add", "--", f".flow/plans/{PLAN}")
        staged_files = len(r.git("diff", "--cached", "--name-only").stdout.splitlines())

        # correctness: the staged plan is valid, and a broken one is refused
        r.fg("validate", "--staged")

        progress(f"validate --staged, whole plan staged ({staged_files} files): {n} runs")
        v_all = [r.timed_fg("validate", "--staged") for _ in range(n)]
        r.git("commit", "-q", "--no-verify", "-m", "bench: the plan")
        rev_a = r.head()

        progress(f"validate --staged, one task's title edited, plan.yaml staged: {n} runs")
        edit_title(r, EDITED, " (edited)")
        r.git("add", "--", PLAN_REL)
        r.fg("validate", "--staged")
        v_one = [r.timed_fg("validate", "--staged") for _ in range(n)]

        progress(f"git commit with the pre-commit hook vs --no-verify, one-task change: {n_commit} runs each")
        c_hook: list[Sample] = []
        c_plain: list[Sample] = []
        for i in range(n_commit):
            for hook in ((True, False) if i % 2 == 0 else (False, True)):
                argv = ["git", "commit", "-q", "-m", "bench: one task edited"]
                if not hook:
                    argv.insert(3, "--no-verify")
                (c_hook if hook else c_plain).append(r.timed(argv))
                r.git("reset", "-q", "--soft", "HEAD~1")
        # the hook really refuses: a rewritten event line
        log = r.repo / ".flow" / "plans" / PLAN / "events" / f"{task_id(3)}.jsonl"
        saved = log.read_bytes()
        log.write_bytes(saved.replace(b'"clock":', b'"clock": ', 1))
        r.git("add", "--", str(log))
        refused = r.fg("validate", "--staged", check=False).returncode != 0
        log.write_bytes(saved)
        r.git("add", "--", str(log))
        assert refused, "validate --staged accepted an edited event line"
        r.git("commit", "-q", "--no-verify", "-m", "bench: one task edited")

        progress("second revision: tasks added, removed and edited; events appended")
        path = r.repo / PLAN_REL
        path.write_text(second_revision(path.read_text()))
        n_ev = append_events(r)
        r.fg("validate", f".flow/plans/{PLAN}")
        r.git("add", "--", f".flow/plans/{PLAN}")
        r.git("commit", "-q", "--no-verify", "-m", "bench: second revision")
        rev_b = r.head()
        out = json.loads(r.fg("diff", rev_a, rev_b, "--format", "json").stdout)
        (plan_diff,) = out["plans"]
        summary = {k: len(plan_diff.get(k) or []) for k in ("tasks_added", "tasks_removed", "tasks_modified")}
        summary["state_changes"] = len(plan_diff.get("state_changes") or [])
        extra["diff_summary"] = summary
        assert summary["tasks_added"] == ADDED and summary["tasks_removed"] == len(REMOVED), summary
        stat = r.git("diff", "--stat", rev_a, rev_b).stdout.decode().strip().splitlines()[-1]
        extra["git_diff_stat"] = stat

        progress(f"diff REV_A REV_B vs git diff --stat: {n} runs each (interleaved)")
        r.fg("diff", rev_a, rev_b)
        d_fg: list[Sample] = []
        d_git: list[Sample] = []
        d_md: list[Sample] = []
        for i in range(n):
            if i % 2 == 0:
                d_fg.append(r.timed_fg("diff", rev_a, rev_b))
                d_git.append(r.timed(["git", "diff", "--stat", rev_a, rev_b]))
            else:
                d_git.append(r.timed(["git", "diff", "--stat", rev_a, rev_b]))
                d_fg.append(r.timed_fg("diff", rev_a, rev_b))
            d_md.append(r.timed_fg("diff", rev_a, rev_b, "--format", "markdown"))
        extra["load_after"] = loadavg()

    ratio = wall(d_fg) / wall(d_git)
    hook_extra = wall(c_hook) - wall(c_plain)
    rows += [
        Row(f"validate --staged, whole plan staged: {staged_files} files, {BIG[0]} tasks/{BIG[1]} events "
            f"(cpu {ms(cpu(v_all))}, min {ms(lo(v_all))})", ms(wall(v_all)),
            f"<= {ms(TARGET_STAGED_ALL)}", wall(v_all) <= TARGET_STAGED_ALL),
        Row(f"validate --staged, one task's title changed, plan.yaml staged "
            f"(cpu {ms(cpu(v_one))}, min {ms(lo(v_one))})", ms(wall(v_one)),
            f"<= {ms(TARGET_STAGED_ONE)}", wall(v_one) <= TARGET_STAGED_ONE),
        Row(f"git commit with the pre-commit hook, one-task change (cpu {ms(cpu(c_hook))}, "
            f"min {ms(lo(c_hook))})", ms(wall(c_hook))),
        Row(f"git commit --no-verify, same change (cpu {ms(cpu(c_plain))}, min {ms(lo(c_plain))})",
            ms(wall(c_plain))),
        Row("what the hook adds to a commit (median difference)", ms(hook_extra)),
        Row("validate --staged refuses an edited event line", "yes" if refused else "no", "yes", refused),
        Row(f"diff REV_A REV_B, {BIG[0]} tasks: +{summary['tasks_added']} -{summary['tasks_removed']} "
            f"~{summary['tasks_modified']} tasks, {n_ev} events (cpu {ms(cpu(d_fg))}, min {ms(lo(d_fg))})",
            ms(wall(d_fg)), f"<= {ms(TARGET_DIFF)}", wall(d_fg) <= TARGET_DIFF),
        Row(f"diff REV_A REV_B --format markdown (cpu {ms(cpu(d_md))}, min {ms(lo(d_md))})", ms(wall(d_md))),
        Row(f"git diff --stat REV_A REV_B, same repo (cpu {ms(cpu(d_git))}, min {ms(lo(d_git))})",
            ms(wall(d_git))),
        Row(f"diff / git diff --stat (cpu ratio {cpu(d_fg) / max(cpu(d_git), 1e-9):.1f}x)", f"{ratio:.1f}x"),
    ]
    extra["samples"] = {name: [(s.wall, s.cpu) for s in xs] for name, xs in (
        ("validate_staged_all", v_all), ("validate_staged_one", v_one), ("commit_hook", c_hook),
        ("commit_no_verify", c_plain), ("diff", d_fg), ("diff_markdown", d_md), ("git_diff_stat", d_git))}
    print_table(f"bench_review (issue 5): {machine()}; load {extra['load_before']} -> {extra['load_after']}", rows)
    print(f"\ngit diff --stat {rev_a[:7]} {rev_b[:7]}: {stat}")
    write_json(json_out, "review", rows, extra)
    return rows


def main() -> int:
    args = base_parser(__doc__).parse_args()
    rows = run(args.quick, args.keep, args.json_out)
    return 1 if args.strict and any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
