"""What the fold gives: a task's record (independent of the clock), and a plan's state at a
time (each task's view, the checkpoints, the phase). Pure data; `fold.py` computes it.

A plan's task views are held as compact rows and built when asked for (`Views`): a command
that needs one task of 50,000, or only the ready ones, builds those (ADR 0012)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from flowgit.core.model import trusted_instance

TASK_STATES = ("pending", "ready", "claimed", "in_progress", "retry_wait", "done", "failed",
               "skipped", "blocked", "review")
ACTIVE = ("claimed", "in_progress")
FINISHED = ("done", "skipped")


@dataclass(frozen=True)
class TaskRecord:
    """What one task's log says, independent of the time it is read."""

    status: str = "open"  # open claimed in_progress retry_wait done failed skipped review
    worker: str | None = None
    lease_until: float | None = None
    attempts: int = 0
    failures: int = 0
    retry_at: float | None = None
    last_error: str | None = None
    note: str | None = None
    files_modified: tuple[str, ...] = ()
    skip_dependents: bool = False
    wait_ok: bool = False
    wait_next_at: float | None = None
    wait_checks: int = 0
    events: int = 0
    last_clock: int = 0
    log_path: str | None = None
    # "path:line" of a line the checker refused, or "path" of a log that is a symlink (never
    # followed): the task is held
    unreadable: str | None = None
    code: str | None = None  # format 2: the code commit its `done` names (ADR 0011)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "unreadable"}
        out["files_modified"] = list(self.files_modified)
        if out["code"] is None:
            del out["code"]  # format 1 snapshots stay as older releases read them
        return out

    def to_row(self) -> tuple[Any, ...]:
        """The record for the marshal cache: its fields in order (core/index.py)."""
        d = self.__dict__
        return tuple([d[n] for n in RECORD_FIELDS])

    @classmethod
    def from_row(cls, row: Any) -> TaskRecord | None:
        """The record `to_row` gave, or None for a row of another shape (read the log again)."""
        if type(row) is not tuple or len(row) != len(RECORD_FIELDS):
            return None
        obj = object.__new__(cls)
        obj.__dict__.update(zip(RECORD_FIELDS, row))
        return obj

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "unreadable"}
        known["files_modified"] = tuple(known.get("files_modified") or ())
        return cls(**known)


RECORD_FIELDS = tuple(TaskRecord.__dataclass_fields__)


@dataclass(frozen=True)
class TaskView:
    """One task at the time of the fold."""

    id: str
    state: str
    worker: str | None = None
    attempts: int = 0
    lease_until: float | None = None
    retry_at: float | None = None
    interrupted: bool = False
    waiting_on: tuple[str, ...] = ()
    blocked_by: tuple[str, ...] = ()
    record: TaskRecord = field(default_factory=TaskRecord)
    held: str | None = None  # "path:line" of an unreadable event that holds the task (blocked)



