"""Compact rows of checked records, for the derived cache (issue 17, ADR 0012).

A plan of 50,000 tasks is kept as one tuple per task in the field order of `Task`, and a
folded log as one tuple in the field order of `TaskRecord`: marshal loads tuples faster than
dicts, the file is smaller, and a record is rebuilt by filling its `__dict__` without the
per-field `object.__setattr__` of a frozen dataclass's `__init__`. Only rows built here from
records that passed their checks are stored, and rows of another shape are refused (the
caller reads the file again)."""
from __future__ import annotations

from dataclasses import fields
from functools import cached_property
from typing import Any, Callable, Sequence

from flowgit.core.model import Plan, Task

TASK_FIELDS = tuple(f.name for f in fields(Task))


def task_rows(tasks: Sequence[Task]) -> list[tuple[Any, ...]]:
    names = TASK_FIELDS
    return [tuple([t.__dict__[n] for n in names]) for t in tasks]


def tasks_from_rows(rows: Any) -> tuple[Task, ...] | None:
    """The tasks the rows hold, or None when they are not rows this version wrote."""
    if not isinstance(rows, list):
        return None
    names = TASK_FIELDS
    width = len(names)
    new = object.__new__
    out = []
    for row in rows:
        if type(row) is not tuple or len(row) != width or type(row[0]) is not str:
            return None
        task = new(Task)
        task.__dict__.update(zip(names, row))
        out.append(task)
    return tuple(out)


class IndexedPlan(Plan):
    """A checked plan read from the index whose tasks are built when first asked for: a
    transition on one task of 50,000 builds that one (`task`), `status` builds them all
    (`tasks`, `_index`). Its rows themselves are read when first needed (`_source`). Equal
    to, and used as, the `Plan` it stands for."""

    @cached_property
    def tasks(self) -> tuple[Task, ...]:
        built = tasks_from_rows(rows_of(self))
        assert built is not None  # checked when the rows were read
        return built

    def task(self, task_id: str) -> Task | None:
        if "tasks" in self.__dict__:
            return super().task(task_id)
        built: dict[str, Task] = self.__dict__.setdefault("_built", {})
        task = built.get(task_id)
        if task is None:
            by_id = self.__dict__.get("_by_id")
            one = self.__dict__.get("_one") if by_id is None and "_rows" not in self.__dict__ else None
            found = one(task_id) if one is not None else None  # one task's row, not all 50,000
            if found is not None:
                row = found[1]
            elif by_id is None and "_scanned" not in self.__dict__:  # the first task asked: a
                # scan, newest first, is a third of building the map (an edit asks for the task
                # it wrote); any later one builds it
                self.__dict__["_scanned"] = True
                row = next((r for r in reversed(rows_of(self)) if r[0] == task_id), None)
            else:
                if by_id is None:
                    by_id = self.__dict__["_by_id"] = {row[0]: row for row in rows_of(self)}
                row = by_id.get(task_id)
            if row is None:
                return None
            task = built[task_id] = object.__new__(Task)
            task.__dict__.update(zip(TASK_FIELDS, row))
        return task

    @cached_property
    def has_external_deps(self) -> bool:
        ids, deps = plan_columns(self)
        local = {*ids, *(c.id for c in self.checkpoints)}
        return any(d not in local for ds in deps for d in ds) or \
            any(a not in local for c in self.checkpoints for a in c.after)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(Plan))

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f.name) for f in fields(Plan)))


def rows_of(plan: Plan) -> list[tuple[Any, ...]]:
    """The rows of a plan read from the index (read from their source the first time)."""
    d = plan.__dict__
    rows = d.get("_rows")
    if rows is None:
        rows = d["_rows"] = d["_source"]()
    return rows  # type: ignore[no-any-return]


def _lazy(plan: Plan) -> bool:
    return "tasks" not in plan.__dict__ and "_source" in plan.__dict__


def lazy_rows(plan: Plan) -> list[tuple[Any, ...]] | None:
    """The rows of a plan read from the index whose tasks are not built yet, else None."""
    return rows_of(plan) if _lazy(plan) else None


_CHECKED: list[Any] = []  # the last list of rows found sound (a held reference: its id stays its own)


def check_rows(rows: Any) -> list[tuple[Any, ...]] | None:
    """`rows` when they are rows this version wrote, else None. The list last found sound is
    not walked again (an edit reads one version's rows two or three times: 12 ms a walk at
    50,000 tasks); lists of rows are never changed in place once read."""
    if not isinstance(rows, list):
        return None
    if _CHECKED and _CHECKED[0] is rows and _CHECKED[1] == len(rows):
        return rows  # type: ignore[no-any-return]
    width = len(TASK_FIELDS)
    for row in rows:
        if type(row) is not tuple or len(row) != width or type(row[0]) is not str:
            return None
    _CHECKED[:] = [rows, len(rows)]
    return rows


_DEPS = TASK_FIELDS.index("depends_on")


def plan_columns(plan: Plan) -> tuple[list[str], list[tuple[str, ...]]]:
    """The ids of a plan's tasks in order, and their dependencies, without building the
    tasks of a plan read from the index."""
    if _lazy(plan):
        rows = rows_of(plan)
        return [r[0] for r in rows], [r[_DEPS] for r in rows]
    return [t.id for t in plan.tasks], [t.depends_on for t in plan.tasks]


def plan_column(plan: Plan, name: str) -> list[Any]:
    """One field of every task, in plan order, without building the tasks of a plan read
    from the index."""
    if _lazy(plan):
        i = TASK_FIELDS.index(name)
        return [r[i] for r in rows_of(plan)]
    return [getattr(t, name) for t in plan.tasks]


def explicit_executors(plan: Plan) -> dict[str, str] | None:
    """The tasks that name their executor, when the index knows it without reading rows."""
    known = plan.__dict__.get("_executors") if _lazy(plan) else None
    return known if isinstance(known, dict) else None


def indexed_plan(head: Plan, source: Callable[[], list[tuple[Any, ...]]],
                 executors: dict[str, str] | None = None) -> Plan:
    """`head` (a plan built without its tasks) whose tasks are the rows `source` gives
    (called when they are first needed), built lazily."""
    plan = object.__new__(IndexedPlan)
    values = dict(head.__dict__)
    values.pop("tasks", None)
    values.pop("_index", None)
    plan.__dict__.update(values)
    plan.__dict__["_source"] = source
    if executors is not None:
        plan.__dict__["_executors"] = executors
    return plan
