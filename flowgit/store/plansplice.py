"""One task added to or changed in a big plan without reading the whole plan again (issue 17).

An index of each version of a plan file, cached by the file's digest (`planslice.Index`: where
each task's lines are, and whether that version passed every check), lets an edit splice the
task's lines and check only what the change can break: the new task's schema and fields, its
dependencies, a cycle through it, and the rules that depend on other files (other plans, the
ADRs, the parent), against the plan as `load_plan` holds it. Whatever this cannot vouch for
(no index yet, a version never checked, any problem at all) goes through the full check, so
what is refused, and the message, is what the full check says. After the write the new
version's index and its parsed plan are cached, so the next edit and the next read of the plan
need no parse either."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from flowgit.core.model import Plan, Task
from flowgit.errors import FlowError, InvalidFile
from flowgit.formats import planslice, yamlio
from flowgit.store.planedit import (
    _other,
    _refuse_cycle,
    _set_fields,
    adr_ids,
    append_tasks,
    check_plan_text,
    edit_task_text,
    refuse_cross_plan_cycle,
)
from flowgit.store.cache import DerivedCache
from flowgit.store.kept import kept
from flowgit.store.repo import FlowRepo, LoadedPlan


@dataclass(frozen=True)
class Edited:
    """A plan file's new text, the plan it parses to (checked), and its index."""

    text: str
    plan: Plan
    index: planslice.Index | None
    splice: planslice.Splice | None = None  # how `text` was made from the version before
    before: str | None = None  # the sha256 of the version before (with `splice`)


def store(repo: FlowRepo) -> DerivedCache:
    """What is kept by content for this repository (store/kept.py)."""
    return kept(repo)


def _key(plan_id: str) -> str:
    return f"slice-{plan_id}"


CHECKED = "plans"  # plan id -> digests of versions whose own checks (schema, fields) passed
KEEP = 8


def checked_plan(repo: FlowRepo, plan_id: str, data: bytes) -> Plan | None:
    """The plan these exact bytes are, when a version with their digest passed the checks one
    file gets on its own and `load_plan` holds it: then they need no parse (`validate`)."""
    digest = hashlib.sha256(data).hexdigest()
    index = planslice.from_cache(store(repo).entry(_key(plan_id)), digest)
    if not (index is not None and index.checked) and digest not in store(repo).entry(CHECKED).get(plan_id, ()):
        return None
    try:
        loaded = repo.load_plan(plan_id)
    except FlowError:
        return None
    return loaded.plan if loaded.hash == digest else None


def record_checked(repo: FlowRepo, plan_id: str, data: bytes) -> None:
    """These bytes passed the checks one plan file gets on its own."""
    digest = hashlib.sha256(data).hexdigest()
    entry = store(repo).entry(CHECKED)
    known = [d for d in entry.get(plan_id, []) if d != digest]
    entry[plan_id] = [digest, *known][:KEEP]
    store(repo).changed(CHECKED)


def _index(repo: FlowRepo, loaded: LoadedPlan, text: str, display: str) -> planslice.Index | None:
    """The index of this version of the file: cached; else, when it is the version `load_plan`
    holds, read line by line and checked against that plan's task ids (a file changed outside
    flowgit: a pull, a hand edit); else found with the composer (None: the file is not laid
    out one task per run of lines)."""
    from flowgit.core.index import plan_column

    digest = planslice.digest_of(text)
    found = planslice.from_cache(store(repo).entry(_key(loaded.plan.id)), digest)
    if found is not None:
        return found
    layout = planslice.scan(text, plan_column(loaded.plan, "id")) if loaded.hash == digest else None
    if layout is None:
        layout = planslice.read(text, display)
    return planslice.index_of(layout, digest) if layout is not None else None


def add_task(repo: FlowRepo, loaded: LoadedPlan, text: str, display: str,
             task: Mapping[str, Any]) -> Edited:
    """The plan text with one more task after the last one, checked as `validate` would."""
    plan_id = loaded.plan.id
    index = None if planslice.unterminated_block(text) else _index(repo, loaded, text, display)
    if index is None:
        new_text = append_tasks(text, display, [dict(task)])
        return Edited(new_text, check_plan_text(repo, new_text, display, plan_id), None)
    new_text, own, new_index, splice = planslice.splice_append(text, index, task)
    edited = _checked(repo, loaded, index, new_text, own, new_index, display, None)
    return dataclasses.replace(edited, splice=splice, before=index.digest)


