"""`flowgit prime`: how to work in this repository now, for an agent starting a session.

Bounded whatever the plans' size (at most PRIME_MAX_BYTES, text or JSON): every list is capped
and counted, titles are cut, and what is left out is named with the command that shows it."""
from __future__ import annotations

import json
import shlex
from typing import Any, Sequence

from flowgit.clock import wall_now
from flowgit.core.events import format_time
from flowgit.errors import FlowError
from flowgit.store.planpin import gate_hash
from flowgit.store.repo import FlowRepo

PRIME_MAX_BYTES = 8000
MAX_PLANS = 10
MAX_READY = 10  # over all plans
MAX_HELD = 5
MAX_TITLE = 72
FINISHED_PHASES = ("complete",)

RULES = (
    "Never edit .flow/ by hand: flowgit commands validate, lock and commit each change (to "
    "write a plan, write a file outside .flow/ and run `flowgit plan new PLAN --from FILE`).",
    "Claim before you work on a task, and work only on tasks you hold; heartbeat long work "
    "before the lease ends.",
    "Finish with `done` and a note saying what changed (dependents and reviewers read it), or "
    "`fail` with the error; `release` a task you will not finish.",
    "Approvals are for people: never run approve, reject or checkpoint --approve yourself; "
    "show the review and the command for a person to run.",
)


