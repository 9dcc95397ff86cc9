"""Plan rules beyond the schema: unique ids, references that exist, no cycles. Pure."""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, Collection, Iterable, Mapping

from flowgit.core.model import OUTSIDE, PATH_RULE, Plan, Task, argv_of, case_twin_message, path_problem
from flowgit.core.scripts import env_hint, script_placeholders
from flowgit.errors import InvalidFile
from flowgit.ids import ID_PATTERN, case_twins, id_problem, is_valid_id

ExternalLookup = Callable[[str], "Plan | None"]


def plan_errors(plan: Plan, display: str, *, adr_ids: Iterable[str] | None = None,
                other_plan: ExternalLookup | None = None) -> list[str]:
    """One line per problem, naming the file and the task."""
    errors: list[str] = []
    ids = [t.id for t in plan.tasks] + [c.id for c in plan.checkpoints]
    for dup, n in sorted(Counter(ids).items()):
        if n > 1:
            errors.append(f"{display}: duplicate id {dup!r} ({n} times): give each task and checkpoint its own id")
    known = set(ids)
    deps: dict[str, list[str]] = {}
    for task in plan.tasks:
        # a self-dependency is reported below on its own, not again as a cycle
        deps[task.id] = [d for d in task.depends_on if d in known and d != task.id]
        for dep in task.depends_on:
            if dep in known:
                if dep == task.id:
                    errors.append(f"{display}: task {task.id} depends on itself: remove it from depends_on")
                continue
            problem = _external_problem(plan.id, dep, other_plan)
            if problem:
                errors.append(f"{display}: task {task.id} depends on {dep!r}, {problem}")
    for cp in plan.checkpoints:
        deps[cp.id] = [a for a in cp.after if a in known]
        if not cp.after:
            errors.append(f"{display}: checkpoint {cp.id} has no 'after': list the tasks it gates")
        for ref in cp.after:
            if ref not in known:
                errors.append(f"{display}: checkpoint {cp.id} is after {ref!r}, which is not a task "
                              "or checkpoint of this plan: fix the id")
    from flowgit.core.graph import find_cycle  # a plan checked afresh: not a warm command's start

    cycle = find_cycle(deps)
    if cycle:
        errors.append(f"{display}: dependency cycle {' -> '.join(cycle)}: remove one of these dependencies")
    for i, ms in enumerate(plan.milestones):
        if isinstance(ms, Mapping):
            for ref in ms.get("tasks") or []:
                if ref not in known:
                    errors.append(f"{display}: milestone {ms.get('id', i)} lists {ref!r}, which is not a task of this plan")
    if adr_ids is not None:
        adrs = set(adr_ids)
        refs = [(None, a) for a in plan.adrs] + [(t.id, a) for t in plan.tasks for a in t.adrs]
        for owner, ref in refs:
            if ref not in adrs:
                who = f"task {owner}" if owner else "the plan"
                errors.append(f"{display}: {who} refers to {ref!r}, which is not an ADR in .flow/adrs/: "
                              "create it with `flowgit adr new` or fix the id")
    if plan.parent == plan.id:
        errors.append(f"{display}: plan {plan.id} is its own parent: remove `parent` or name another plan")
    elif plan.parent is not None and other_plan is not None:
        if other_plan(plan.parent) is None:
            errors.append(f"{display}: parent plan {plan.parent!r} does not exist")
    return errors


