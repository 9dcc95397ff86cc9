"""Task transitions decided from state: pure functions returning the events to append,
or raising an error that says what state the task is in and who holds it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Mapping, Sequence

from flowgit.core import retry
from flowgit.core.events import Event, format_time, make_event
from flowgit.core.fold import PlanState, TaskView
from flowgit.core.model import Config, Plan, policy_for
from flowgit.core.overlap import clash, free_order, held_files, waiting_on_files
from flowgit.errors import (
    AlreadyClaimed,
    IllegalTransition,
    IsCheckpoint,
    LostLease,
    NeedsApproval,
    NotFound,
    NothingToDo,
    WrongPhase,
)

try:  # CPython's own BLAKE2: importing hashlib loads OpenSSL, ~3 ms of every process (ADR 0007)
    from _blake2 import blake2b as _blake2b  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - another Python
    from hashlib import blake2b as _blake2b

CLAIMABLE_PHASES = ("execute", "checkpoint")


@dataclass(frozen=True)
class Decision:
    task: str | None
    task_events: tuple[Event, ...]
    plan_events: tuple[Event, ...] = ()
    event_name: str = ""
    result: dict[str, Any] | None = None
    more: tuple[tuple[str, tuple[Event, ...]], ...] = ()  # events for other tasks' logs


HELD = "fix or remove that line (`flowgit validate` says what is wrong with it)"
SYMLINK = ("a symlink, which flowgit never follows in .flow/: replace it with the log itself or "
           "remove it")


def is_link_hold(where: str) -> bool:
    """Whether a hold is a log that is a symlink ("path": the whole file is never read) rather
    than an unreadable line ("path:line")."""
    line = where.rpartition(":")[2]
    return not (line.isdigit() and line.isascii())


def held_by(where: str) -> str:
    """What holds a task or plan, after "held by"."""
    return f"{where}, {SYMLINK}" if is_link_hold(where) else f"an unreadable event at {where}: {HELD}"


def describe(view: TaskView, now: float) -> str:
    if view.held:
        if is_link_hold(view.held):
            return f"blocked: held by {held_by(view.held)}"
        return f"blocked: unreadable event at {view.held}: {HELD}"
    if view.state in ("claimed", "in_progress"):
        return f"{view.state} by {view.worker} (lease until {format_time(view.lease_until or 0)})"
    if view.state == "retry_wait":
        return f"waiting to retry at {format_time(view.retry_at or 0)}"
    if view.state in ("pending", "blocked") and view.blocked_by:
        return f"{view.state} on {', '.join(view.blocked_by)}"
    if view.state == "pending" and view.waiting_on:
        what = ["its wait condition (the watcher checks it)" if w == "wait" else w
                for w in view.waiting_on]
        return f"pending, waiting on {', '.join(what)}"
    if view.interrupted:
        return "ready again (its last lease expired)"
    return view.state


def phase_gate(plan: Plan, state: PlanState, config: Config, actor: str, clock: int,
               now: float, base_commit: str | None, plan_hash: str,
               task_id: str | None = None) -> tuple[Event, ...]:
    """Claims happen in execute. A plan that needs no (more) approval starts executing.
    A plan past execution has nothing to claim (exit 3, as `next`); a named task, or a
    halted plan, is refused (exit 1)."""
    from flowgit.core.rules import Facts, approvals_valid

    blocked = approval_block(plan.id, state, config, plan_hash)
    if state.phase in CLAIMABLE_PHASES:
        if blocked:
            raise NeedsApproval(blocked)
        return ()
    needs = config.approvals_required
    facts = Facts(plan_hash, needs, config.auto_approve, config.reset_on_change)
    if state.phase in ("draft", "plan_review") and needs == 0:
        return (make_event("plan.phase", plan.id, None, actor, clock,
                           {"to": "execute", "reason": "first claim; no approval required",
                            "from": state.phase, "base_commit": base_commit,
                            "plan_hash": plan_hash}, now),)
    if state.phase == "plan_review" and approvals_valid(state, facts) >= needs:
        data: dict[str, Any] = {"to": "execute", "reason": "approved", "from": state.phase,
                                "plan_hash": plan_hash}
        if state.base_commit is None:
            data["base_commit"] = base_commit
        return (make_event("plan.phase", plan.id, None, actor, clock, data, now),)
    if blocked:
        raise NeedsApproval(blocked)
    if state.phase == "halted" or task_id is not None:
        hint = f": `flowgit resume {plan.id}` first" if state.phase == "halted" else ""
        raise WrongPhase(f"plan {plan.id} is {state.phase}: no task can be claimed{hint}")
    raise NothingToDo(f"plan {plan.id} is {state.phase}: no task is left to claim")


def approval_block(plan_id: str, state: PlanState, config: Config, plan_hash: str) -> str | None:
    """Why a claim must wait for a review, if it must: too few approvals of this version of
    the plan, or (with reset_on_change) an approval of an earlier version."""
    from flowgit.core.rules import Facts, approvals_valid, is_stale

    needs = config.approvals_required
    if needs == 0:
        return None
    facts = Facts(plan_hash, needs, config.auto_approve, config.reset_on_change)
    have = approvals_valid(state, facts)
    if state.phase == "draft":
        return (f"plan {plan_id} is in draft and needs {needs} approval(s): run `flowgit submit "
                f"{plan_id}`, then `flowgit approve {plan_id} --reviewer R`")
    if state.phase == "plan_review" and have < needs:
        return (f"plan {plan_id} is in plan_review and needs {needs} approval(s), has {have}: "
                f"run `flowgit approve {plan_id} --reviewer R`")
    if state.phase in CLAIMABLE_PHASES and vouched(config) and approved_version(state, needs) is None:
        return unvouched(plan_id, state.phase, needs, config)
    if state.phase in CLAIMABLE_PHASES and config.reset_on_change and is_stale(state, facts):
        return (f"plan {plan_id} changed after it was approved (reset_on_change): commit the change "
                f"and run `flowgit advance {plan_id}` to send it back to review, or restore the "
                "approved version")
    return None


def vouched(config: Config) -> bool:
    """Approvals git vouches for (docs/SECURITY.md): the phase a plan log says is no proof of
    them, since anyone who can push the log can write a `plan.phase` line."""
    return config.approvals_required > 0 and (config.approvals_signed or config.approvals_via == "merge")


def approved_version(state: PlanState, needs: int) -> str | None:
    """The plan version (hash) that the approvals which count accepted, the latest with `needs`
    of them; None when none has. flowgit's own amendments under execution change the plan
    without an approval, so this is the approved version, not the one running."""
    count: dict[str, int] = {}
    found = None
    for a in state.approvals:
        count[a.plan_hash] = count.get(a.plan_hash, 0) + 1
        if a.plan_hash and count[a.plan_hash] >= needs:
            found = a.plan_hash
    return found


def unvouched(plan_id: str, phase: str, needs: int, config: Config) -> str:
    if config.approvals_via == "merge":
        how = (f"no version of its plan.yaml reached {config.approvals_branch or 'the default branch'} "
               "through a merge (approvals.via: merge)")
        fix = "merge the plan through a reviewed pull request"
    else:
        how = (f"it has fewer than {needs} approval(s) in commits git verifies (approvals.signed), "
               "so a plan.phase line moved it without them")
        fix = f"run `flowgit approve {plan_id} --reviewer R` with a signing key"
    return f"plan {plan_id} is in {phase} but {how}: no task starts until then; {fix}"


def view_of(plan: Plan, state: PlanState, task_id: str) -> TaskView:
    if task_id in state.tasks:
        return state.tasks[task_id]
    if plan.checkpoint(task_id):
        raise IsCheckpoint(
            f"{plan.id}/{task_id} is a checkpoint: review it with `flowgit checkpoint {plan.id} {task_id}`")
    raise NotFound(f"plan {plan.id} has no task {task_id!r}")


def free_front(plan: Plan, state: PlanState, count: int) -> list[str]:
    """The first `count` tasks of `free_order`, checking the files of no more of the ready order
    than that takes: a claim looks at the front of it only, and at 50,000 ready tasks with files
    held the whole order cost about 100 ms a computation."""
    held = held_files(plan, state)
    if not held:
        return list(state.order[:count])
    out: list[str] = []
    for task_id in state.order:
        if len(out) >= count:
            break
        if not clash(plan, task_id, held):
            out.append(task_id)
    return out


def front_needed(window: int, me: str, others: Sequence[str]) -> int:
    """How much of the ready order `after_lost_race` looks at."""
    return SHARE_SCAN * len({me, *others}) if others else max(1, window)


def decide_claim(plan: Plan, state: PlanState, task_id: str | None, actor: str, clock: int,
                 now: float, lease: float) -> Decision:
    if task_id is None:
        free = free_front(plan, state, 1)
        if not free:
            busy = waiting_on_files(plan, state)
            why = f"; ready but their files are held: {', '.join(busy[:5])}" if busy else ""
            raise NothingToDo(f"no ready task in plan {plan.id} ({_summary(state)}){why}")
        task_id = free[0]
    view = view_of(plan, state, task_id)
    if view.state in ("claimed", "in_progress") and view.worker == actor:
        raise AlreadyClaimed(f"{plan.id}/{task_id} is already {view.state} by you: "
                                "use heartbeat to extend the lease")
    if view.state != "ready":
        raise IllegalTransition(f"cannot claim {plan.id}/{task_id}: it is {describe(view, now)}")
    held = held_files(plan, state)
    paths = clash(plan, task_id, held)
    if paths:
        holder = state.tasks[held[paths[0]]]
        raise IllegalTransition(
            f"cannot claim {plan.id}/{task_id}: its file {paths[0]} is held by {plan.id}/{holder.id} "
            f"({describe(holder, now)}); claim it once that task is done or released")
    until = now + lease
    ev = make_event("task.claimed", plan.id, task_id, actor, clock,
                    {"lease_until": format_time(until), "lease_seconds": lease}, now)
    return Decision(task_id, (ev,), event_name="claimed",
                    result={"task": f"{plan.id}/{task_id}", "worker": actor,
                            "lease_until": format_time(until)})


def after_lost_race(plan: Plan, state: PlanState, had: str | None, pick: float,
                    window: int = 16, me: str = "", others: Sequence[str] = (),
                    overdue: Collection[str] = (), front: Sequence[str] | None = None) -> str | None:
    """The task a claim of any ready task takes after losing a race for `had` (None: the first
    try, which takes the best; "": a first try in a clone that lost races lately or saw others
    claim). `had` while it is still free; else, with `others` (the workers seen claiming beside
    `me`), `me`'s task of the round (`_round`), or first a task of `overdue` (ones this clone
    passed over at its last claims and still free: an owner that does not take its task, a
    name that never claims); without, one of the first `window` of the ready order, chosen by
    `pick` (0 <= pick < 1, random): clones racing for one remote do not all go for the same
    task. `front`: the first `front_needed` tasks of the free order, as the caller computed
    them (`free_front`) to note what its claim passed over too (None: computed here, whole)."""
    if had is None:
        return None
    free = free_order(plan, state) if front is None else list(front)
    if had in free or (front is not None and had and had in state.order
                       and not clash(plan, had, held_files(plan, state))):
        return had
    if not free:
        return None
    if not others:
        peers = free[:max(1, window)]
        return peers[int(pick * len(peers)) % len(peers)]
    crowd = sorted({me, *others})
    near = free[:SHARE_SCAN * len(crowd)]  # bounded: a crowd is at most 32 names
    late = next((t for t in near if t in overdue), None)
    return late if late is not None else _round(near, crowd, me)


def _round(near: Sequence[str], crowd: Sequence[str], me: str) -> str:
    """One task for each worker of `crowd` from the front of the ready order `near`, the same
    in every clone that sees the same tasks and workers, so that they never pick the same one:
    each worker the first task of its own share (`owner`); then the best tasks no worker got
    (as many as there are workers) go, in turn, to the workers whose own task is further
    back, or who have none. A worker left without one takes from the back of what no worker
    got (the end of a run: fewer tasks than workers)."""
    mine: dict[str, str] = {}  # worker -> the first task of its share
    for task in near:
        who = owner(task, crowd)
        if who not in mine:
            mine[who] = task
            if len(mine) == len(crowd):
                break
    best = list(near[:len(crowd)])
    given = set(mine.values())
    spare = [t for t in best if t not in given]
    behind = [w for w in crowd if mine.get(w) not in best]
    if me in mine and mine[me] in best:
        return mine[me]
    paired = _pairs(behind, spare)
    if me in paired:
        return paired[me]
    if me in mine:
        return mine[me]
    rest = [t for t in near if t not in given] or list(near)
    turn = behind.index(me) if me in behind else 0
    return rest[-(1 + turn % len(rest))]


def _pairs(workers: Sequence[str], tasks: Sequence[str]) -> dict[str, str]:
    """Workers matched to tasks by the highest hash of (worker, task) first: the same in every
    clone that sees the same ones, and a clone that sees one task or worker more or less moves
    few pairs (matching by place in the list moved them all)."""
    scored = sorted(((_blake2b(f"{w}\0{t}".encode(), digest_size=8).digest(), w, t)
                     for w in workers for t in tasks), reverse=True)
    out: dict[str, str] = {}
    used: set[str] = set()
    for _, worker, task in scored:
        if worker not in out and task not in used:
            out[worker] = task
            used.add(task)
    return out


SHARE_SCAN = 16  # ready tasks per worker a contended claim looks through for one of its share


def owner(task_id: str, crowd: Sequence[str]) -> str:
    """The worker of `crowd` whose share `task_id` is: the highest hash of (worker, task)
    (rendezvous hashing). Clones that know the same workers agree on every task; a clone that
    knows fewer still gives each worker it does not know a share of its own (where taking
    turns by place would give them all the same one), and one more worker moves only the
    tasks that become its own."""
    def score(worker: str) -> tuple[bytes, str]:
        return _blake2b(f"{worker}\0{task_id}".encode(), digest_size=8).digest(), worker

    return max(crowd, key=score)


def _summary(state: PlanState) -> str:
    counts = state.counts
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    held = state.unreadable
    if held:
        parts.append(f"held by {held_by(held[0])}")
    return ", ".join(parts) or "no tasks"


def require_holder(plan: Plan, state: PlanState, task_id: str, actor: str, now: float,
                   action: str) -> TaskView:
    view = view_of(plan, state, task_id)
    rec = view.record
    if view.state in ("claimed", "in_progress") and view.worker == actor:
        return view
    if rec.worker == actor and rec.status in ("claimed", "in_progress") and view.interrupted:
        raise LostLease(
            f"cannot {action} {plan.id}/{task_id}: your lease expired at "
            f"{format_time(rec.lease_until or 0)} and the task is {describe(view, now)}; "
            f"claim it again with `flowgit claim {plan.id}/{task_id}`")
    if view.state in ("claimed", "in_progress"):
        raise IllegalTransition(
            f"cannot {action} {plan.id}/{task_id}: it is {describe(view, now)}, not you")
    hint = {"ready": "; claim it first", "interrupted": "; claim it first",
            "pending": "; it must be ready and claimed first",
            "retry_wait": "; claim it again once its retry is due"}.get(
        "interrupted" if view.interrupted else view.state, ": there is nothing left to do with it")
    raise IllegalTransition(f"cannot {action} {plan.id}/{task_id}: it is {describe(view, now)}{hint}")


def decide_simple(plan: Plan, state: PlanState, task_id: str, actor: str, clock: int, now: float,
                  kind: str, lease: float, data: dict[str, Any] | None = None) -> Decision:
    """start, heartbeat, release, done: all need the caller to hold a live lease."""
    verb = {"done": "mark done", "heartbeat": "extend the lease of"}.get(kind, kind)
    view = require_holder(plan, state, task_id, actor, now, verb)
    payload = dict(data or {})
    if kind == "start" and view.state == "in_progress":
        raise IllegalTransition(f"{plan.id}/{task_id} is already in progress by you")
    if kind in ("start", "heartbeat"):
        payload["lease_until"] = format_time(now + lease)
    type_ = {"start": "task.started", "heartbeat": "task.heartbeat", "release": "task.released",
             "done": "task.done"}[kind]
    ev = make_event(type_, plan.id, task_id, actor, clock, payload, now)
    name = {"start": "started", "heartbeat": "heartbeat", "release": "released", "done": "done"}[kind]
    result: dict[str, Any] = {"task": f"{plan.id}/{task_id}", "worker": actor, "event": name}
    if "lease_until" in payload:
        result["lease_until"] = payload["lease_until"]
    return Decision(task_id, (ev,), event_name=name, result=result)


def decide_fail(plan: Plan, state: PlanState, config: Config, task_id: str, actor: str,
                clock: int, plan_clock: int, now: float, error: str, mode: str,
                details: Mapping[str, Any] | None = None) -> Decision:
    """mode: fail | retry | skip | skip_dependents. `details` join the failure's data (what
    `run`'s checks saw, for the next attempt's prompt)."""
    view = view_of(plan, state, task_id)
    if mode in ("skip", "skip_dependents"):
        if view.state in ("done", "skipped"):
            raise IllegalTransition(f"cannot skip {plan.id}/{task_id}: it is already {view.state}")
        if view.state in ("claimed", "in_progress") and view.worker != actor:
            raise IllegalTransition(f"cannot skip {plan.id}/{task_id}: it is {describe(view, now)}")
        ev = make_event("task.skipped", plan.id, task_id, actor, clock,
                        {"reason": error, "dependents": mode == "skip_dependents"}, now)
        return Decision(task_id, (ev,), event_name="skipped",
                        result={"task": f"{plan.id}/{task_id}", "state": "skipped",
                                "dependents_skipped": mode == "skip_dependents"})
    require_holder(plan, state, task_id, actor, now, "fail")
    task = plan.task(task_id)
    policy = policy_for(plan, task, config)
    failures = view.record.failures + 1
    retry_at = None
    if mode == "retry" and not retry.exhausted(policy, failures):
        retry_at = format_time(now + retry.delay(policy, failures))
    data = {"error": error, "retry": mode == "retry", "retry_at": retry_at, "attempt": failures,
            **(details or {})}
    ev = make_event("task.failed", plan.id, task_id, actor, clock, data, now)
    plan_events: tuple[Event, ...] = ()
    if retry_at is None:
        plan_events = (make_event("plan.task_failed", plan.id, None, actor, plan_clock,
                                  {"task": task_id, "error": error, "attempts": failures}, now),)
    state_name = "retry_wait" if retry_at else "failed"
    return Decision(task_id, (ev,), plan_events, event_name="failed" if not retry_at else "retry",
                    result={"task": f"{plan.id}/{task_id}", "state": state_name,
                            "retry_at": retry_at, "attempt": failures,
                            "max_attempts": policy.max_attempts})


def failed_behind(state: PlanState, task_id: str) -> tuple[list[str], list[str]]:
    """The failed tasks of this plan that block `task_id` (through blocked tasks and
    checkpoints), and the failed or blocked references to other plans among its blockers."""
    roots: list[str] = []
    outside: list[str] = []
    seen: set[str] = set()
    todo = [task_id]
    while todo:
        node = todo.pop(0)
        if node in seen:
            continue
        seen.add(node)
        if node in state.tasks:
            view = state.tasks[node]
            if view.state == "failed" and node != task_id:
                roots.append(node)
            elif view.state == "blocked":
                todo.extend(view.blocked_by)
        elif node in state.checkpoints:
            cp = state.checkpoints[node]
            if cp.state == "blocked":
                todo.extend(cp.waiting_on)
        elif state.external.get(node) in ("failed", "blocked"):
            outside.append(node)
    return roots, outside


def decide_retry(plan: Plan, state: PlanState, task_id: str, actor: str, now: float) -> Decision:
    """A failed task made ready again with a fresh attempt budget. A task blocked by failures
    retries the failed tasks of its plan behind it, all in one commit; one blocked by another
    plan's failure is refused, naming it. Any other state is refused."""
    view = view_of(plan, state, task_id)
    if state.phase == "complete":
        raise IllegalTransition(f"cannot retry {plan.id}/{task_id}: plan {plan.id} is complete, "
                                "which is final")
    if view.held:
        raise IllegalTransition(f"cannot retry {plan.id}/{task_id}: it is held by {held_by(view.held)}")
    if view.state == "failed":
        roots = [task_id]
    elif view.state == "blocked":
        roots, outside = failed_behind(state, task_id)
        if outside:
            refs = ", ".join(outside)
            raise IllegalTransition(
                f"cannot retry {plan.id}/{task_id}: it is blocked by {refs} in another plan: "
                f"retry that with `flowgit retry {outside[0]}`")
        if not roots:
            raise IllegalTransition(f"cannot retry {plan.id}/{task_id}: it is {describe(view, now)}, "
                                    "and no failed task of the plan is behind it")
    else:
        hint = {"retry_wait": ": it is retried by itself then"}.get(view.state, ": only a failed "
                                                                        "or blocked task is retried")
        raise IllegalTransition(f"cannot retry {plan.id}/{task_id}: it is {describe(view, now)}{hint}")
    data = {} if roots == [task_id] else {"for": task_id}
    streams = tuple((r, (make_event("task.retried", plan.id, r, actor,
                                    state.tasks[r].record.last_clock + 1, data, now),))
                    for r in roots)
    return Decision(roots[0], streams[0][1], event_name="retried", more=streams[1:],
                    result={"task": f"{plan.id}/{task_id}", "retried": [f"{plan.id}/{r}" for r in roots],
                            "phase": state.phase})
