"""Editing plan files as flowgit does: checked as `validate` would before writing, tasks spliced
in keeping comments, order and quoting, and never over the user's uncommitted edits."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

from flowgit.core.model import Plan
from flowgit.errors import Dirty, FlowError, InvalidFile, NotFound
from flowgit.formats import planslice, yamlio
from flowgit.ids import is_valid_id
from flowgit.store.repo import FlowRepo


def check_plan_text(repo: FlowRepo, text: str, display: str, plan_id: str) -> Plan:
    """Everything `validate` checks, before flowgit writes a plan."""
    from flowgit.formats import schemacheck

    data = yamlio.loads(text, display)
    errors = schemacheck.schema_errors("plan", data, text, display)
    if errors:
        raise InvalidFile(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    plan = Plan.from_dict(data, display)
    if plan.id != plan_id:
        raise InvalidFile(f"{display}: id {plan.id!r} does not match the plan name {plan_id!r}")
    from flowgit.core import semantic

    problems = semantic.plan_errors(plan, display, adr_ids=adr_ids(repo),
                                    other_plan=lambda pid: _other(repo, pid, plan_id))
    if problems:
        raise InvalidFile(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    _refuse_cycle(repo, plan, display)
    return plan


def _refuse_cycle(repo: FlowRepo, plan: Plan, display: str) -> None:
    from flowgit.core import semantic

    cycle = semantic.cross_plan_cycle(semantic.with_referenced_plans(
        {plan.id: plan}, lambda pid: _other(repo, pid, plan.id)))
    if cycle:
        raise InvalidFile(f"{display}: plans would wait on each other in a cycle {' -> '.join(cycle)}: "
                          "remove one cross-plan dependency")


def _other(repo: FlowRepo, pid: str, this: str) -> Plan | None:
    if pid == this or not is_valid_id(pid):
        return None
    try:
        return repo.load_plan(pid).plan
    except NotFound:
        return None


def adr_ids(repo: FlowRepo) -> list[str]:
    adrs = repo.safe("adrs")
    if not adrs.is_dir():
        return []
    out = []
    for path in sorted(adrs.glob("*.yaml")):
        match = re.match(r"^(ADR-\d+)", path.name)
        if match and not path.is_symlink():
            out.append(match.group(1))
    return out


def committed_text(repo: FlowRepo, path: Path, command: str) -> str:
    """The plan file to edit and commit; refused while it has edits of the user's own, which
    would otherwise go into flowgit's commit under its message."""
    rel = repo.plan_edited(path.parent.name)
    if rel:
        raise Dirty(f"{rel} has uncommitted changes: commit or stash them before "
                        f"`flowgit {command}`")
    if not path.is_file():  # format 2: the plan executes from the state, not this branch
        raise NotFound(f"{repo.rel(path)} is not on this branch: `flowgit {command}` edits the plan "
                       "on a branch that has it (check out the one execution started from)")
    return yamlio.read_text(path)


def append_tasks(text: str, display: str, tasks: Sequence[dict[str, Any]],
                 checkpoint_after: tuple[str, str] | None = None) -> str:
    """Add tasks to a plan's YAML keeping its comments, order and quoting: spliced after the
    last task's lines when the file allows (every other byte kept, and fast on a big plan),
    else through the round-trip editor."""
    if checkpoint_after is None and not planslice.unterminated_block(text):
        layout = planslice.read(text, display)
        if layout is not None:
            return planslice.append(layout, list(tasks))
    doc = yamlio.rt_load(text, display)
    if not isinstance(doc, dict):
        raise InvalidFile(f"{display}: a plan file must be a mapping")
    seq = doc.get("tasks")
    if seq is None:
        from ruamel.yaml.comments import CommentedSeq

        seq = CommentedSeq()
        doc["tasks"] = seq
    # Blank lines and comments after the last task belong to what follows the list (e.g. the
    # `checkpoints:` section), but ruamel keeps them on the last task: move them past the new ones.
    trailing = _take_trailing(seq)
    for task in tasks:
        seq.append(_commented(task))
    if trailing:
        _put_trailing(seq, trailing)
    if checkpoint_after:
        for cp in doc.get("checkpoints") or []:
            if cp.get("id") == checkpoint_after[0]:
                cp["after"].append(checkpoint_after[1])
    return yamlio.rt_dump(doc, like=text)


def _last_path(node: Any) -> list[tuple[Any, Any]]:
    """(container, key) along the last entries of nested block collections, outermost first."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    out: list[tuple[Any, Any]] = []
    while isinstance(node, (CommentedMap, CommentedSeq)) and len(node) and not node.fa.flow_style():
        key = list(node)[-1] if isinstance(node, CommentedMap) else len(node) - 1
        out.append((node, key))
        node = node[key]
    return out


def _comment_slot(container: Any) -> int:
    from ruamel.yaml.comments import CommentedMap

    return 2 if isinstance(container, CommentedMap) else 0


def _take_trailing(seq: Any) -> str | None:
    """Detach what follows the end of the last entry's line (blank lines, comments)."""
    for container, key in reversed(_last_path(seq)):
        entry = container.ca.items.get(key)
        token = entry[_comment_slot(container)] if entry else None
        if token is None:
            continue
        head, newline, rest = token.value.partition("\n")
        if not rest:
            return None
        token.value = head + newline
        return cast(str, rest)
    return None


