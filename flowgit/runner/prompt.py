"""The prompt an executor is given for a task: goal, scope, requirements, ADRs, acceptance
criteria, files, and the notes of the tasks it depends on."""
from __future__ import annotations

from typing import Any

from flowgit.formats import yamlio
from flowgit.runner.executors import prompt_text
from flowgit.store.repo import FlowRepo


def task_prompt(repo: FlowRepo, plan_id: str, task_id: str) -> str:
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
    return prompt_text(plan, task, spec if isinstance(spec, dict) else None, adrs, notes)
