"""A task with everything an agent needs, in one call: `task show`, `claim --context` and the
MCP server's task tool all build it here. Its `prompt` is the text `run` gives an executor,
made by the same function (`ops.prompt`) from the same reads."""
from __future__ import annotations

import shlex
from typing import Any, Mapping

from flowgit.clock import wall_now
from flowgit.core.events import format_time
from flowgit.core.fold import PlanState
from flowgit.errors import NotFound
from flowgit.ops.prompt import PromptInputs, prompt_inputs, task_prompt
from flowgit.store.repo import FlowRepo

FORMATS = ("text", "markdown", "json")


def task_context(repo: FlowRepo, plan_id: str, task_id: str, now: float | None = None) -> dict[str, Any]:
    """The JSON object of `flowgit task show` (CLI.md, "Agents"). Reads only: runs nothing."""
    loaded = repo.load_plan(plan_id)
    plan = loaded.plan
    task = plan.task(task_id)
    if task is None:
        if plan.checkpoint(task_id) is not None:
            raise NotFound(f"{plan_id}/{task_id} is a checkpoint, not a task: "
                           f"see `flowgit checkpoint {plan_id} {task_id}`")
        raise NotFound(f"plan {plan_id} has no task {task_id!r}: see `flowgit status {plan_id}`")
    state = repo.state(plan_id, wall_now() if now is None else now)
    got = prompt_inputs(repo, plan_id, task_id)
    view = state.tasks.get(task_id)
    out: dict[str, Any] = {
        "task": f"{plan_id}/{task_id}",
        "title": task.title,
        "state": view.state if view else "pending",
        "plan": {"id": plan.id, "title": plan.title, "goal": plan.goal,
                 "scope": {k: list(v) if isinstance(v, (list, tuple)) else v
                           for k, v in (plan.scope or {}).items()},
                 "phase": state.phase},
        "description": task.description,
        "acceptance": list(task.acceptance),
        "files": list(task.files),
        "depends_on": _dependencies(repo, state, got),
        "spec": _spec_for(got.spec, plan_id, task_id),
        "adrs": _adrs(got),
        # the very function `run` calls, so whatever it adds (a previous attempt's failure)
        # reaches `task show` too
        "prompt": task_prompt(repo, plan_id, task_id),
    }
    if view is not None:
        if view.worker:
            out["worker"] = view.worker
        if view.lease_until:
            out["lease_until"] = format_time(view.lease_until)
        out["attempts"] = view.attempts
    out["priority"] = task.priority
    return out


def _dependencies(repo: FlowRepo, state: PlanState, got: PromptInputs) -> list[dict[str, Any]]:
    """Each dependency with its state and, when it left one, its note (another plan's too)."""
    out = []
    others: dict[str, Mapping[str, Any]] = {}
    for dep in got.task.depends_on:
        note = got.dep_notes.get(dep)
        if dep in state.tasks:
            dep_state = state.tasks[dep].state
        elif dep in state.checkpoints:
            dep_state = state.checkpoints[dep].state
        else:
            dep_state = state.external.get(dep, "unknown")
            other, _, other_task = dep.partition("/")
            if other_task and dep_state != "unknown":
                if other not in others:
                    try:
                        others[other] = repo.records(other)
                    except NotFound:
                        others[other] = {}
                record = others[other].get(other_task)
                note = getattr(record, "note", None) or None
        row: dict[str, Any] = {"task": dep, "state": dep_state}
        row["note"] = note or None
        out.append(row)
    return out


def _names(requirement: Mapping[str, Any], plan_id: str, task_id: str) -> bool:
    refs = requirement.get("tasks") or []
    return isinstance(refs, list) and (task_id in refs or f"{plan_id}/{task_id}" in refs)


def _spec_for(spec: Mapping[str, Any] | None, plan_id: str, task_id: str) -> dict[str, Any]:
    """The requirements that name the task and the questions nobody has answered yet."""
    spec = spec or {}
    # a teammate's spec.yaml can say anything (validate names it): what is no list is nothing here
    reqs, questions = ([] if not isinstance(spec.get(k), list) else spec[k] for k in ("requirements", "questions"))
    named = [dict(r) for r in reqs if isinstance(r, dict) and _names(r, plan_id, task_id)]
    open_q = [{k: v for k, v in q.items() if k in ("id", "question", "options")}
              for q in questions if isinstance(q, dict) and q.get("answer") in (None, "")]
    return {"requirements": named, "questions": open_q}


