"""A plan file changed outside flowgit (a pull, a teammate's commit), checked by what changed
against the last version this clone checked (issue 17, ADR 0012).

The last version a flowgit edit wrote or caught up (its index: `planslice.Index`, with the blob
id of its bytes) and the version `load_plan` reads now are compared byte by byte: a common
beginning and end, and between them the tasks whose lines changed. Only those tasks are parsed
(their lines as a document of their own, as the splicing editor does) and held to the schema,
the task fields and the rules between tasks; the others are the checked version's. When it all
holds, the new version's index (checked) and its plan (rows) are cached by the digest of its
bytes, so the `task add` or `task edit` that follows neither parses nor checks the whole file.

Whatever this cannot vouch for, it leaves alone, and the edit reads and checks the file whole as
before, so every refusal, and its message, is the full check's: a change outside the task list
(the plan's own fields, checkpoints), a task list this cannot read line by line there (a
quoted or flow value going on past its task, an anchor, an alias or a tag, a tab, a document
marker, unusual line breaks), any schema or field problem, a duplicate or case twin id, a
dependency on something that is not there (a task removed while others wait on it included),
a dependency that could close a cycle, a dependency on another plan (the cycle across plans is
checked whole), an ADR that is not there, or no checked version to compare with."""
from __future__ import annotations

import hashlib
import re
from bisect import bisect_left, bisect_right
from typing import Any, Mapping

from flowgit.core.model import Plan, Task
from flowgit.errors import FlowError, InvalidFile
from flowgit.formats import planslice, yamlio
from flowgit.store.repo import FlowRepo

# What could make a run of lines mean something else beside other lines than alone: an
# anchor, an alias or a tag starting a node, a document marker or directive, a tab, a byte
# order mark, line breaks Python and libyaml count differently.
_UNSURE = re.compile(r"(?:^|[\s\[{,:-])[&*!]|^(?:---|\.\.\.|%)|[\t\ufeff]", re.M)


def _doc(text: str, display: str) -> Any:
    """A run of task lines as a document of its own (None: not one this can vouch for)."""
    if _UNSURE.search(text) or planslice._ODD_BREAKS.search(text):
        return None
    own = "tasks:\n" + text
    if yamlio.depth_bound(own) > yamlio.MAX_YAML_DEPTH:
        return None
    try:
        doc = yamlio.loads(own, display)
    except InvalidFile:
        return None
    if not isinstance(doc, dict):
        return None
    items = doc.get("tasks")
    if items is None:
        items = []
    if not isinstance(items, list) or not all(isinstance(t, dict) and isinstance(t.get("id"), str) for t in items):
        return None
    return {**doc, "tasks": items}


def catch_up(repo: FlowRepo, plan_id: str) -> bool:
    """Cache the version `load_plan` reads now as checked, from the last version this clone
    checked and what changed since, when that can be vouched for (see the module docstring).
    True when it did; False leaves everything as it was (the edit checks the file whole)."""
    from flowgit.store import cache as cache_mod

    from flowgit.ids import is_valid_id

    if cache_mod.disabled() or not is_valid_id(plan_id):
        return False
    try:
        return _catch_up(repo, plan_id)
    except (FlowError, OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError):
        return False