class Records(Mapping[str, TaskRecord]):
    """A plan's task records as the cache holds them (rows, `TaskRecord.to_row`), each built
    when first read; `fresh` are records just folded from their logs."""

    __slots__ = ("rows", "fresh", "_keys")

    def __init__(self, rows: Mapping[str, tuple[Any, ...]], fresh: dict[str, TaskRecord]) -> None:
        self.rows = rows
        self.fresh = fresh
        self._keys: tuple[str, ...] | None = None

    def __getitem__(self, key: str) -> TaskRecord:
        rec = self.fresh.get(key)
        if rec is None:
            rec = TaskRecord.from_row(self.rows[key])
            assert rec is not None  # rows are checked when the cache is read
            self.fresh[key] = rec
        return rec

    def get(self, key: str, default: Any = None) -> Any:  # no KeyError raised per missing log
        rec = self.fresh.get(key)
        if rec is not None:
            return rec
        if key not in self.rows:
            return default
        return self[key]

    def __contains__(self, key: object) -> bool:
        return key in self.fresh or key in self.rows

    def __iter__(self) -> Iterator[str]:
        if self._keys is None:
            self._keys = tuple(dict.fromkeys([*self.rows, *self.fresh]))
        return iter(self._keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def done_codes(self) -> dict[str, str]:
        """Task -> the code commit its `done` names, for the done tasks that name one."""
        status, code = RECORD_FIELDS.index("status"), RECORD_FIELDS.index("code")
        out = {t: r[code] for t, r in self.rows.items()
               if t not in self.fresh and r[status] == "done" and r[code]}
        out.update((t, r.code) for t, r in self.fresh.items() if r.status == "done" and r.code)
        return out


def done_codes(records: Mapping[str, TaskRecord]) -> dict[str, str]:
    if isinstance(records, Records):
        return records.done_codes()
    return {task: rec.code for task, rec in records.items() if rec.status == "done" and rec.code}

VIEW_FIELDS = ("state", "worker", "attempts", "lease_until", "retry_at", "interrupted", "waiting_on",
               "blocked_by", "held")
# a task's row: the view's fields in this order, then whether a skip spreads past it
ROW_WIDTH = len(VIEW_FIELDS) + 1
_COLUMN = {name: i for i, name in enumerate(VIEW_FIELDS)}
_EMPTY = TaskRecord()


class Views(Mapping[str, TaskView]):
    """A plan's task views, in plan order, held as rows and each built when first read."""

    __slots__ = ("ids", "rows", "records", "cp_rows", "_built", "_columns")

    def __init__(self, ids: tuple[str, ...], rows: Mapping[str, tuple[Any, ...]],
                 records: Mapping[str, TaskRecord],
                 cp_rows: Mapping[str, tuple[Any, ...]] | None = None) -> None:
        self.ids = ids
        self.rows = rows
        self.records = records
        self.cp_rows = cp_rows or {}  # the checkpoints' rows, for the evaluation cache
        self._built: dict[str, TaskView] = {}
        self._columns: dict[str, list[Any]] = {}

    def __getitem__(self, key: str) -> TaskView:
        view = self._built.get(key)
        if view is None:
            row = self.rows[key]
            values = dict(zip(VIEW_FIELDS, row))
            values["id"] = key
            values["record"] = self.records.get(key, _EMPTY)
            view = self._built[key] = trusted_instance(TaskView, values)
        return view

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def column(self, name: str) -> list[Any]:
        """One field of every view, in plan order, without building the views."""
        got = self._columns.get(name)
        if got is None:
            i = _COLUMN[name]
            rows = self.rows
            got = self._columns[name] = [rows[t][i] for t in self.ids]
        return got


def ids_in(tasks: Mapping[str, TaskView], states: tuple[str, ...]) -> list[str]:
    """The tasks in one of `states`, in plan order, without building the views."""
    if isinstance(tasks, Views):
        key = "ids_in:" + ",".join(states)
        got = tasks._columns.get(key)
        if got is None:
            got = tasks._columns[key] = [t for t, s in zip(tasks.ids, tasks.column("state")) if s in states]
        return got
    return [t for t, v in tasks.items() if v.state in states]


def column(tasks: Mapping[str, TaskView], name: str) -> list[Any]:
    if isinstance(tasks, Views):
        return tasks.column(name)
    return [getattr(v, name) for v in tasks.values()]


@dataclass(frozen=True)
class CheckpointView:
    """One checkpoint at the time of the fold."""

    id: str
    state: str  # pending reached approved blocked
    waiting_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Approval:
    """A reviewer's approval of one version of the plan."""

    reviewer: str
    comment: str
    plan_hash: str
    at: str


@dataclass(frozen=True)
class PhaseInfo:
    """What the plan log says of the phase."""

    phase: str = "draft"
    base_commit: str | None = None
    approvals: tuple[Approval, ...] = ()
    accepted_hash: str | None = None  # the plan content last approved or amended by a reviewer
    halted_from: str | None = None
    failed_tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanState:
    """A plan folded at one time: its phase, tasks, checkpoints and ready order."""

    plan: str
    phase: str
    tasks: Mapping[str, TaskView]
    checkpoints: Mapping[str, CheckpointView]
    approvals: tuple[Approval, ...]
    base_commit: str | None
    order: tuple[str, ...]  # ready tasks, best first
    info: PhaseInfo = PhaseInfo()
    external: Mapping[str, str] = field(default_factory=dict)  # other plans' tasks waited on
    held: str | None = None  # "path:line" of an unreadable line in the plan log: nothing moves

    @property
    def unreadable(self) -> list[str]:
        """Where unreadable lines hold this plan or its tasks."""
        out = [self.held] if self.held else []
        return out + [h for h in column(self.tasks, "held") if h and h != self.held]

    @property
    def unknown_refs(self) -> list[str]:
        """Dependencies that name no plan or task (yet): waited on, and shown."""
        return sorted(ref for ref, state in self.external.items() if state == "unknown")

    @property
    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in TASK_STATES}
        for state in column(self.tasks, "state"):
            counts[state] += 1
        return counts

    @property
    def progress(self) -> int:
        total = len(self.tasks)
        if not total:
            return 100 if self.phase == "complete" else 0
        finished = sum(1 for s in column(self.tasks, "state") if s in FINISHED)
        return int(100 * finished / total)

    @property
    def ready(self) -> list[str]:
        return list(self.order)

    @property
    def interrupted(self) -> list[str]:
        return sorted(t for t, i in zip(self.tasks, column(self.tasks, "interrupted")) if i)

    @property
    def all_finished(self) -> bool:
        return all(s in FINISHED for s in column(self.tasks, "state"))

    @property
    def stalled(self) -> bool:
        """Work is left but nothing can move: nothing ready, running, waiting or in review.
        A plan held by an unreadable line is not stalled: it waits for the line to be fixed."""
        if self.phase not in ("execute", "checkpoint") or self.all_finished or self.unreadable:
            return False
        live = ("ready", "claimed", "in_progress", "retry_wait", "review")
        states = column(self.tasks, "state")
        if any(s in live or w for s, w in zip(states, column(self.tasks, "waiting_on"))):
            return False
        return not any(c.state == "reached" for c in self.checkpoints.values())

    def stall_chains(self) -> list[list[str]]:
        """For each unfinished task with no unfinished blocker behind it, the chain to its cause."""
        chains = []
        for view in self.tasks.values():
            if view.state not in ("blocked", "pending") or not view.blocked_by:
                continue
            chain = [view.id]
            seen = {view.id}
            cur = view
            while cur.blocked_by:
                nxt = cur.blocked_by[0]
                if nxt in seen:
                    break
                chain.append(nxt)
                seen.add(nxt)
                if nxt not in self.tasks:
                    break
                cur = self.tasks[nxt]
            chains.append(chain)
        roots = {c[-1] for c in chains}
        best: dict[str, list[str]] = {}
        for chain in chains:
            if chain[-1] in roots and len(chain) > len(best.get(chain[-1], [])):
                best[chain[-1]] = chain
        return [best[k] for k in sorted(best)]


