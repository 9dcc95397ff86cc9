"""Tasks that touch the same files never run at once: the rule `run`, `claim` and `next` share.
Pure: state in, ids out."""
from __future__ import annotations

from typing import Iterable, Mapping

from flowgit.core.fold import ACTIVE, PlanState
from flowgit.core.model import Plan
from flowgit.core.planstate import ids_in


def held_files(plan: Plan, state: PlanState) -> dict[str, str]:
    """Each declared file of a task held under a live claim (by anyone), with the task that
    holds it. A lease that ran out is no claim: the fold shows such a task ready again."""
    held: dict[str, str] = {}
    for task_id in ids_in(state.tasks, ACTIVE):
        task = plan.task(task_id)
        if task is not None:
            for path in task.files:
                held.setdefault(path, task_id)
    return held


def files_held(plan: Plan, state: PlanState) -> frozenset[str]:
    """The declared files of the tasks of a plan held under a live claim: a task touching one
    of them must not start, whichever process or machine holds it."""
    return frozenset(held_files(plan, state))


def clash(plan: Plan, task_id: str, held: Mapping[str, str] | Iterable[str]) -> list[str]:
    """The files of `task_id` that are in `held`, in the task's order."""
    task = plan.task(task_id)
    if task is None:
        return []
    busy = held if isinstance(held, Mapping) else frozenset(held)
    return [path for path in task.files if path in busy]


def free_order(plan: Plan, state: PlanState, also_held: Iterable[str] = ()) -> list[str]:
    """The ready tasks, best first, whose files no live claim holds (nor `also_held`: files a
    caller has reserved but not yet claimed)."""
    held = set(held_files(plan, state)) | set(also_held)
    if not held:
        return list(state.order)
    return [t for t in state.order if not clash(plan, t, held)]


def waiting_on_files(plan: Plan, state: PlanState) -> list[str]:
    """Why ready tasks are passed over: "TASK (FILE held by OTHER)" for each, best first."""
    held = held_files(plan, state)
    out = []
    for task_id in state.order:
        paths = clash(plan, task_id, held)
        if paths:
            out.append(f"{task_id} ({paths[0]} held by {held[paths[0]]})")
    return out