def _adrs(got: PromptInputs) -> list[dict[str, Any]]:
    out = []
    for adr_id in dict.fromkeys(list(got.plan.adrs) + list(got.task.adrs)):
        adr = got.adrs.get(adr_id)
        if adr is None:  # named but not there: said, not hidden
            out.append({"id": adr_id, "title": None, "status": None, "decision": None})
            continue
        out.append({"id": adr_id, "title": adr.get("title"), "status": adr.get("status"),
                    "decision": adr.get("decision")})
    return out


def context_text(ctx: Mapping[str, Any], markdown: bool = False) -> str:
    """The context for a person or an agent reading text: the fields, not the prompt (whose
    last line is for `run`'s executors), and the commands that end the work."""
    plan = ctx["plan"]
    holder = f" by {ctx['worker']}" if ctx.get("worker") else ""
    until = f" until {ctx['lease_until']}" if ctx.get("lease_until") and holder else ""
    facts = [f"state: {ctx['state']}{holder}{until}",
             f"plan: {plan['id']} - {plan['title']} ({plan.get('phase', '?')})"]
    sections: list[tuple[str, list[str], bool]] = []  # (title, lines, as a list)
    if plan.get("goal"):
        sections.append(("Goal", [plan["goal"].strip()], False))
    scope = plan.get("scope") or {}
    scope_lines = [f"{key}: " + "; ".join(str(v) for v in scope[key])
                   for key in ("included", "excluded", "assumptions", "constraints") if scope.get(key)]
    if scope_lines:
        sections.append(("Scope", scope_lines, True))
    if ctx.get("description"):
        sections.append(("Description", [ctx["description"].strip()], False))
    if ctx["acceptance"]:
        sections.append(("Acceptance criteria", ["[ ] " + a for a in ctx["acceptance"]], True))
    if ctx["files"]:
        sections.append(("Files", list(ctx["files"]), True))
    if ctx["depends_on"]:
        sections.append(("Depends on", [f"{d['task']} ({d['state']})" + (f": {d['note']}" if d.get("note") else "")
                                        for d in ctx["depends_on"]], True))
    reqs = ctx["spec"]["requirements"]
    if reqs:
        sections.append(("Requirements", [f"{r.get('id', '')} ({r.get('kind', '')}): {r.get('text', '')}"
                                          for r in reqs], True))
    if ctx["spec"]["questions"]:
        sections.append(("Open questions (a person answers them; do not guess)",
                         [f"{q.get('id', '')}: {q.get('question', '')}"
                          + (f" [{' | '.join(map(str, q['options']))}]" if q.get("options") else "")
                          for q in ctx["spec"]["questions"]], True))
    if ctx["adrs"]:
        sections.append(("Architecture decisions",
                         [f"{a['id']} {a.get('title') or '(missing)'} [{a.get('status') or '?'}]"
                          + (f": {a['decision']}" if a.get("decision") else "") for a in ctx["adrs"]], True))
    task = ctx["task"]
    who = f" --worker {shlex.quote(ctx['worker'])}" if ctx.get("worker") else ""
    sections.append(("When it is done", [f"`flowgit done {task}{who} --note \"what changed\"` (or `flowgit "
                                         f"fail {task}{who} --error \"why\"`)"], False))
    if markdown:
        lines = [f"# {task}: {ctx['title']}", ""] + [f"- {f}" for f in facts]
        for title, body, as_list in sections:
            lines += ["", f"## {title}", ""] + [f"- {b}" if as_list else b for b in body]
    else:
        lines = [f"{task}: {ctx['title']}"] + facts
        for title, body, as_list in sections:
            if len(body) == 1 and not as_list and "\n" not in body[0]:
                lines.append(f"{title.lower()}: {body[0]}")
            else:
                lines.append(f"{title.lower()}:")
                lines += [f"  - {b}" if as_list else "\n".join("  " + x for x in b.splitlines())
                          for b in body]
    return "\n".join(lines) + "\n"


__all__ = ["FORMATS", "context_text", "task_context"]
