"""The plan index (issue 17, ADR 0012): a checked plan kept in the derived cache by the hash
of its bytes, as tuples (core/index.py), so an unchanged plan is never parsed or checked
again, and its tasks are built only when asked for. The file's stats say whether its bytes
need hashing at all; the same bytes at another inode or time (a checkout, a copy, the
approved plan's blob) are still found by their hash."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from flowgit.core.index import indexed_plan, task_rows
from flowgit.core.model import Plan
from flowgit.errors import InvalidFile
from flowgit.store.cache import DerivedCache
from flowgit.store.planpin import LoadedPlan, PlanSource


def load(cache: DerivedCache, plan_id: str, path: Path, src: PlanSource) -> LoadedPlan:
    """The plan `plan_id` from `src` (the work tree's file, or the version execution follows),
    checked once per content. Raises InvalidFile (with the line `validate` gives) for a broken
    plan."""
    entry = cache.entry(plan_id)
    index = entry.get("plan")
    if not isinstance(index, dict):
        index = {}
    if index.get("stat") == src.key:
        hit = _from_index(index, path, src)
        if hit is not None:
            return hit
    data = src.read()
    import hashlib  # only when the bytes changed (start-up: no OpenSSL on a warm command)

    digest = hashlib.sha256(data).hexdigest()
    if index.get("hash") == digest:
        hit = _from_index(index, path, src)
        if hit is not None:
            index["stat"] = src.key
            cache.changed(plan_id)
            return hit
    from flowgit.formats import yamlio

    display = src.display
    raw = yamlio.loads(yamlio.decode(data, display), display)
    try:
        plan = Plan.from_dict(raw, display)
    except InvalidFile as exc:
        raise with_line(exc, raw, src.read, display) from None
    if plan.id != plan_id:
        raise InvalidFile(f"{display}: id {plan.id!r} does not match its directory {plan_id!r}: make them equal")
    # checked: the tasks as built, not as written (the rest of the file is small)
    entry["plan"] = {"stat": src.key, "hash": digest, "checked": True,
                     "data": {k: v for k, v in raw.items() if k != "tasks"},
                     "rows": task_rows(plan.tasks), "external": plan.has_external_deps}
    cache.changed(plan_id)
    return LoadedPlan(plan, path, digest, raw, display=display, where=src.where, _read=src.read)


def _from_index(entry: Mapping[str, Any], path: Path, src: PlanSource) -> LoadedPlan | None:
    """The plan an index entry holds, or None when it is not one this version wrote."""
    head, digest, rows = entry.get("data"), entry.get("hash"), entry.get("rows")
    if not entry.get("checked") or not isinstance(head, dict) or not isinstance(digest, str) \
            or not isinstance(rows, list) or not isinstance(entry.get("external"), bool):
        return None
    try:
        plan = indexed_plan(Plan.from_dict(head, src.display, trusted=True, task_values=()), rows)
    except (InvalidFile, KeyError, TypeError, ValueError, AttributeError):
        return None
    if plan is None:
        return None
    plan.__dict__["has_external_deps"] = entry["external"]  # the cached_property, known
    return LoadedPlan(plan, path, digest, display=src.display, where=src.where, _read=src.read)


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