def _catch_up(repo: FlowRepo, plan_id: str) -> bool:
    from flowgit import git
    from flowgit.store import planpack
    from flowgit.core.index import check_rows, indexed_plan, task_rows
    from flowgit.store import plansplice
    from flowgit.store.planpin import source

    src = source(repo, plan_id)
    entry = repo.plan_cache.entry(plan_id).get("plan")
    if src is None or not isinstance(entry, dict):
        return False
    kept = plansplice.store(repo)
    slot = kept.entry(plansplice._key(plan_id))
    old_digest, blob = slot.get("digest"), slot.get("blob")
    if not isinstance(old_digest, str) or not isinstance(blob, str) or not git.is_full_id(blob):
        return False
    old_index = planslice.from_cache(slot, old_digest)
    if old_index is None or not old_index.checked or (entry.get("stat") == src.key
                                                       and entry.get("hash") == old_digest):
        return False  # the version this clone checked last is the one there (no bytes read)
    data = src.read()
    again = source(repo, plan_id)  # the bytes read are the ones its stats name
    digest = hashlib.sha256(data).hexdigest()
    if again is None or again.key != src.key or digest == old_digest:
        return False
    rows_entry = repo.plan_cache.entry(f"{plan_id}@rows")
    if not entry.get("checked") or not isinstance(entry.get("data"), dict) \
            or not isinstance(entry.get("executors"), dict):
        return False
    have_new = entry.get("hash") == digest and rows_entry.get("hash") == digest
    if not have_new and not (entry.get("hash") == old_digest and rows_entry.get("hash") == old_digest):
        return False
    rows = check_rows(rows_entry.get("rows"))
    if rows is None:
        return False
    display = src.display
    new = yamlio.decode(data, display)
    old_data = git.cat_blobs(repo.root, [blob]).get(blob)
    if old_data is None or hashlib.sha256(old_data).hexdigest() != old_digest:
        return False
    old = old_data.decode("utf-8")
    planpack.known_bytes(blob, old_data)  # the chain's tip, most likely: store/planpack.py
    found = _changed_tasks(old, new, old_index, display)
    if found is None:
        return False
    i, j, delta, old_doc, new_doc, region = found
    new_items: list[dict[str, Any]] = new_doc["tasks"]
    old_ids = old_index.ids
    new_ids = [*old_ids[:i], *(str(t["id"]) for t in new_items), *old_ids[j:]]
    if not new_ids:
        return False
    head = entry["data"]
    if {k: v for k, v in old_doc.items() if k != "tasks"} != {k: v for k, v in new_doc.items() if k != "tasks"}:
        return False
    from flowgit.formats import schemacheck

    if new_items and schemacheck.schema_errors("plan", {"id": plan_id, "title": plan_id, "tasks": new_items},
                                               None, display):
        return False
    tasks = [Task.from_dict(t, display) for t in new_items]  # InvalidFile: the full check says what
    head_plan = Plan.from_dict(head, display, trusted=True, task_values=())
    if have_new:
        if [r[0] for r in rows] != new_ids or rows[i: i + len(tasks)] != task_rows(tasks):
            return False
        new_rows = rows
    else:
        if [r[0] for r in rows] != old_ids:
            return False
        new_rows = [*rows[:i], *task_rows(tasks), *rows[j:]]
    after = indexed_plan(head_plan, lambda: new_rows)
    old_tasks = {str(t["id"]): t for t in old_doc["tasks"]}
    outside = _clean(repo, after, tasks, old_tasks, new_ids, old_index.outside, display)
    if outside is None:
        return False
    starts, ends = _spans(new, region, [t.id for t in tasks], display)
    if starts is None or ends is None:
        return False
    new_starts = [*old_index.starts[:i], *starts, *(s + delta for s in old_index.starts[j:])]
    new_ends = [*old_index.ends[:i], *ends, *(e + delta for e in old_index.ends[j:])]
    index = planslice.Index(digest, new_ids, new_starts, new_ends, True, outside)
    if not have_new:
        _seed(repo, plan_id, entry, src.key, digest, new_rows, tasks, old_tasks, after)
    slot.clear()
    slot.update(planslice.to_cache(index))
    slot["blob"] = blob_of(repo, data)
    kept.changed(plansplice._key(plan_id))  # saved with the edit's own (plansplice.remember)
    repo.forget(plan_id)
    return True


def blob_of(repo: FlowRepo, data: bytes) -> str | None:
    """The blob id git gives `data` in a SHA-1 repository (None in any other)."""
    from flowgit.store import planpack

    return planpack.blob_id(data).hex() if planpack._sha1_repository(repo) else None


def _changed_tasks(old: str, new: str, index: planslice.Index, display: str
                   ) -> tuple[int, int, int, dict[str, Any], dict[str, Any], tuple[int, int]] | None:
    """The tasks whose lines changed: old tasks i..j-1 are new[region] (their lines and what
    follows them up to task j, or to the end of the file when j is past the last task), the
    rest moved by `delta` characters; and the two runs as documents of their own."""
    starts = index.starts
    from flowgit.store.planpack import common_ends

    p, s = common_ends(old, new)
    lo, hi, delta = p, len(old) - s, len(new) - len(old)
    if lo < starts[0]:  # the plan's own fields, or what comes before the first task
        return None
    first = old[starts[0]: old.index("-", starts[0]) + 1]
    if first.strip(" ") != "-":
        return None
    i = bisect_right(starts, lo) - 1
    while i >= 0 and not (new.startswith(first, starts[i]) and new[starts[i] + len(first): starts[i] + len(first) + 1]
                          in (" ", "\n", "\r")):
        i -= 1
    if i < 0:
        return None
    j = bisect_left(starts, hi, lo=i)
    if j < len(starts):
        old_end, new_end = starts[j], starts[j] + delta
    else:
        old_end, new_end = len(old), len(new)
    old_doc = _doc(old[starts[i]: old_end], display)
    new_doc = _doc(new[starts[i]: new_end], display)
    if old_doc is None or new_doc is None or [t["id"] for t in old_doc["tasks"]] != index.ids[i:j]:
        return None
    if j < len(starts) and (set(old_doc) != {"tasks"} or set(new_doc) != {"tasks"}):
        return None
    return i, j, delta, old_doc, new_doc, (starts[i], new_end)