def add_tasks(repo: FlowRepo, loaded: LoadedPlan, text: str, display: str,
              tasks: Sequence[Mapping[str, Any]]) -> Edited:
    """The plan text with these tasks after the last one (the bytes `append_tasks` writes),
    checked as `validate` would: one by one against the cached plan when each is clean on its
    own, else the whole file (so a refusal and its message are the full check's)."""
    if len(tasks) == 1:
        return add_task(repo, loaded, text, display, tasks[0])
    plan_id = loaded.plan.id
    index = None if planslice.unterminated_block(text) else _index(repo, loaded, text, display)
    if index is not None:
        new_text, owns, new_index, splice = planslice.splice_append_many(text, index, tasks)
        if len(new_index.ids) == len(index.ids) + len(tasks):
            edited = _checked(repo, loaded, index, new_text, owns, new_index, display, None)
            return dataclasses.replace(edited, splice=splice, before=index.digest)
    new_text = append_tasks(text, display, [dict(t) for t in tasks])
    return Edited(new_text, check_plan_text(repo, new_text, display, plan_id), None)


def add_tasks_text(repo: FlowRepo, plan_id: str, tasks: list[Any]) -> tuple[Edited | None, list[str]]:
    """These tasks added to the plan file, skipping ids it already has (idempotent): the
    edit (None: nothing to add) and the ids added. The watcher's `add_tasks`."""
    loaded = repo.load_plan(plan_id)
    existing = set(loaded.plan.node_ids())
    new = []
    for t in tasks:
        if not isinstance(t, dict) or "id" not in t or "title" not in t:
            raise FlowError(f"plan {plan_id}: a task to add needs an id and a title: {t!r}")
        if t["id"] in existing:
            continue
        existing.add(t["id"])
        new.append({k: v for k, v in t.items() if k != "kind" and k != "plan"})
    if not new:
        return None, []
    edited = add_tasks(repo, loaded, yamlio.read_text(loaded.path), repo.rel(loaded.path), new)
    plan = edited.plan
    if not plan.has_external_deps:  # it waits on no other plan: its tasks add no edge between plans
        plan = Plan(**{f.name: getattr(plan, f.name) for f in dataclasses.fields(Plan) if f.name != "tasks"})
    refuse_cross_plan_cycle(repo, plan)
    return edited, [str(t["id"]) for t in new]


def edit_task(repo: FlowRepo, loaded: LoadedPlan, text: str, display: str, task_id: str,
              changes: Mapping[str, Any]) -> Edited:
    """The plan text with one task's fields changed, checked as `validate` would."""
    plan_id = loaded.plan.id
    index = _index(repo, loaded, text, display)
    if index is None or task_id not in index.ids:
        new_text = edit_task_text(text, display, task_id, changes)
        return Edited(new_text, check_plan_text(repo, new_text, display, plan_id), None)
    new_text, own, new_index, splice = planslice.splice_edit(
        text, index, task_id, lambda t: _set_fields(t, changes), display)
    edited = _checked(repo, loaded, index, new_text, own, new_index, display, task_id)
    return dataclasses.replace(edited, splice=splice, before=index.digest)


def _checked(repo: FlowRepo, loaded: LoadedPlan, index: planslice.Index, new_text: str,
             own: str | Sequence[str], new_index: planslice.Index, display: str,
             replacing: str | None) -> Edited:
    """The change checked: by what it can break when the version it changes was checked and
    is the plan `load_plan` holds, else (or on any doubt) by the full check. `own`: the
    changed task's lines as a document, or the added tasks' (each checked after the ones
    before it; any doubt, the full check, which alone says what several added tasks break)."""
    from flowgit.core import semantic

    if not index.checked and loaded.hash == index.digest:
        index = _checked_whole(repo, loaded, index, display)
    if index.checked and loaded.hash == index.digest:
        owns = [own] if isinstance(own, str) else list(own)
        plan, tasks, at = loaded.plan, [], index
        for k, doc in enumerate(owns):
            found = _changed(repo, plan, at, doc, display, replacing, refuse=len(owns) == 1)
            if found is None:
                break
            plan, task = found
            tasks.append(task)
            at = dataclasses.replace(index, ids=new_index.ids[: len(index.ids) + k + 1])
        else:
            deps, adrs = index.outside
            known = set(new_index.ids)
            outside = (tuple(sorted({*deps, *(d for t in tasks for d in t.depends_on if d not in known)})),
                       tuple(sorted({*adrs, *(a for t in tasks for a in t.adrs)})))
            return Edited(new_text, plan, dataclasses.replace(new_index, checked=True, outside=outside))
    plan = check_plan_text(repo, new_text, display, loaded.plan.id)
    return Edited(new_text, plan, dataclasses.replace(
        new_index, checked=True, outside=semantic.outside_refs(plan)))


