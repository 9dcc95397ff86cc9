"""Tasks of plain fields built without a message per field (issue 17): most tasks of a big
plan have only text and lists of text, and `Task.from_dict` spent most of its time writing
the `where` of each check that then passed."""
from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

from flowgit.ids import id_problem

_T = TypeVar("_T")
PLAIN_KEYS = frozenset({"id", "title", "description", "depends_on", "priority", "estimate",
                        "acceptance", "tags", "adrs"})
_LISTS = ("depends_on", "acceptance", "tags", "adrs")
_PRIORITIES = ("high", "medium", "low")  # core/model.PRIORITIES (a test keeps them equal)


def plain_values(data: Any) -> dict[str, Any] | None:
    """The fields `Task.from_dict` gives a task of `data` when it has only text fields and
    lists of text that pass every check; None otherwise (then `Task.from_dict` decides, and
    its errors are the only ones)."""
    if type(data) is not dict or not data.keys() <= PLAIN_KEYS:
        return None
    task_id, title = data.get("id"), data.get("title")
    if type(title) is not str or type(task_id) is not str or id_problem(task_id) is not None:
        return None
    values = dict(data)
    priority = values.setdefault("priority", "medium")
    description = values.get("description")
    estimate = values.get("estimate")
    if type(priority) is not str or priority not in _PRIORITIES or \
            (description is not None and type(description) is not str) or \
            (estimate is not None and type(estimate) is not str):
        return None
    values["description"] = description or ""
    for key in _LISTS:
        if key in values:
            items = values[key]
            if items is None:
                values[key] = ()
            elif type(items) is not list or not all(type(x) is str for x in items):
                return None
            else:
                values[key] = tuple(items)
    return values


def build_tasks(raw: Sequence[Any], where: str, full: Callable[[Any, str], _T],
                plain: Callable[[dict[str, Any]], _T]) -> tuple[_T, ...]:
    """Each task of `raw`: `plain` from the values `plain_values` finds, else `full` (the
    checked build, `Task.from_dict`) with its `where`."""
    out = []
    for i, data in enumerate(raw):
        values = plain_values(data)
        out.append(full(data, f"{where}: tasks[{i}]") if values is None else plain(values))
    return tuple(out)