def outside_refs(plan: Plan) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What other files decide in a plan: its dependencies on other plans (or on nothing
    there is) and the ADRs it names, each once, sorted."""
    known = set(plan.node_ids())
    deps = {d for t in plan.tasks for d in t.depends_on if d not in known}
    adrs = {*plan.adrs, *(a for t in plan.tasks for a in t.adrs)}
    return tuple(sorted(deps)), tuple(sorted(adrs))


def change_is_clean(after: Plan, old: Task | None, new: Task, *, known: Collection[str],
                    outside: tuple[Iterable[str], Iterable[str]], adr_ids: Iterable[str],
                    other_plan: ExternalLookup | None) -> bool:
    """Whether `plan_errors(after, ...)` finds nothing, without walking every task: `after` is
    a plan `plan_errors` found clean when it was checked, with the task `old` (None: none)
    replaced by `new` under the same id, or `new` added under an id of its own; `known` is
    `after`'s ids; `outside` holds at least `outside_refs(after)`. True only when
    `plan_errors` would return []; False: run it for the message. What other files decide
    (other plans, the ADRs, the parent) may have changed since, so all of it is checked."""
    for dep in new.depends_on:
        if dep == new.id or (dep not in known and _external_problem(after.id, dep, other_plan)):
            return False
    grown = {d for d in new.depends_on if d in known} - set(old.depends_on if old else ())
    if old is not None and grown and _reaches(after, grown, new.id):
        return False
    deps, adrs = outside
    if any(d not in known and _external_problem(after.id, d, other_plan) for d in deps):
        return False
    named = set(adr_ids)
    if any(a not in named for a in (*adrs, *new.adrs)):
        return False
    if any(isinstance(ms, Mapping) and any(r not in known for r in ms.get("tasks") or [])
           for ms in after.milestones):
        return False
    if after.parent == after.id:
        return False
    return after.parent is None or other_plan is None or other_plan(after.parent) is not None


def upstream(plan: Plan, node: str, records: Mapping[str, Any] | None = None) -> Plan:
    """The plan cut down to one task or checkpoint and everything it waits on in the plan
    (only those tasks are built, for a plan read from the index). With the tasks' `records`,
    a done or skipped task is kept without its dependencies (its state does not depend on
    them): `node`'s state is the one the whole plan gives it, the cut tasks' own rows say
    nothing of what they wait on."""
    from dataclasses import fields, replace

    from flowgit.core.index import TASK_FIELDS, indexed_plan, lazy_rows, plan_columns
    from flowgit.core.planstate import FINISHED

    ids, columns = plan_columns(plan)
    deps: dict[str, Iterable[str]] = dict(zip(ids, columns))
    deps.update({c.id: c.after for c in plan.checkpoints})
    keep: set[str] = set()
    cut: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if item in keep or item not in deps:
            continue
        keep.add(item)
        if records is not None and item != node and getattr(records.get(item), "status", None) in FINISHED:
            cut.add(item)
            continue
        stack.extend(deps[item])
    cut.difference_update(c.id for c in plan.checkpoints)
    rest = {f.name: getattr(plan, f.name) for f in fields(Plan) if f.name not in ("tasks", "checkpoints")}
    checkpoints = tuple(c for c in plan.checkpoints if c.id in keep)
    rows = lazy_rows(plan)
    if rows is not None:  # rows in, rows out: a task is built only when read
        at = TASK_FIELDS.index("depends_on")
        kept = [(row if row[0] not in cut else row[:at] + ((),) + row[at + 1:]) for row in rows if row[0] in keep]
        return indexed_plan(Plan(**rest, tasks=(), checkpoints=checkpoints), lambda: kept)
    tasks = tuple(t if t.id not in cut else replace(t, depends_on=())
                  for t in (plan.task(i) for i in ids if i in keep) if t is not None)
    return Plan(**rest, tasks=tasks, checkpoints=checkpoints)


def _reaches(plan: Plan, starts: Iterable[str], target: str) -> bool:
    """Whether `target` is among the dependencies, direct or not, of any of `starts`."""
    from flowgit.core.index import plan_columns

    deps: dict[str, Iterable[str]] = dict(zip(*plan_columns(plan)))
    deps.update({c.id: c.after for c in plan.checkpoints})
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        node = stack.pop()
        if node == target:
            return True
        if node in seen:
            continue
        seen.add(node)
        stack.extend(d for d in deps.get(node, ()) if d in deps)
    return False


def _external_problem(this_plan: str, dep: str, other_plan: ExternalLookup | None) -> str | None:
    other, sep, task = dep.partition("/")
    if other == this_plan:
        if not sep:
            return "which is this plan itself: a task cannot wait for its own plan to complete; remove it"
        return f"which names this plan: write {task!r} without the {this_plan + '/'!r} prefix"
    if not sep:
        if other_plan is None:
            return "which is not a task or checkpoint of this plan: fix the id"
        target = other_plan(other)
        if target is None:
            return "which is neither a task of this plan nor a plan: fix the id"
        return None
    if other_plan is None:
        return None
    target = other_plan(other)
    if target is None:
        return f"but there is no plan {other!r}: fix the id"
    if target.task(task) is None and target.checkpoint(task) is None:
        return f"but plan {other} has no task {task!r}: fix the id"
    return None


def parent_cycle(plans: Mapping[str, Plan], find: Callable[[str], "Plan | None"]) -> list[str] | None:
    """A chain of `parent` links that comes back to where it started (a plan that is its own
    parent is reported on its own)."""
    for start in sorted(plans):
        chain = [start]
        plan: Plan | None = plans[start]
        while plan is not None and plan.parent is not None and plan.parent != plan.id:
            if plan.parent in chain:
                return chain[chain.index(plan.parent):] + [plan.parent]
            chain.append(plan.parent)
            plan = plans.get(plan.parent) or find(plan.parent)
    return None


def cross_plan_cycle(plans: Mapping[str, Plan]) -> list[str] | None:
    """A cycle among plans through cross-plan dependencies (`OTHER/TASK` or `OTHER`)."""
    edges: dict[str, list[str]] = {pid: [] for pid in plans}
    for pid, plan in plans.items():
        local = set(plan.node_ids())
        for task in plan.tasks:
            for dep in task.depends_on:
                if dep in local:
                    continue
                other = dep.partition("/")[0]
                if other in plans and other != pid:
                    edges[pid].append(other)
    from flowgit.core.graph import find_cycle

    return find_cycle(edges)


def with_referenced_plans(plans: Mapping[str, Plan], find: Callable[[str], "Plan | None"]) -> dict[str, Plan]:
    """`plans` plus every plan they reach through cross-plan dependencies (found by `find`),
    so a cycle through a plan that is not being checked is still seen."""
    out = dict(plans)
    frontier = list(plans.values())
    while frontier:
        plan = frontier.pop()
        local = set(plan.node_ids())
        for task in plan.tasks:
            for dep in task.depends_on:
                other = dep.partition("/")[0]
                if dep in local or other in out:
                    continue
                found = find(other)
                if found is not None:
                    out[other] = found
                    frontier.append(found)
    return out


def rule_breaks(display: str, raw: Any) -> list[str]:
    """What the path and id rules of issue 13 refuse in one plan file as written, every case
    with its fix (loading the plan stops at the first). For `doctor`, on raw YAML."""
    if not isinstance(raw, Mapping):
        return []
    out: list[str] = []
    nodes: list[str] = []
    for key in ("tasks", "checkpoints"):
        items = raw.get(key)
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, Mapping):
                continue
            ident = item.get("id")
            if isinstance(ident, str):
                nodes.append(ident)
                if _old_id_ok(ident) and not is_valid_id(ident):
                    out.append(f"{display}: id {ident!r}: {id_problem(ident)}")
            files = item.get("files")
            for i, path in enumerate(files if isinstance(files, list) else []):
                problem = path_problem(path) if isinstance(path, str) else None
                if problem:
                    what = "is outside the repository" if problem in OUTSIDE else "is refused"
                    out.append(f"{display}: task {ident}: files[{i}] {path!r} {what} ({problem}): "
                               f"use {PATH_RULE}")
    for twins in case_twins(nodes):
        out.append(f"{display}: {case_twin_message(twins, 'task or checkpoint ids')}")
    return out


def config_breaks(display: str, raw: Any) -> list[str]:
    """Executor templates of a config (raw YAML) that put a placeholder inside a script."""
    executors = raw.get("executors") if isinstance(raw, Mapping) else None
    out: list[str] = []
    for name, spec in executors.items() if isinstance(executors, Mapping) else []:
        try:
            argv = argv_of(spec.get("argv"), "argv") if isinstance(spec, Mapping) else ()
        except InvalidFile:
            continue
        for found in script_placeholders(argv):
            out.append(f"{display}: executors.{name}.argv[{found.index}]: {{{found.placeholder}}} is "
                       f"inside a script that {found.interpreter} runs: {env_hint(found.placeholder)}")
    return out


def _old_id_ok(ident: str) -> bool:
    """An id the rules before issue 13 took (shape only): new refusals are the difference."""
    return re.fullmatch(ID_PATTERN[1:-1], ident) is not None and ".." not in ident