def _cut(text: str, limit: int = MAX_TITLE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hint(plan_id: str, phase: str, ready: int, checkpoint: str | None, blocked: str | None,
          finished: bool) -> str:
    if phase == "draft":
        return f"draft: `flowgit submit {plan_id}` when the plan is written"
    if phase == "plan_review":
        return "waiting for a person to approve it"
    if checkpoint:
        return f"checkpoint {checkpoint} waits for a person's review (`flowgit checkpoint {plan_id}`)"
    if blocked:
        return "waiting for its review"
    if phase == "halted":
        return "halted: a person resumes it"
    if phase == "finish":
        return f"all done: `flowgit finish {plan_id}`"
    if finished and phase == "execute":
        return f"every task finished: `flowgit advance {plan_id}` moves it on"
    return f"{ready} ready" if ready else "nothing ready now"


def prime_data(repo: FlowRepo, actor: str | None, now: float | None = None,
               loop: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
    """What `prime --json` prints (before `bounded`); `prime_text` renders it. Reads only.
    `loop`: the commands of the loop, as (command, what it does); the CLI's by default."""
    from flowgit.core.lifecycle import approval_block

    now = wall_now() if now is None else now
    plans: list[dict[str, Any]] = []
    ready: list[dict[str, str]] = []
    held: list[dict[str, Any]] = []
    totals = {"plans": 0, "complete": 0, "ready": 0, "held": 0}
    initialized = repo.flow.is_dir()
    for pid in repo.plan_ids() if initialized else []:
        totals["plans"] += 1
        try:
            state = repo.state(pid, now)
            loaded = repo.load_plan(pid)
        except FlowError as exc:  # one broken plan is said, and the others still shown
            if len(plans) < MAX_PLANS:
                plans.append({"plan": pid, "title": "", "phase": "unreadable", "progress": 0, "tasks": 0,
                              "ready": 0, "next": f"{_cut(exc.message, 200)} (`flowgit validate`)"})
            continue
        if state.phase in FINISHED_PHASES:
            totals["complete"] += 1
            continue
        blocked = approval_block(pid, state, repo.config, gate_hash(repo, pid, state))
        claimable = not blocked and state.phase in ("execute", "checkpoint")
        order = list(state.order) if claimable else []
        totals["ready"] += len(order)
        reached = next((c.id for c in state.checkpoints.values() if c.state == "reached"), None)
        if len(plans) < MAX_PLANS:
            plans.append({"plan": pid, "title": _cut(loaded.plan.title), "phase": state.phase,
                          "progress": state.progress, "tasks": len(state.tasks), "ready": len(order),
                          "next": _hint(pid, state.phase, len(order), reached, blocked,
                                        state.all_finished)})
        for task_id in order[: MAX_READY - len(ready)]:
            task = loaded.plan.task(task_id)
            ready.append({"task": f"{pid}/{task_id}", "title": _cut(task.title if task else "")})
        if actor is None:
            continue
        for view in state.tasks.values():
            if view.worker == actor and view.state in ("claimed", "in_progress"):
                totals["held"] += 1
                if len(held) < MAX_HELD:
                    task = loaded.plan.task(view.id)
                    row: dict[str, Any] = {"task": f"{pid}/{view.id}", "state": view.state,
                                           "title": _cut(task.title if task else "")}
                    if view.lease_until:
                        row["lease_until"] = format_time(view.lease_until)
                    held.append(row)
    steps = cli_loop(actor) if loop is None else loop
    return {"worker": actor, "initialized": initialized, "plans": plans, "ready": ready,
            "held": held, "totals": totals,
            "loop": [{"command": c, "what": w} for c, w in steps], "rules": list(RULES)}


def cli_loop(worker: str | None) -> list[tuple[str, str]]:
    """The loop as CLI commands (the MCP server names its tools instead)."""
    w = f" --worker {shlex.quote(worker)}" if worker else " --worker NAME"
    return [
        (f"flowgit claim [PLAN]{w} --context", "take the best ready task and read what it needs"),
        ("flowgit task show PLAN/TASK", "the task's context again (goal, acceptance, files, notes)"),
        (f"flowgit heartbeat PLAN/TASK{w}", "extend the lease during long work"),
        (f"flowgit done PLAN/TASK{w} --note \"what changed\"", "finish it (commit your work first)"),
        (f"flowgit fail PLAN/TASK{w} --error \"why\" [--retry]", "give up on it, saying why"),
        (f"flowgit release PLAN/TASK{w}", "hand it back untouched"),
        ("flowgit status [PLAN]", "where the plans stand"),
    ]


def prime_text(data: dict[str, Any]) -> str:
    """The text form, at most PRIME_MAX_BYTES bytes."""
    worker = data.get("worker")
    totals = data["totals"]
    lines = ["# flowgit: how to work in this repository",
             "Plans, tasks and their history live in git under .flow/; flowgit changes them."]
    if not data.get("initialized"):
        lines += ["", "flowgit is not set up here yet: a person runs `flowgit init`."]
    lines += ["", f"## Plans in play ({totals['plans'] - totals['complete']} of {totals['plans']}; "
              f"{totals['complete']} complete)"]
    for p in data["plans"]:
        if p["phase"] == "unreadable":
            lines.append(f"- {p['plan']} [unreadable]: {p['next']}")
            continue
        lines.append(f"- {p['plan']} [{p['phase']}, {p['progress']}% of {p['tasks']}]: {p['title']} "
                     f"- {p['next']}")
    shown_plans = len(data["plans"])
    if totals["plans"] - totals["complete"] > shown_plans:
        lines.append(f"- ... {totals['plans'] - totals['complete'] - shown_plans} more: `flowgit plan list`")
    if not data["plans"]:
        lines.append("- none: a person creates one with `flowgit plan new PLAN` (or an agent "
                     "drafts one for review)")
    lines += ["", f"## Ready ({totals['ready']})"]
    lines += [f"- {r['task']}: {r['title']}" for r in data["ready"]]
    if totals["ready"] > len(data["ready"]):
        where = data["plans"][0]["plan"] if len(data["plans"]) == 1 else "PLAN"
        lines.append(f"- ... {totals['ready'] - len(data['ready'])} more: `flowgit status {where}`")
    if not data["ready"]:
        lines.append("- nothing ready now")
    who = worker or "you (no --worker, FLOWGIT_ACTOR or git user.email)"
    lines += ["", f"## Held by {who} ({totals['held']})"]
    for h in data["held"]:
        until = f", lease until {h['lease_until']}" if h.get("lease_until") else ""
        lines.append(f"- {h['task']} ({h['state']}{until}): {h['title']}")
    if totals["held"] > len(data["held"]):
        lines.append(f"- ... {totals['held'] - len(data['held'])} more: `flowgit status`")
    if not data["held"]:
        lines.append("- nothing: claim a task first")
    lines += ["", "## The loop"]
    lines += [f"- `{step['command']}`: {step['what']}" for step in data["loop"]]
    lines += ["", "## Rules"] + [f"- {r}" for r in data["rules"]]
    text = "\n".join(lines) + "\n"
    return fit(text)


def fit(text: str, limit: int = PRIME_MAX_BYTES) -> str:
    """A last guard: cut at a line so the result is at most `limit` bytes."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    tail = "... (cut to fit; `flowgit status` shows the rest)\n"
    cut = raw[: limit - len(tail.encode())].decode("utf-8", "ignore")
    return cut[: cut.rfind("\n") + 1] + tail


def bounded(data: dict[str, Any], limit: int = PRIME_MAX_BYTES) -> dict[str, Any]:
    """The JSON form within `limit` bytes: the longest of the capped lists loses its last
    items (the totals still count them) until it fits."""
    out = dict(data)
    lists = ("plans", "ready", "held")
    for key in lists:
        out[key] = list(out[key])
    while len(json.dumps(out, ensure_ascii=False).encode("utf-8")) > limit:
        longest = max(lists, key=lambda k: len(out[k]))
        if not out[longest]:
            break
        out[longest].pop()
        out["cut"] = True
    return out


__all__ = ["PRIME_MAX_BYTES", "RULES", "bounded", "cli_loop", "fit", "prime_data", "prime_text"]
