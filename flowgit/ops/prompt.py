"""The prompt an executor is given for a task: goal, scope, requirements, ADRs, acceptance
criteria, files, and the notes of the tasks it depends on. In ops (not runner) so that `task
show`, `claim --context` and the MCP server give an agent exactly the text `run` gives one."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from flowgit.core.events import Event
from flowgit.core.model import Plan, Task
from flowgit.formats import yamlio
from flowgit.store.repo import FlowRepo

_TICKS = re.compile(r"`+")


@dataclass(frozen=True)
class PromptInputs:
    """What the prompt is made of, read once from `.flow/`."""
    plan: Plan
    task: Task
    spec: Mapping[str, Any] | None
    adrs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    dep_notes: Mapping[str, str] = field(default_factory=dict)


def prompt_inputs(repo: FlowRepo, plan_id: str, task_id: str) -> PromptInputs:
    from flowgit.store.planedit import adr_ids

    loaded = repo.load_plan(plan_id)
    plan, task = loaded.plan, loaded.plan.task(task_id)
    assert task is not None
    spec_path = repo.spec_file(plan_id)
    spec = yamlio.load_file(spec_path, repo.rel(spec_path)) if spec_path.exists() else None
    adrs: dict[str, Any] = {}
    wanted = set(plan.adrs) | set(task.adrs)
    if wanted:
        for path in sorted(repo.safe("adrs").glob("ADR-*.yaml")):
            adr_id = "-".join(path.name.split("-")[:2])
            if adr_id in wanted and adr_id in adr_ids(repo):
                adrs[adr_id] = yamlio.load_file(path, repo.rel(path)) or {}
    records = repo.records(plan_id) if task.depends_on else {}
    notes = {d: records[d].note or "" for d in task.depends_on if d in records and records[d].note}
    return PromptInputs(plan, task, spec if isinstance(spec, dict) else None, adrs, notes)


def task_prompt(repo: FlowRepo, plan_id: str, task_id: str) -> str:
    got = prompt_inputs(repo, plan_id, task_id)
    text = prompt_text(got.plan, got.task, got.spec, got.adrs, got.dep_notes)
    rec = repo.records(plan_id).get(task_id)
    if rec is not None and rec.attempts and rec.status not in ("done", "skipped"):
        text += previous_attempt(repo.read_log(plan_id, task_id).events)
    return text


def previous_attempt(events: Sequence[Event]) -> str:
    """What the last failed attempt left for the next one: why it failed, what it changed and
    what its check said (the failure's event keeps them, runner/checks.py)."""
    failed = next((e for e in reversed(events) if e.type == "task.failed"), None)
    if failed is None:
        return ""
    d = failed.data
    lines = ["", "## The previous attempt failed", "", f"Attempt {d.get('attempt', '?')}: {d.get('error', '')}"]
    for key, title in (("diff_stat", "What it changed (it did not land; this attempt starts "
                                     "from the base again):"),
                       ("check_output", f"What the check ({d.get('check', 'check')}) printed, last part:")):
        value = d.get(key)
        if isinstance(value, str) and value.strip():
            fence = "`" * max(3, 1 + max((len(r) for r in _TICKS.findall(value)), default=0))
            lines += ["", title, "", fence, value.rstrip(), fence]
    lines += ["", "Make this attempt pass where that one failed."]
    return "\n".join(lines) + "\n"


def prompt_text(plan: Plan, task: Task, spec: Mapping[str, object] | None,
                adrs: Mapping[str, Mapping[str, object]], dep_notes: Mapping[str, str]) -> str:
    """Everything an agent needs for one task, as Markdown."""
    lines = [f"# Task {task.id}: {task.title}", "", f"Plan: {plan.id} - {plan.title}"]
    if plan.goal:
        lines += ["", "## Goal", "", plan.goal.strip()]
    scope = plan.scope or {}
    if scope:
        lines += ["", "## Scope"]
        for key in ("included", "excluded", "assumptions", "constraints"):
            items = scope.get(key) or []
            if isinstance(items, list) and items:
                lines += ["", f"{key.capitalize()}:"] + [f"- {i}" for i in items]
    if task.description:
        lines += ["", "## Description", "", task.description.strip()]
    if task.acceptance:
        lines += ["", "## Acceptance criteria", ""] + [f"- [ ] {a}" for a in task.acceptance]
    if task.files:
        lines += ["", "## Files", ""] + [f"- {f}" for f in task.files]
    reqs = (spec or {}).get("requirements") or []
    if isinstance(reqs, list) and reqs:
        lines += ["", "## Requirements", ""]
        for r in reqs:
            if isinstance(r, dict):
                lines.append(f"- {r.get('id', '')} ({r.get('kind', '')}): {r.get('text', '')}")
    wanted = list(plan.adrs) + list(task.adrs)
    if wanted:
        lines += ["", "## Architecture decisions", ""]
        for adr_id in dict.fromkeys(wanted):
            adr = adrs.get(adr_id) or {}
            lines.append(f"- {adr_id} {adr.get('title', '')} [{adr.get('status', '?')}]: {adr.get('decision', '')}")
    if dep_notes:
        lines += ["", "## Notes from the tasks this one depends on", ""]
        lines += [f"- {dep}: {note}" for dep, note in dep_notes.items()]
    lines += ["", "Work in the current directory (a git worktree for this task). Commit or leave your "
              "changes; flowgit commits and merges them when you exit 0."]
    return "\n".join(lines) + "\n"
