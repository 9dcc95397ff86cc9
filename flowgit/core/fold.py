"""The fold: state is a pure function of (definition, events, now). Nothing here does I/O.

Two steps keep it cheap: `reduce_task` turns one task's log into a `TaskRecord` that does not
depend on the clock (so it can be cached per file), and `evaluate` applies the definition and
`now` (lease expiry, due retries, dependencies, checkpoints, phase).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from operator import attrgetter, itemgetter
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping, Sequence

from flowgit.core.events import Event, LogRead, canonical, event_time
from flowgit.core.index import plan_columns
from flowgit.core.model import PRIORITY_RANK, Plan
from flowgit.core.planstate import ACTIVE as ACTIVE
from flowgit.core.planstate import FINISHED as FINISHED
from flowgit.core.planstate import RECORD_FIELDS, Records
from flowgit.core.planstate import TASK_STATES as TASK_STATES
from flowgit.core.planstate import Approval as Approval
from flowgit.core.planstate import CheckpointView as CheckpointView
from flowgit.core.planstate import PhaseInfo as PhaseInfo
from flowgit.core.planstate import PlanState as PlanState
from flowgit.core.planstate import TaskRecord as TaskRecord
from flowgit.core.planstate import TaskView as TaskView
from flowgit.core.planstate import Views


def _holds(rec: TaskRecord, actor: str) -> bool:
    return rec.status in ACTIVE and rec.worker == actor


def _lease_live(rec: TaskRecord, at: float) -> bool:
    return rec.status in ACTIVE and rec.lease_until is not None and rec.lease_until > at


class _Fold:
    """The mutable accumulator of one task's fold (one TaskRecord is built at the end)."""

    __slots__ = RECORD_FIELDS

    # the same fields as TaskRecord (declared for the type checker; __slots__ holds them)
    status: str
    worker: str | None
    lease_until: float | None
    attempts: int
    failures: int
    retry_at: float | None
    last_error: str | None
    note: str | None
    files_modified: tuple[str, ...]
    skip_dependents: bool
    wait_ok: bool
    wait_next_at: float | None
    wait_checks: int
    events: int
    last_clock: int
    log_path: str | None
    unreadable: str | None
    code: str | None

    def __init__(self, rec: TaskRecord) -> None:
        for name in RECORD_FIELDS:
            setattr(self, name, getattr(rec, name))

    def record(self) -> TaskRecord:
        rec = object.__new__(TaskRecord)  # the fields are a record's: no frozen __init__
        rec.__dict__.update(zip(RECORD_FIELDS, [getattr(self, name) for name in RECORD_FIELDS]))
        return rec

    def holds(self, actor: str) -> bool:
        return self.status in ACTIVE and self.worker == actor

    def lease_live(self, at: float) -> bool:
        return self.status in ACTIVE and self.lease_until is not None and self.lease_until > at


