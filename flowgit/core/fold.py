"""The fold: state is a pure function of (definition, events, now). Nothing here does I/O.

Two steps keep it cheap: `reduce_task` turns one task's log into a `TaskRecord` that does not
depend on the clock (so it can be cached per file), and `evaluate` applies the definition and
`now` (lease expiry, due retries, dependencies, checkpoints, phase).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from flowgit.core.events import Event, LogRead, canonical, event_time
from flowgit.core.model import PRIORITY_RANK, Plan, trusted_instance

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

    def to_row(self) -> dict[str, Any]:
        """The record for the marshal cache (which keeps tuples as tuples)."""
        return dict(self.__dict__)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TaskRecord:
        return trusted_instance(cls, row)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "unreadable"}
        known["files_modified"] = tuple(known.get("files_modified") or ())
        return cls(**known)


_RECORD_FIELDS = tuple(TaskRecord.__dataclass_fields__)


def _holds(rec: TaskRecord, actor: str) -> bool:
    return rec.status in ACTIVE and rec.worker == actor


def _lease_live(rec: TaskRecord, at: float) -> bool:
    return rec.status in ACTIVE and rec.lease_until is not None and rec.lease_until > at


class _Fold:
    """The mutable accumulator of one task's fold (one TaskRecord is built at the end)."""

    __slots__ = _RECORD_FIELDS

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
        for name in _RECORD_FIELDS:
            setattr(self, name, getattr(rec, name))

    def record(self) -> TaskRecord:
        return TaskRecord(*(getattr(self, name) for name in _RECORD_FIELDS))

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


def reduce_task(events: Iterable[Event]) -> TaskRecord:
    f = _Fold(TaskRecord())
    for ev in canonical(events):
        _step(f, ev)
    return f.record()


def fold_log(read: LogRead) -> TaskRecord:
    """A task's log folded; a line the checker refused holds the task (`unreadable`) instead
    of being skipped, since a skipped claim could hand the task to a second worker."""
    record = reduce_task(read.events)
    return replace(record, unreadable=read.unreadable) if read.bad else record


@dataclass(frozen=True)
class TaskView:
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


@dataclass(frozen=True)
class CheckpointView:
    id: str
    state: str  # pending reached approved blocked
    waiting_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Approval:
    reviewer: str
    comment: str
    plan_hash: str
    at: str


@dataclass(frozen=True)
class PhaseInfo:
    phase: str = "draft"
    base_commit: str | None = None
    approvals: tuple[Approval, ...] = ()
    accepted_hash: str | None = None  # the plan content last approved or amended by a reviewer
    halted_from: str | None = None
    failed_tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanState:
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
        return out + [v.held for v in self.tasks.values() if v.held and v.held != self.held]

    @property
    def unknown_refs(self) -> list[str]:
        """Dependencies that name no plan or task (yet): waited on, and shown."""
        return sorted(ref for ref, state in self.external.items() if state == "unknown")

    @property
    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in TASK_STATES}
        for view in self.tasks.values():
            counts[view.state] += 1
        return counts

    @property
    def progress(self) -> int:
        total = len(self.tasks)
        if not total:
            return 100 if self.phase == "complete" else 0
        finished = sum(1 for v in self.tasks.values() if v.state in FINISHED)
        return int(100 * finished / total)

    @property
    def ready(self) -> list[str]:
        return list(self.order)

    @property
    def interrupted(self) -> list[str]:
        return sorted(v.id for v in self.tasks.values() if v.interrupted)

    @property
    def all_finished(self) -> bool:
        return all(v.state in FINISHED for v in self.tasks.values())

    @property
    def stalled(self) -> bool:
        """Work is left but nothing can move: nothing ready, running, waiting or in review.
        A plan held by an unreadable line is not stalled: it waits for the line to be fixed."""
        if self.phase not in ("execute", "checkpoint") or self.all_finished or self.unreadable:
            return False
        live = ("ready", "claimed", "in_progress", "retry_wait", "review")
        if any(v.state in live or v.waiting_on for v in self.tasks.values()):
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


def phase_of(plan_events: Sequence[Event]) -> PhaseInfo:
    """Phase, base commit recorded on entering execute, and approvals of the current review."""
    info = PhaseInfo()
    approvals: list[Approval] = []
    failed: list[str] = []
    for ev in canonical(plan_events):
        d = ev.data
        if ev.type == "plan.snapshot":
            snap = d.get("state") or {}
            approvals = [Approval(str(a.get("reviewer", "")), str(a.get("comment", "")),
                                  str(a.get("plan_hash", "")), str(a.get("at", "")))
                         for a in snap.get("approvals", []) if isinstance(a, Mapping)]
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
) -> PlanState:
    """Task and checkpoint states at `now`.

    `external` maps references to other plans (`OTHER/TASK` or `OTHER`) to their state;
    `rank` maps task ids to their critical-path length (higher is claimed first); `held`
    says where an unreadable line of the plan log is: every unfinished task is then held;
    `unreleased`: tasks done in a code commit this clone does not have yet, whose dependents
    wait for it (ADR 0011).
    """
    external = external or {}
    info = phase_of(plan_events)
    decisions = checkpoint_decisions(plan_events)
    cps = {c.id: c for c in plan.checkpoints}
    tasks = {t.id: t for t in plan.tasks}
    deps: dict[str, tuple[str, ...]] = {t.id: t.depends_on for t in plan.tasks}
    deps.update({c.id: c.after for c in plan.checkpoints})
    local = {k: tuple(d for d in v if d in deps) for k, v in deps.items()}
    node_state: dict[str, str] = {}
    skip_spread: set[str] = set()
    views: dict[str, TaskView] = {}
    cviews: dict[str, CheckpointView] = {}
    if order is None:
        from flowgit.core.graph import topo_order

        order = topo_order(local)
    for node in order:
        unmet: list[str] = []
        blockers: list[str] = []
        spread = False
        for dep in deps[node]:
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
            cviews[node] = CheckpointView(node, cstate, tuple(unmet + blockers))
            if spread:
                skip_spread.add(node)
            continue
        rec = records.get(node, TaskRecord())
        interrupted = False
        status = rec.status
        hold = rec.unreadable or (held if status not in FINISHED else None)
        if hold:
            status = "held"
        if status in ACTIVE and (rec.lease_until is None or rec.lease_until <= now):
            status, interrupted = "open", True
        if status == "retry_wait" and rec.retry_at is not None and rec.retry_at <= now:
            status = "open"
        if status == "skipped" and rec.skip_dependents:
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
            elif tasks[node].wait and not rec.wait_ok:
                state = "pending"
                waiting = ("wait",)
            else:
                state = "ready"
        else:
            state = status
        node_state[node] = state
        views[node] = trusted_instance(TaskView, dict(
            id=node, state=state, worker=rec.worker if state in ACTIVE else None,
            attempts=rec.attempts, lease_until=rec.lease_until if state in ACTIVE else None,
            retry_at=rec.retry_at if state == "retry_wait" else None, interrupted=interrupted,
            waiting_on=waiting, blocked_by=tuple(blockers or unmet), record=rec, held=hold,
        ))
    rank = rank or {}
    ready = [v.id for v in views.values() if v.state == "ready"]
    ready.sort(key=lambda t: (-rank.get(t, 0.0), PRIORITY_RANK[tasks[t].priority], t))
    ordered_views = {t.id: views[t.id] for t in plan.tasks}
    ordered_cps = {c.id: cviews[c.id] for c in plan.checkpoints}
    return PlanState(plan.id, info.phase, ordered_views, ordered_cps, info.approvals,
                     info.base_commit, tuple(ready), info, external, held)