def _checked_whole(repo: FlowRepo, loaded: LoadedPlan, index: planslice.Index,
                   display: str) -> planslice.Index:
    """The index of the version `load_plan` holds, marked checked when that version passed the
    checks of one file before (`validate`, the pre-commit hook: by digest) and the rules
    between tasks and plans pass now: what the full check of it would say, without parsing
    it again. Else as it was."""
    from flowgit.core import semantic

    if index.digest not in store(repo).entry(CHECKED).get(loaded.plan.id, ()) and \
            not _schema_clean(loaded, display):
        return index
    plan = loaded.plan
    if semantic.plan_errors(plan, display, adr_ids=adr_ids(repo),
                            other_plan=lambda pid: _other(repo, pid, plan.id)):
        return index
    try:
        _refuse_cycle(repo, plan, display)
    except InvalidFile:
        return index
    return dataclasses.replace(index, checked=True, outside=semantic.outside_refs(plan))


def _schema_clean(loaded: LoadedPlan, display: str) -> bool:
    """Whether the version `load_plan` parsed in this process (a file changed outside flowgit,
    read whole once) passes the schema: with the parse and the fields `load_plan` checked, all
    that one file gets on its own, without parsing it a second time."""
    from flowgit.formats import schemacheck

    raw = loaded.parsed
    return raw is not None and not schemacheck.schema_errors("plan", raw, None, display)


def _changed(repo: FlowRepo, before: Plan, index: planslice.Index, own: str, display: str,
             replacing: str | None, refuse: bool = True) -> tuple[Plan, Task] | None:
    """`before` with the task of `own` (its lines as a document of their own) added, or in
    place of `replacing`, and that task, when every check passes; None when any might not
    (the full check then says what)."""
    from flowgit.core import semantic
    from flowgit.formats import schemacheck

    try:
        doc = yamlio.loads(own, display)
    except InvalidFile:
        return None
    items = doc.get("tasks") if isinstance(doc, dict) else None
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
        return None
    if schemacheck.schema_errors("plan", {"id": before.id, "title": before.id, "tasks": items}, None, display):
        return None
    try:
        task = Task.from_dict(items[0], display)
    except InvalidFile:
        return None
    old = None
    at = None
    if replacing is None:
        if same_ignoring_case(task.id, [*index.ids, *(c.id for c in before.checkpoints)]):
            return None
    else:
        at = index.ids.index(replacing) if replacing in index.ids else None
        old = before.task(replacing)
        if at is None or old is None or task.id != replacing:
            return None
    after = _with_task(before, task, at)
    if after is None:
        return None
    known = {*index.ids, task.id, *(c.id for c in before.checkpoints)}
    other = lambda pid: _other(repo, pid, before.id)  # noqa: E731
    if not semantic.change_is_clean(after, old, task, known=known, outside=index.outside,
                                    adr_ids=adr_ids(repo), other_plan=other):
        if refuse:
            _refuse_as_the_full_check(repo, after, display)
        return None
    if any(d not in known for d in (*index.outside[0], *task.depends_on)):
        try:
            _refuse_cycle(repo, after, display)
        except InvalidFile:
            if refuse:
                _refuse_as_the_full_check(repo, after, display)
            return None
    return after, task


def same_ignoring_case(ident: str, ids: Sequence[str]) -> int:
    """How many of `ids` are `ident` but for case (ids are ASCII: one search in C, not a
    `lower()` per id)."""
    import re

    return len(re.findall(f"^{re.escape(ident)}$", "\n".join(ids), re.I | re.M | re.A))