def _step(f: _Fold, ev: Event) -> None:
    """One event's effect. An event that was not legal where it falls in the order is ignored,
    so merged logs from two machines fold the same way: the first legal claim wins."""
    f.events += 1
    if ev.clock > f.last_clock:
        f.last_clock = ev.clock
    d = ev.data
    t = ev.type
    if t == "task.snapshot":
        snap = TaskRecord.from_dict(d.get("state") or {})
        last = f.last_clock
        _Fold.__init__(f, snap)
        f.last_clock = max(snap.last_clock, last)
    elif t == "task.claimed":
        if f.status in ("done", "skipped", "failed", "review"):
            return
        at = ev.timestamp
        live = f.lease_live(at)
        if live and f.worker != ev.actor:
            return
        if not (live and f.holds(ev.actor)):
            f.attempts += 1
        f.status, f.worker, f.lease_until, f.retry_at = "claimed", ev.actor, _f(d.get("lease_until")), None
    elif t in ("task.started", "task.heartbeat"):
        if f.holds(ev.actor):
            if t == "task.started":
                f.status = "in_progress"
            f.lease_until = _f(d.get("lease_until")) or f.lease_until
    elif t == "task.review":  # `run --land branch`: the work waits on its branch for a review
        if f.holds(ev.actor):
            f.status, f.worker, f.lease_until = "review", None, None
            f.note = d.get("note") or f.note
    elif t == "task.done":
        if f.holds(ev.actor) or f.status == "review":  # reviewed: its branch reached the base
            f.status, f.lease_until = "done", None
            f.note = d.get("note") or f.note
            f.code = d.get("code") if isinstance(d.get("code"), str) else None
            f.files_modified = tuple(d.get("files_modified") or ())
    elif t == "task.failed":
        if f.holds(ev.actor):
            retry_at = _f(d.get("retry_at"))
            f.status = "retry_wait" if retry_at is not None else "failed"
            f.lease_until, f.retry_at, f.last_error = None, retry_at, d.get("error")
            f.failures += 1
    elif t == "task.skipped":
        if f.status != "done":
            f.status, f.lease_until = "skipped", None
            f.skip_dependents = bool(d.get("dependents"))
            f.note = d.get("reason") or f.note
    elif t == "task.released":
        if f.holds(ev.actor):
            f.status, f.worker, f.lease_until = "open", None, None
    elif t == "task.retried":
        if f.status == "failed":  # a fresh attempt budget: the retry policy counts failures
            f.status, f.worker, f.lease_until, f.retry_at, f.failures = "open", None, None, None, 0
    elif t == "task.note":
        f.note = d.get("text") or f.note
    elif t == "task.log":
        f.log_path = d.get("path") or f.log_path
    elif t == "task.wait":
        f.wait_ok, f.wait_next_at = bool(d.get("ok")), _f(d.get("next_at"))
        f.wait_checks += 1


def apply(rec: TaskRecord, ev: Event) -> TaskRecord:
    """One event applied to a record (see `_step`)."""
    f = _Fold(rec)
    _step(f, ev)
    return f.record()


def _f(value: Any) -> float | None:
    """A time field as seconds. The checker refused lines with a bad one; should one get here
    anyway, it reads as absent rather than stopping the fold."""
    if value is None:
        return None
    try:
        return event_time(value)
    except ValueError:
        return None


_OPEN = TaskRecord()


def reduce_task(events: Iterable[Event]) -> TaskRecord:
    f = _Fold(_OPEN)
    for ev in canonical(events):
        _step(f, ev)
    return f.record()


def fold_log(read: LogRead) -> TaskRecord:
    """A task's log folded; a line the checker refused holds the task (`unreadable`) instead
    of being skipped, since a skipped claim could hand the task to a second worker."""
    record = reduce_task(read.events)
    return replace(record, unreadable=read.unreadable) if read.bad else record


def phase_of(plan_events: Sequence[Event]) -> PhaseInfo:
    """Phase, base commit recorded on entering execute, and approvals of the current review."""
    info = PhaseInfo()
    approvals: list[Approval] = []
    failed: list[str] = []
    for ev in canonical(plan_events):
        d = ev.data
        if ev.type == "plan.snapshot":
            snap = d.get("state") or {}
            approvals = []
            for a in snap.get("approvals", []):
                if isinstance(a, Mapping):  # one per reviewer, as the events give them: a listed twice is one
                    approvals = [x for x in approvals if x.reviewer != str(a.get("reviewer", ""))]
                    approvals.append(Approval(str(a.get("reviewer", "")), str(a.get("comment", "")),
                                              str(a.get("plan_hash", "")), str(a.get("at", ""))))
            failed = list(snap.get("failed_tasks", []))
            info = replace(info, phase=snap.get("phase", info.phase),
                           base_commit=snap.get("base_commit", info.base_commit),
                           accepted_hash=snap.get("accepted_hash", info.accepted_hash),
                           halted_from=snap.get("halted_from", info.halted_from))
        elif ev.type == "plan.phase":
            to = d.get("to", info.phase)
            if to == "draft":
                approvals = []
            halted_from = info.phase if to == "halted" else None
            base = d.get("base_commit") if to == "execute" and d.get("base_commit") else info.base_commit
            if info.phase == "draft" and to == "execute" and d.get("plan_hash"):
                info = replace(info, accepted_hash=d["plan_hash"])
            info = replace(info, phase=to, base_commit=base, halted_from=halted_from)
        elif ev.type == "plan.approved":
            approvals = [a for a in approvals if a.reviewer != d.get("reviewer")]
            approvals.append(Approval(str(d.get("reviewer", ev.actor)), str(d.get("comment") or ""),
                                      str(d.get("plan_hash") or ""), ev.at))
            info = replace(info, accepted_hash=d.get("plan_hash") or info.accepted_hash)
        elif ev.type == "checkpoint.changes_requested" and d.get("plan_hash"):
            info = replace(info, accepted_hash=d["plan_hash"])
        elif ev.type == "plan.rejected":
            approvals = []
        elif ev.type == "plan.task_failed" and d.get("task"):
            failed.append(str(d["task"]))
    return replace(info, approvals=tuple(approvals), failed_tasks=tuple(dict.fromkeys(failed)))