def _put_trailing(seq: Any, text: str) -> None:
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    path = _last_path(seq)
    if not path:
        return
    container, key = path[-1]
    empty: list[Any] = [None, None, None, None] if isinstance(container, CommentedMap) else [None, None]
    entry = container.ca.items.setdefault(key, empty)
    entry[_comment_slot(container)] = CommentToken("\n" + text, CommentMark(0), None)


def _commented(value: Any) -> Any:
    """Plain dicts and lists as ruamel's block collections, so comments can be attached."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        return CommentedMap((k, _commented(v)) for k, v in value.items())
    if isinstance(value, list):
        return CommentedSeq(_commented(v) for v in value)
    return value


def append_task_text(repo: FlowRepo, plan_id: str, text: str, task: Any) -> tuple[str, list[str]]:
    """`text` with one more task, checked as `validate` would (the same id twice: unchanged)."""
    if not isinstance(task, dict) or "id" not in task or "title" not in task:
        raise FlowError(f"a task to add needs an id and a title: {task!r}")
    display = repo.rel(repo.plan_file(plan_id))
    current = Plan.from_dict(yamlio.loads(text, display), display)
    if task["id"] in set(current.node_ids()):
        return text, []
    new = append_tasks(text, display, [{k: v for k, v in task.items() if k not in ("kind", "plan")}])
    plan = check_plan_text(repo, new, display, plan_id)
    refuse_cross_plan_cycle(repo, plan)
    return new, [str(task["id"])]


def refuse_cross_plan_cycle(repo: FlowRepo, plan: Plan) -> None:
    """`validate` rejects plans that wait on each other in a cycle: never write one."""
    from flowgit.core.semantic import cross_plan_cycle

    plans: dict[str, Plan] = {}
    for pid in repo.plan_ids():
        if pid == plan.id:
            continue
        try:
            plans[pid] = repo.load_plan(pid).plan
        except FlowError:
            continue
    plans[plan.id] = plan
    cycle = cross_plan_cycle(plans)
    if cycle:
        raise FlowError(f"plan {plan.id}: the new tasks would make plans wait on each other in a "
                        f"cycle {' -> '.join(cycle)}")


# ----- one task edited or removed in place (`task edit`, `task remove`) ----------------------

def _set_fields(task: Any, changes: Mapping[str, Any]) -> None:
    """Changes to a round-trip task mapping (None removes the key). A list replacing a list
    written `[a, b]` is written the same way; text over several lines as a `|` block."""
    from ruamel.yaml.comments import CommentedSeq
    from ruamel.yaml.scalarstring import LiteralScalarString

    for key, value in changes.items():
        if value is None:
            task.pop(key, None)
            continue
        old = task.get(key)
        if isinstance(value, list):
            new = CommentedSeq(value)
            if isinstance(old, CommentedSeq) and old.fa.flow_style():
                new.fa.set_flow_style()
            value = new
        elif isinstance(value, str) and "\n" in value:
            value = LiteralScalarString(value)
        task[key] = value


def edit_task_text(text: str, display: str, task_id: str, changes: Mapping[str, Any]) -> str:
    """The plan text with one task's fields changed: its lines spliced when the file allows
    (every other byte kept), else through the round-trip editor."""
    layout = planslice.read(text, display)
    if layout is not None and task_id in layout.spans:
        return planslice.edit(layout, task_id, lambda task: _set_fields(task, changes), display)
    doc = yamlio.rt_load(text, display)
    task = next((t for t in _tasks_of(doc) if t.get("id") == task_id), None)
    if task is None:
        raise NotFound(f"{display} has no task {task_id!r}")
    _set_fields(task, changes)
    return yamlio.rt_dump(doc, like=text)


def remove_task_text(text: str, display: str, task_id: str) -> str:
    """The plan text without one task: its lines cut when the file allows, else through the
    round-trip editor (the last task leaves `tasks: []`)."""
    layout = planslice.read(text, display)
    if layout is not None and task_id in layout.spans:
        cut = planslice.remove(layout, task_id)
        if cut is not None:
            return cut
    doc = yamlio.rt_load(text, display)
    seq = doc.get("tasks") if isinstance(doc, dict) else None
    index = next((i for i, t in enumerate(_tasks_of(doc)) if t.get("id") == task_id), None)
    if seq is None or index is None:
        raise NotFound(f"{display} has no task {task_id!r}")
    del seq[index]
    if not seq:
        seq.fa.set_flow_style()
    return yamlio.rt_dump(doc, like=text)


def _tasks_of(doc: Any) -> list[Any]:
    seq = doc.get("tasks") if isinstance(doc, dict) else None
    return [t for t in seq or [] if isinstance(t, dict)]


def dependents(repo: FlowRepo, plan: Plan, task_id: str) -> list[str]:
    """Who waits on the task: its plan's tasks and checkpoints, and other plans' tasks and
    checkpoints that name it as PLAN/TASK."""
    out = [t.id for t in plan.tasks if task_id in t.depends_on]
    out += [f"checkpoint {c.id}" for c in plan.checkpoints if task_id in c.after]
    ref = f"{plan.id}/{task_id}"
    for pid in repo.plan_ids():
        if pid == plan.id:
            continue
        try:
            other = repo.load_plan(pid).plan
        except FlowError:
            continue
        out += [f"{pid}/{t.id}" for t in other.tasks if ref in t.depends_on]
        out += [f"{pid}/{c.id} (checkpoint)" for c in other.checkpoints if ref in c.after]
    return out