def _refuse_as_the_full_check(repo: FlowRepo, after: Plan, display: str) -> None:
    """A change the file's own checks pass (the task's schema and fields, against a version
    that passed them all) but the rules between tasks and plans may not: those rules run on
    the plan as the change leaves it, raising what the full check raises after its parse
    (`check_plan_text`: the first problem and how many more, then a cycle across plans).
    Returns when they find nothing: the caller runs the full check."""
    from flowgit.core import semantic

    problems = semantic.plan_errors(after, display, adr_ids=adr_ids(repo),
                                    other_plan=lambda pid: _other(repo, pid, after.id))
    if problems:
        raise InvalidFile(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    _refuse_cycle(repo, after, display)


def _with_task(before: Plan, task: Task, at: int | None) -> Plan | None:
    """`before` with `task` at position `at` (None: after the last): for a plan read from the
    index (core/index.py), as rows, without building its other tasks."""
    from dataclasses import fields

    from flowgit.core.index import indexed_plan, lazy_rows, task_rows

    rows = lazy_rows(before)
    if rows is None:
        tasks = list(before.tasks)
        if at is None:
            tasks.append(task)
        elif tasks[at].id == task.id:
            tasks[at] = task
        else:
            return None
        return dataclasses.replace(before, tasks=tuple(tasks))
    rows = list(rows)
    row = task_rows([task])[0]
    if at is None:
        rows.append(row)
    elif rows[at][0] == task.id:
        rows[at] = row
    else:
        return None
    head = Plan(**{f.name: getattr(before, f.name) for f in fields(Plan) if f.name != "tasks"})
    return indexed_plan(head, lambda: rows)


def store_version(repo: FlowRepo, edited: Edited, old: str) -> None:
    """Before the commit: the new version stored as a delta against `old` when the plan is big
    (store/planpack.py)."""
    if edited.splice is None:
        return
    from flowgit.store import planpack

    start, end, inserted = edited.splice
    data = old.encode("utf-8")
    if len(data) != len(old):  # not ASCII: character offsets are not byte offsets
        start, end = len(old[:start].encode("utf-8")), len(data) - len(old[end:].encode("utf-8"))
    slot = store(repo).entry(_key(edited.plan.id))  # the version edited, caught up after a pull
    blob = slot.get("blob") if slot.get("digest") == edited.before else None
    planpack.store_version(repo, edited.plan.id, data, start, end, inserted.encode("utf-8"),
                           edited.before, edited.index.digest if edited.index is not None else None,
                           blob if isinstance(blob, str) else None)


def remember(repo: FlowRepo, edited: Edited, before: str, changed: str | Sequence[str]) -> None:
    """After the write: the new version's index and plan cached, so the next edit and the next
    read of the plan parse nothing (only when the file holds what was written). `before`: the
    digest of the version the edit changed, `changed` the task(s) it added or changed."""
    if edited.index is None:
        return
    from flowgit.store import planpack

    key = _key(edited.plan.id)
    data = edited.text.encode("utf-8")
    slot = store(repo).entry(key)
    slot.update(planslice.to_cache(edited.index))
    # the blob the commit holds: what the next version is compared with (store/plancatch.py)
    slot["blob"] = planpack.tip_blob(repo, edited.plan.id, edited.index.digest) or \
        (planpack.blob_id(data).hex() if planpack._sha1_repository(repo) else None)
    store(repo).changed(key)
    store(repo).save()
    _seed_plan_cache(repo, edited.plan, data, edited.index.digest, before,
                     [changed] if isinstance(changed, str) else list(changed))
    repo.forget(edited.plan.id)
    repo.save_cache()


def _seed_plan_cache(repo: FlowRepo, plan: Plan, data: bytes, digest: str, before: str,
                     changed: list[str]) -> None:
    """The plan as `load_plan` caches it (store/repo.py), for the version just written: built
    by adding or replacing the tasks `changed` in the version of digest `before`. Only when the
    version `load_plan` reads now holds `data` and the cache holds the one before."""
    from flowgit.core.index import check_rows, plan_column, task_rows
    from flowgit.store.planpin import source

    cache = repo.plan_cache.entry(plan.id)  # the plan index: store/planindex.py
    entry = cache.get("plan")
    if not entry or not entry.get("checked") or entry.get("hash") != before:
        return
    src = source(repo, plan.id)
    try:
        same = src is not None and src.read() == data
    except (OSError, FlowError):
        return
    tasks = [plan.task(c) for c in changed]
    if not same or src is None or any(t is None for t in tasks):
        return
    kept = repo.plan_cache.entry(f"{plan.id}@rows")  # store/planindex.py: one tuple per task
    rows = check_rows(kept.get("rows")) if kept.get("hash") == before else None
    executors = entry.get("executors")
    if rows is None or not isinstance(executors, dict):
        return
    rows = list(rows)
    executors = dict(executors)
    wanted: set[str] = set()
    for task in tasks:
        assert task is not None
        at = next((i for i in range(len(rows) - 1, -1, -1) if rows[i][0] == task.id), len(rows))
        rows[at: at + 1] = task_rows([task])
        executors.pop(task.id, None)
        if task.executor is not None:
            executors[task.id] = task.executor
        wanted.update(task.depends_on)
    if len(rows) != len(plan_column(plan, "id")):
        return
    if entry.get("external") is False:  # no other task changed: only these can wait outside
        wanted -= {c.id for c in plan.checkpoints}
        external = bool(wanted - {i for i in plan_column(plan, "id") if i in wanted})
    else:
        external = _external(plan)
    cache["plan"] = {"stat": src.key, "data": entry["data"], "hash": digest, "checked": True,
                     "external": external, "executors": executors}
    repo.plan_cache.changed(plan.id)
    kept.clear()
    kept.update({"hash": digest, "rows": rows})
    repo.plan_cache.changed(f"{plan.id}@rows")


def _external(plan: Plan) -> bool:
    """`plan.has_external_deps`, without building the tasks of a plan read from the index."""
    from flowgit.core.index import plan_columns

    ids, deps = plan_columns(plan)
    local = {*ids, *(c.id for c in plan.checkpoints)}
    return any(d not in local for ds in deps for d in ds) or \
        any(a not in local for c in plan.checkpoints for a in c.after)