def checkpoint_decisions(plan_events: Sequence[Event]) -> dict[str, str]:
    """Checkpoint id -> 'approved' or 'changes_requested', the latest decision."""
    out: dict[str, str] = {}
    for ev in canonical(plan_events):
        if ev.type == "plan.snapshot":
            out.update((ev.data.get("state") or {}).get("checkpoints", {}))
        elif ev.type == "checkpoint.approved":
            out[str(ev.data.get("checkpoint"))] = "approved"
        elif ev.type == "checkpoint.changes_requested":
            out[str(ev.data.get("checkpoint"))] = "changes_requested"
    return out


SATISFIED = ("done", "skipped", "approved", "complete")
BLOCKING = ("failed", "blocked")


@dataclass(frozen=True)
class Reuse:
    """The rows of an earlier evaluation of the same plan and plan log (store/evalcache.py):
    a node outside `dirty` none of whose dependencies changed keeps its row."""

    tasks: Mapping[str, tuple[Any, ...]]
    checkpoints: Mapping[str, tuple[Any, ...]]
    dirty: Collection[str]
    # each node's dependents (`dependents_of`) and the tasks' ids in plan order, when known:
    # then the plan's columns are not read, only the tasks evaluated again are
    dependents: Mapping[str, Sequence[str]] | None = None
    ids: Sequence[str] | None = None