def _clean(repo: FlowRepo, after: Plan, tasks: list[Task], old_tasks: Mapping[str, Any],
           new_ids: list[str], outside: tuple[tuple[str, ...], tuple[str, ...]],
           display: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """What `semantic.plan_errors` and the cycle across plans find in `after` is nothing,
    known from the checked version and the changed `tasks` alone: their new outside
    references (None: something may be wrong, the full check says what)."""
    from flowgit.core import semantic
    from flowgit.core.index import plan_columns
    from flowgit.store.planedit import _other, _refuse_cycle, adr_ids
    from flowgit.store.plansplice import same_ignoring_case

    checkpoints = [c.id for c in after.checkpoints]
    known = {*new_ids, *checkpoints}
    if len(known) != len(new_ids) + len(checkpoints):
        return None  # a duplicate id
    changed = {t.id for t in tasks}
    every = [*new_ids, *checkpoints]
    if any(same_ignoring_case(x, every) != 1 for x in changed):
        return None  # a case twin
    removed = set(old_tasks) - changed
    if removed:
        _, deps = plan_columns(after)
        waiting = {d for ds in deps for d in ds if d in removed}
        waiting |= {a for c in after.checkpoints for a in c.after if a in removed}
        waiting |= {r for ms in after.milestones if isinstance(ms, Mapping) for r in ms.get("tasks") or []
                    if r in removed}
        if waiting:
            return None
    def other(pid: str) -> Plan | None:
        return _other(repo, pid, after.id)
    adrs = set(adr_ids(repo))
    out_deps, out_adrs = set(outside[0]), set(outside[1])
    grown: dict[str, set[str]] = {}
    for task in tasks:
        before = old_tasks.get(task.id)
        had = set(before.get("depends_on") or ()) if isinstance(before, dict) else set()
        for dep in task.depends_on:
            if dep == task.id:
                return None
            if dep not in known:
                out_deps.add(dep)
            elif dep not in had:
                grown.setdefault(task.id, set()).add(dep)
        out_adrs.update(task.adrs)
    if any(d not in known and semantic._external_problem(after.id, d, other) for d in out_deps):
        return None
    if any(a not in adrs for a in out_adrs):
        return None
    if any(isinstance(ms, Mapping) and any(r not in known for r in ms.get("tasks") or [])
           for ms in after.milestones):
        return None
    if after.parent == after.id or (after.parent is not None and other(after.parent) is None):
        return None
    if any(semantic._reaches(after, deps, ident) for ident, deps in grown.items()):
        return None
    if any(d not in known for d in out_deps):
        try:
            _refuse_cycle(repo, after, display)
        except InvalidFile:
            return None
    return tuple(sorted(out_deps)), tuple(sorted(out_adrs))


def _spans(new: str, region: tuple[int, int], ids: list[str], display: str
           ) -> tuple[list[int], list[int]] | tuple[None, None]:
    """Where each of the changed tasks' lines are in `new` (the run `region`), as the
    index keeps them."""
    if not ids:
        return [], []
    at, end = region
    own = "tasks:\n" + new[at:end]
    layout = planslice.scan(own, ids) or planslice.read(own, display)
    if layout is None or list(layout.spans) != ids:
        return None, None
    index = planslice.index_of(layout, "")
    shift = at - len("tasks:\n")
    return [s + shift for s in index.starts], [e + shift for e in index.ends]


def _seed(repo: FlowRepo, plan_id: str, entry: dict[str, Any], key: Any, digest: str,
          rows: list[tuple[Any, ...]], tasks: list[Task], old_tasks: Mapping[str, Any], after: Plan) -> None:
    """The new version as `load_plan` caches it (store/planindex.py): the head as it was,
    the rows with the changed tasks'."""
    from flowgit.store.plansplice import _external

    executors = {k: v for k, v in entry["executors"].items() if k not in old_tasks}
    executors.update({t.id: t.executor for t in tasks if t.executor is not None})
    repo.plan_cache.entry(plan_id)["plan"] = {
        "stat": key, "data": entry["data"], "hash": digest, "checked": True,
        "external": _external(after), "executors": executors}
    repo.plan_cache.changed(plan_id)
    kept = repo.plan_cache.entry(f"{plan_id}@rows")
    kept.clear()
    kept.update({"hash": digest, "rows": rows})
    repo.plan_cache.changed(f"{plan_id}@rows")
