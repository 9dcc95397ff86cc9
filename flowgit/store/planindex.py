"""The plan index (issue 17, ADR 0012): a checked plan kept in the derived cache by the hash
of its bytes, as tuples (core/index.py), so an unchanged plan is never parsed or checked
again, and its tasks are built only when asked for. The file's stats say whether its bytes
need hashing at all; the same bytes at another inode or time (a checkout, a copy, the
approved plan's blob) are still found by their hash."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from flowgit.core.index import check_rows, explicit_executors, indexed_plan, lazy_rows, plan_column, task_rows
from flowgit.core.model import Plan
from flowgit.errors import InvalidFile
from flowgit.store.cache import DerivedCache
from flowgit.store.planpin import LoadedPlan, PlanSource

MIN_CHARS = 200_000  # a plan this big is first tried by formats/planrows.py (below it, compiling its
# pattern costs more than it saves)


def load(cache: DerivedCache, plan_id: str, path: Path, src: PlanSource) -> LoadedPlan:
    """The plan `plan_id` from `src` (the work tree's file, or the version execution follows),
    checked once per content. Raises InvalidFile (with the line `validate` gives) for a broken
    plan. The index's head (`<plan>`: the plan without its tasks) is small; its tasks' rows
    (`<plan>@rows`) are read when a command first needs a task."""
    entry = cache.entry(plan_id)
    index = entry.get("plan")
    if not isinstance(index, dict):
        index = {}
    if index.get("stat") == src.key:
        hit = _from_index(cache, plan_id, index, path, src)
        if hit is not None:
            return hit
    data = src.read()
    import hashlib  # only when the bytes changed (start-up: no OpenSSL on a warm command)

    digest = hashlib.sha256(data).hexdigest()
    if index.get("hash") == digest:
        hit = _from_index(cache, plan_id, index, path, src)
        if hit is not None:
            index["stat"] = src.key
            cache.changed(plan_id)
            return hit
    plan, raw = _parse(plan_id, data, src)
    remember(cache, plan, raw, digest, src.key)
    if isinstance(raw, Parsed):  # read into rows: the mapping is built if an edit asks for it
        return LoadedPlan(plan, path, digest, display=src.display, where=src.where, _read=src.read,
                          _parsed=raw.build)
    return LoadedPlan(plan, path, digest, raw, display=src.display, where=src.where, _read=src.read)


class Parsed:
    """What a plan read into rows (formats/planrows.py) was parsed to: its keys but the tasks,
    and the whole mapping, built on demand."""

    def __init__(self, head: dict[str, Any], build: Callable[[], Mapping[str, Any]]) -> None:
        self.head, self.build = head, build


def remember(cache: DerivedCache, plan: Plan, raw: Mapping[str, Any] | Parsed, digest: str, key: Any) -> None:
    """The index of a checked plan: its head and its tasks' rows, by the digest of its bytes."""
    rows = lazy_rows(plan)
    if rows is None:
        rows = task_rows(plan.tasks)
    named = explicit_executors(plan)  # a plan read into rows: none
    if named is None:
        named = {i: e for i, e in zip(plan_column(plan, "id"), plan_column(plan, "executor")) if e is not None}
    head = raw.head if isinstance(raw, Parsed) else {k: v for k, v in raw.items() if k != "tasks"}
    cache.entry(plan.id)["plan"] = {
        "stat": key, "hash": digest, "checked": True, "data": head,
        "external": plan.has_external_deps, "executors": named}
    cache.changed(plan.id)
    kept = cache.entry(f"{plan.id}@rows")
    kept.clear()
    kept.update({"hash": digest, "rows": rows})
    cache.changed(f"{plan.id}@rows")


def _parse(plan_id: str, data: bytes, src: PlanSource) -> tuple[Plan, Mapping[str, Any] | Parsed]:
    from flowgit.formats import yamlio

    display = src.display
    text = yamlio.decode(data, display)
    fast = _read_rows(plan_id, text, display) if len(text) >= MIN_CHARS else None
    if fast is not None:
        return fast
    raw = yamlio.loads(text, display)
    try:
        plan = Plan.from_dict(raw, display)
    except InvalidFile as exc:
        raise with_line(exc, raw, src.read, display) from None
    if plan.id != plan_id:
        raise InvalidFile(f"{display}: id {plan.id!r} does not match its directory {plan_id!r}: make them equal")
    return plan, raw


def _read_rows(plan_id: str, text: str, display: str) -> tuple[Plan, Parsed] | None:
    """A big plan whose task list `planrows` reads (plain fields, one layout): its rows,
    without a dict or a `Task` per task (issue 17); None for anything else, or for anything
    the full path would refuse (it then says what)."""
    from flowgit.formats import planrows, yamlio

    read = planrows.read(text, yamlio.read_scalar)
    if read is None:
        return None
    try:
        head = Plan.from_dict(read.head, display)
    except InvalidFile:
        return None
    if head.id != plan_id or head.checkpoints and \
            len({i.lower() for i in (*read.ids, *(c.id for c in head.checkpoints))}) != len(read.ids) + len(head.checkpoints):
        return None
    rows = read.rows
    plan = indexed_plan(head, lambda: rows, {})
    plan.__dict__["_rows"] = rows
    local = {*read.ids, *(c.id for c in head.checkpoints)}  # IndexedPlan.has_external_deps, known
    plan.__dict__["has_external_deps"] = bool(read.needs - local) or \
        any(a not in local for c in head.checkpoints for a in c.after)
    return plan, Parsed(read.head, read.raw)


def _from_index(cache: DerivedCache, plan_id: str, entry: Mapping[str, Any], path: Path,
                src: PlanSource) -> LoadedPlan | None:
    """The plan an index entry holds, or None when it is not one this version wrote."""
    head, digest, executors = entry.get("data"), entry.get("hash"), entry.get("executors")
    if not entry.get("checked") or not isinstance(head, dict) or not isinstance(digest, str) \
            or not isinstance(entry.get("external"), bool) or not isinstance(executors, dict):
        return None
    try:
        plan = indexed_plan(Plan.from_dict(head, src.display, trusted=True, task_values=()),
                            lambda: _rows(cache, plan_id, digest, src), executors)
    except (InvalidFile, KeyError, TypeError, ValueError, AttributeError):
        return None
    plan.__dict__["has_external_deps"] = entry["external"]  # the cached_property, known
    plan.__dict__["_one"] = lambda task_id: _one(cache, plan_id, digest, src, task_id)
    return LoadedPlan(plan, path, digest, display=src.display, where=src.where, _read=src.read)


def _rows(cache: DerivedCache, plan_id: str, digest: str, src: PlanSource) -> list[tuple[Any, ...]]:
    """The tasks' rows of the version of digest `digest`: from the index, or (it went
    missing) from the bytes again, which must still be that version."""
    entry = cache.entry(f"{plan_id}@rows")
    rows = check_rows(entry.get("rows")) if entry.get("hash") == digest else None
    if rows is not None:
        return rows
    data = src.read()
    import hashlib

    if hashlib.sha256(data).hexdigest() != digest:
        raise InvalidFile(f"{src.display} changed while flowgit read it: run the command again")
    plan, raw = _parse(plan_id, data, src)
    remember(cache, plan, raw, digest, src.key)
    return task_rows(plan.tasks)


BUCKETS = 64  # a transition on one task reads the task's bucket of rows, not all of them


def _bucket(task_id: str) -> int:
    import zlib

    return zlib.crc32(task_id.encode("utf-8")) % BUCKETS


def _one(cache: DerivedCache, plan_id: str, digest: str, src: PlanSource,
         task_id: str) -> tuple[bool, tuple[Any, ...] | None] | None:
    """The row of task `task_id` of the version of digest `digest` (False, None: no such
    task), from its bucket (`<plan>@task<N>`, written from the rows the first time); None
    when the buckets cannot say (the caller reads all the rows)."""
    entry = cache.entry(f"{plan_id}@task{_bucket(task_id)}")
    if entry.get("hash") != digest:
        rows = _rows(cache, plan_id, digest, src)
        buckets: list[dict[str, tuple[Any, ...]]] = [{} for _ in range(BUCKETS)]
        for row in rows:
            buckets[_bucket(row[0])][row[0]] = row
        for n, bucket in enumerate(buckets):
            kept = cache.entry(f"{plan_id}@task{n}")
            kept.clear()
            kept.update({"hash": digest, "rows": bucket})
            cache.changed(f"{plan_id}@task{n}")
    rows_by_id = entry.get("rows")
    if entry.get("hash") != digest or not isinstance(rows_by_id, dict):
        return None
    found = rows_by_id.get(task_id)
    if found is None:
        return False, None
    return (True, found) if check_rows([found]) is not None and found[0] == task_id else None


def with_line(exc: InvalidFile, raw: Any, path: Path | Callable[[], bytes], display: str,
              kind: str = "plan") -> InvalidFile:
    """The schema checker's message for a broken plan or config, with the line `validate`
    gives (only on this error path: it imports jsonschema)."""
    from flowgit.formats.schemacheck import schema_errors

    try:
        text = path.read_text(encoding="utf-8") if isinstance(path, Path) else path().decode("utf-8")
        errors = schema_errors(kind, raw, text, display)
    except (OSError, ValueError):
        errors = []
    return InvalidFile(errors[0]) if errors else exc