def evaluate(
    plan: Plan,
    records: Mapping[str, TaskRecord],
    plan_events: Sequence[Event],
    now: float,
    external: Mapping[str, str] | None = None,
    rank: Mapping[str, float] | None = None,
    order: Sequence[str] | None = None,
    held: str | None = None,
    unreleased: frozenset[str] = frozenset(),
    reuse: Reuse | None = None,
) -> PlanState:
    """Task and checkpoint states at `now`.

    `external` maps references to other plans (`OTHER/TASK` or `OTHER`) to their state;
    `rank` maps task ids to their critical-path length (higher is claimed first); `held`
    says where an unreadable line of the plan log is: every unfinished task is then held;
    `unreleased`: tasks done in a code commit this clone does not have yet, whose dependents
    wait for it (ADR 0011); `reuse`: rows of an earlier evaluation whose inputs differ only
    in the records of `dirty` tasks (and the time, for tasks whose lease or retry fell due).
    """
    external = external or {}
    info = phase_of(plan_events)
    decisions = checkpoint_decisions(plan_events)
    cps = {c.id: c for c in plan.checkpoints}
    deps: Mapping[str, Sequence[str]]
    if reuse is not None and reuse.dependents is not None and reuse.ids is not None:
        ids: Sequence[str] = reuse.ids
        deps = _Deps(plan, cps, {*reuse.tasks, *reuse.checkpoints})
    else:
        ids, task_deps = plan_columns(plan)
        deps = dict(zip(ids, task_deps))
        deps.update({c.id: c.after for c in plan.checkpoints})
    node_state: dict[str, str] = {}
    skip_spread: set[str] = set()
    rows: dict[str, tuple[Any, ...]] = {}
    cp_rows: dict[str, tuple[Any, ...]] = {}
    if order is None:
        from flowgit.core.graph import topo_order

        order = topo_order({k: tuple(d for d in v if d in deps) for k, v in deps.items()})
    changed: set[str] = set()
    fields_of = _record_fields(records)
    todo: Iterable[str] = order
    if reuse is not None:  # start from the earlier rows; evaluate the dirty and what they move
        rows.update(reuse.tasks)
        cp_rows.update(reuse.checkpoints)
        for kept in (rows, cp_rows):
            node_state.update({node: row[0] for node, row in kept.items()})
            skip_spread.update([node for node, row in kept.items() if row[-1]])
        todo = _worklist(order, deps, reuse.dirty, changed, reuse.dependents)
    for node in todo:
        node_deps = deps[node]
        if skip_spread:
            skip_spread.discard(node)
        unmet: list[str] = []
        blockers: list[str] = []
        spread = False
        for dep in node_deps:
            state = node_state.get(dep) if dep in deps else external.get(dep, "unknown")
            if dep in unreleased:
                state = "pending"
            if dep in skip_spread:
                spread = True
            if state in SATISFIED:
                continue
            if state in BLOCKING:
                blockers.append(dep)
            else:
                unmet.append(dep)
        if node in cps:
            if blockers:
                cstate = "blocked"
            elif unmet:
                cstate = "pending"
            else:
                cstate = "approved" if decisions.get(node) == "approved" else "reached"
            node_state[node] = cstate
            if spread:
                skip_spread.add(node)
            cp_rows[node] = crow = (cstate, tuple(unmet + blockers), spread)
            if reuse is not None and reuse.checkpoints.get(node) != crow:
                changed.add(node)
            continue
        status, worker, lease_until, attempts, retry_at, skip_dependents, wait_ok, unreadable = \
            fields_of(node)
        interrupted = False
        hold = unreadable or (held if status not in FINISHED else None)
        if hold:
            status = "held"
        if status in ACTIVE and (lease_until is None or lease_until <= now):
            status, interrupted = "open", True
        if status == "retry_wait" and retry_at is not None and retry_at <= now:
            status = "open"
        if status == "skipped" and skip_dependents:
            skip_spread.add(node)
        if status == "open" and spread:
            status = "skipped"
            skip_spread.add(node)
        waiting: tuple[str, ...] = ()
        if status == "held":
            state = "blocked"
        elif status == "open":
            if blockers:
                state = "blocked"
            elif unmet:
                state = "pending"
                waiting = tuple(d for d in unmet if d not in deps)
            elif _waits(plan, node) and not wait_ok:
                state = "pending"
                waiting = ("wait",)
            else:
                state = "ready"
        else:
            state = status
        node_state[node] = state
        active = state in ACTIVE
        rows[node] = trow = (state, worker if active else None, attempts,
                            lease_until if active else None,
                            retry_at if state == "retry_wait" else None, interrupted, waiting,
                            tuple(blockers or unmet), hold, node in skip_spread)
        if reuse is not None and reuse.tasks.get(node) != trow:
            changed.add(node)
    rank = rank or {}
    ready = [t for t in ids if rows[t][0] == "ready"]
    ready.sort(key=lambda t: (-rank.get(t, 0.0), PRIORITY_RANK[_priority(plan, t)], t))
    ordered_cps = {c.id: CheckpointView(c.id, cp_rows[c.id][0], cp_rows[c.id][1]) for c in plan.checkpoints}
    return PlanState(plan.id, info.phase, Views(tuple(ids), rows, records, cp_rows), ordered_cps, info.approvals,
                     info.base_commit, tuple(ready), info, external, held)


_EVALUATED: tuple[str, ...] = ("status", "worker", "lease_until", "attempts", "retry_at", "skip_dependents", "wait_ok",
                               "unreadable")  # what `evaluate` reads of a task's record
_FROM_RECORD = attrgetter(*_EVALUATED)
_FROM_ROW = itemgetter(*(RECORD_FIELDS.index(name) for name in _EVALUATED))
_NO_LOG = _FROM_RECORD(TaskRecord())


def _record_fields(records: Mapping[str, TaskRecord]) -> Callable[[str], tuple[Any, ...]]:
    """What `evaluate` reads of a task's record (`_EVALUATED`), by task: of the records the
    cache holds as rows, read from the row (a cold read of 25,000 logs builds no record)."""
    if isinstance(records, Records):
        fresh, kept = records.fresh, records.rows

        def of_row(node: str) -> tuple[Any, ...]:
            rec = fresh.get(node)
            if rec is not None:
                return _FROM_RECORD(rec)
            row = kept.get(node)
            return _NO_LOG if row is None else _FROM_ROW(row)
        return of_row

    def of_record(node: str) -> tuple[Any, ...]:
        rec = records.get(node)
        return _NO_LOG if rec is None else _FROM_RECORD(rec)
    return of_record


def dependents_of(deps: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Each node's dependents (the nodes whose dependencies name it)."""
    dependents: dict[str, list[str]] = {}
    for node, node_deps in deps.items():
        for dep in node_deps:
            dependents.setdefault(dep, []).append(node)
    return dependents


class _Deps(Mapping[str, Sequence[str]]):
    """The plan's nodes and their dependencies, a task's read when first asked for."""

    def __init__(self, plan: Plan, cps: Mapping[str, Any], nodes: set[str]) -> None:
        self.plan, self.cps, self.nodes = plan, cps, nodes

    def __getitem__(self, node: str) -> Sequence[str]:
        if node in self.cps:
            return self.cps[node].after  # type: ignore[no-any-return]
        task = self.plan.task(node) if node in self.nodes else None
        if task is None:
            raise KeyError(node)
        return task.depends_on

    def __contains__(self, node: object) -> bool:
        return node in self.nodes

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)


def _worklist(order: Sequence[str], deps: Mapping[str, Sequence[str]], dirty: Collection[str],
              changed: set[str], known: Mapping[str, Sequence[str]] | None = None) -> Iterator[str]:
    """The nodes to evaluate again, in `order`: the dirty ones, and the dependents of each
    node whose row the caller found changed (it adds the node to `changed`)."""
    pos = {node: i for i, node in enumerate(order)}
    dependents = known if known is not None else dependents_of(deps)
    heap = [(pos[node], node) for node in dirty if node in pos]
    heapq.heapify(heap)
    seen: set[str] = set()
    while heap:
        _, node = heapq.heappop(heap)
        if node in seen:
            continue
        seen.add(node)
        yield node
        if node in changed:
            for after in dependents.get(node, ()):
                if after not in seen and after in pos:
                    heapq.heappush(heap, (pos[after], after))
    # a row that changed is evaluated again by its dependents only: nothing else moves


def state_from_rows(plan: Plan, records: Mapping[str, TaskRecord], plan_events: Sequence[Event],
                    held: str | None, rows: Mapping[str, tuple[Any, ...]],
                    cp_rows: Mapping[str, tuple[Any, ...]], ready: Sequence[str]) -> PlanState | None:
    """The state `evaluate` gave before, from its rows (kept in plan order, for the plan of
    the same digest), when none of its inputs changed (None: the rows do not cover the
    checkpoints: evaluate)."""
    ids = list(rows)
    if any(c.id not in cp_rows for c in plan.checkpoints):
        return None
    info = phase_of(plan_events)
    cps = {c.id: CheckpointView(c.id, cp_rows[c.id][0], cp_rows[c.id][1]) for c in plan.checkpoints}
    return PlanState(plan.id, info.phase, Views(tuple(ids), rows, records, cp_rows), cps, info.approvals,
                     info.base_commit, tuple(ready), info, {}, held)


def _waits(plan: Plan, task_id: str) -> bool:
    task = plan.task(task_id)
    return bool(task is not None and task.wait)


def _priority(plan: Plan, task_id: str) -> str:
    task = plan.task(task_id)
    return task.priority if task is not None else "medium"
