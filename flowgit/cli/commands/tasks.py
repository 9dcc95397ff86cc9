"""Task transitions: under the lock, read state, decide, append (fsync) and commit."""
from __future__ import annotations

import random
from typing import Any, Callable

from flowgit import git
from flowgit.cli.app import App
from flowgit.clock import wall_now
from flowgit.core.fold import PlanState
from flowgit.core.overlap import free_order, waiting_on_files
from flowgit.core.lifecycle import (
    Decision,
    after_lost_race,
    approval_block,
    decide_claim,
    decide_fail,
    decide_retry,
    decide_simple,
    free_front,
    front_needed,
    phase_gate,
)
from flowgit.errors import FlowError, UsageError
from flowgit.ids import check_id
from flowgit.store.planpin import gate_hash
from flowgit.store.repo import FlowRepo, actor_for


def plan_clock(repo: FlowRepo, plan_id: str) -> int:
    return max((e.clock for e in repo.plan_events(plan_id)), default=0) + 1


def transact(app: App, plan_id: str, actor: str,
             decide: Callable[[FlowRepo, PlanState, float], Decision],
             sync: bool | None = None, task: str | None = None, claim: bool = False,
             any_task: bool = False) -> dict[str, Any]:
    """The one way a task changes: lock, recover, read, decide, append, commit.

    With sync (`--sync` or config `sync: push`) the transition counts only once pushed
    (ops/synced): a rejected push takes the commit back, merges the remote and decides again.
    A synced `claim` with the state branch is won on its task's claim ref (ADR 0013)."""
    repo = app.repo
    if sync is None:
        sync = repo.config.sync == "push"
    if sync:
        from flowgit.ops import synced

        if claim and repo.state_store is not None:
            return synced.claimed(repo, plan_id, actor, decide, any_task)
        return synced.pushed(repo, plan_id, actor, decide)
    with repo.writing(plan_id) as w:
        decision = _decide(repo, plan_id, task, w.now, decide)
        w.record(decision, actor)
    result = dict(decision.result or {})
    result["commit"] = w.sha
    return result


def _decide(repo: FlowRepo, plan_id: str, task: str | None, now: float,
            decide: Callable[[FlowRepo, PlanState, float], Decision]) -> Decision:
    """Transitions of one held task (`task` given) need only that task's log: decide on it
    alone, and read the whole plan only to explain a refusal."""
    if task is not None:
        quick = repo.task_state(plan_id, task, now)
        if quick is not None:
            try:
                return decide(repo, quick, now)
            except FlowError:
                pass
    return decide(repo, repo.state(plan_id, now), now)


def _target(app: App, target: str | None) -> tuple[str | None, str | None]:
    """`claim` takes PLAN, PLAN/TASK, TASK, or nothing."""
    repo = app.repo
    if target is None:
        return None, None
    if "/" in target:
        return repo.resolve(target)
    check_id(target, "plan or task id")
    if target in repo.plan_ids():
        return target, None
    return repo.resolve(target)


def claim(app: App, target: str | None, worker: str | None, lease: float | None,
          sync: bool = False, context: bool = False) -> int:
    repo = app.repo
    repo.require_init()
    actor = actor_for(repo, worker)
    plan_id, task_id = _target(app, target)
    lease_s = float(lease if lease is not None else repo.config.lease_seconds)
    if lease_s <= 0:
        raise UsageError("--lease must be a positive number of seconds")
    if plan_id is None:
        plan_id = _plan_with_ready(app)
    base = git.head(repo.root)
    # what each decision took: a synced claim decides again after a lost race, and spreads
    # from the first try in a clone that lost races lately
    chosen: list[str | None] = []
    spread = 16
    shared = task_id is None and (sync or repo.config.sync == "push")
    if shared:
        from flowgit.ops.sync import contended

        wide = contended(repo)  # how many of the first ready tasks to spread over, when contended
        if wide:
            chosen.append("")
            spread = wide

    def others() -> list[str]:
        """The workers this clone saw claim lately (read again after each fetch)."""
        if not shared or repo.state_store is None:
            return []
        from flowgit.ops.claimrefs import workers_lately
        from flowgit.ops.sync import PACE_FORGET

        return [w for w in workers_lately(repo, PACE_FORGET) if w != actor]

    def decide(repo: FlowRepo, state: PlanState, now: float) -> Decision:
        plan = repo.load_plan(plan_id).plan
        pclock = plan_clock(repo, plan.id)
        gate = phase_gate(plan, state, repo.config, actor, pclock, now, base,
                          gate_hash(repo, plan.id, state), task_id)
        tclock = (state.tasks[task_id].record.last_clock + 1
                  if task_id is not None and task_id in state.tasks else 1)
        crowd = others()
        overdue: set[str] = set()
        if crowd:
            from flowgit.ops.claimrefs import OVERDUE_AFTER, passed_over

            passed[:] = [passed_over(repo, plan_id)]
            overdue = {t for t, n in passed[0].items() if n >= OVERDUE_AFTER}
            if not chosen:  # others claim from this state too: take this one's task of the round
                chosen.append("")
        # the front of the ready order, computed once: to choose, and to note what it passed over
        front = free_front(plan, state, front_needed(spread, actor, crowd)) if task_id is None and chosen else None
        want = task_id or after_lost_race(plan, state, chosen[-1] if chosen else None, random.random(),
                                          spread, actor, crowd, overdue, front)
        if want is not None and task_id is None:
            tclock = state.tasks[want].record.last_clock + 1
        d = decide_claim(plan, state, want, actor, tclock, now, lease_s)
        if want is None:
            assert d.task is not None  # decide_claim names the task it picked
            d = decide_claim(plan, state, d.task, actor,
                             state.tasks[d.task].record.last_clock + 1, now, lease_s)
        chosen.append(d.task)
        if passed:  # the tasks it passed over, which their owners should take before its next claim
            order = front if front is not None and d.task in front else free_order(plan, state)
            ahead[:] = order[:order.index(d.task)] if d.task in order else []
        return Decision(d.task, d.task_events, gate, d.event_name, d.result)

    passed: list[dict[str, int]] = []
    ahead: list[str] = []
    result = transact(app, plan_id, actor, decide, True if sync else None, claim=True, any_task=task_id is None)
    if passed:
        from flowgit.ops.claimrefs import note_passed

        note_passed(repo, plan_id, ahead, passed[0])
    line = f"claimed {result['task']} until {result['lease_until']}"
    if not context:
        app.out.result(result, line)
        return 0
    from flowgit.ops.context import context_text, task_context

    claimed_plan, _, claimed_task = str(result["task"]).partition("/")
    result["context"] = ctx = task_context(repo, claimed_plan, claimed_task)
    app.out.result(result, lambda: line + "\n\n" + context_text(ctx))
    return 0


def _plan_with_ready(app: App) -> str:
    from flowgit.errors import NothingToDo

    repo = app.repo
    now = wall_now()
    waiting = ""
    for pid in repo.plan_ids():
        state = repo.state(pid, now)
        if not state.order or state.phase in ("complete", "halted", "finish"):
            continue
        plan = repo.load_plan(pid).plan
        if not free_order(plan, state):  # as `next`: every ready task's files are held
            held = ", ".join(waiting_on_files(plan, state)[:5])
            waiting = waiting or f"; ready in {pid} but their files are held: {held}"
            continue
        blocked = approval_block(pid, state, repo.config, gate_hash(repo, pid, state))
        if blocked:  # as `next`: a plan waiting for its review is passed over
            waiting = waiting or f": {blocked}"
            continue
        return pid
    raise NothingToDo("no ready task in any plan" + waiting)


def _clock(state: PlanState, task_id: str) -> int:
    view = state.tasks.get(task_id)
    return (view.record.last_clock if view else 0) + 1


def _claim_lease(repo: FlowRepo, plan_id: str, task_id: str, actor: str, default: float) -> float:
    """start and heartbeat extend by the lease the holder claimed with (`claim --lease`)."""
    from flowgit.core.events import canonical

    claims = [e for e in canonical(repo.read_log(plan_id, task_id).events)
              if e.type == "task.claimed" and e.actor == actor]
    if claims:
        value = claims[-1].data.get("lease_seconds")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return default


def simple(app: App, kind: str, ref: str, worker: str | None, data: dict[str, Any] | None = None) -> int:
    if kind == "retry":
        return retry(app, ref, worker)
    repo = app.repo
    actor = actor_for(repo, worker)
    plan_id, task_id = repo.resolve(ref)
    lease = float(repo.config.lease_seconds)

    def decide(repo: FlowRepo, state: PlanState, now: float) -> Decision:
        plan = repo.load_plan(plan_id).plan
        extend = _claim_lease(repo, plan_id, task_id, actor, lease) if kind in ("start", "heartbeat") else lease
        return decide_simple(plan, state, task_id, actor, _clock(state, task_id), now, kind, extend, data)

    result = transact(app, plan_id, actor, decide, task=task_id)
    verb = {"start": "started", "heartbeat": "extended the lease of", "release": "released",
            "done": "done:"}[kind]
    app.out.result(result, f"{verb} {result['task']}"
                   + (f" (lease until {result['lease_until']})" if "lease_until" in result else ""))
    return 0


def done(app: App, ref: str, worker: str | None, note: str | None, files: list[str]) -> int:
    data: dict[str, Any] = {}
    if note:
        data["note"] = note
    if files:
        data["files_modified"] = files
    return simple(app, "done", ref, worker, data)


def fail(app: App, ref: str, worker: str | None, error: str, mode: str) -> int:
    repo = app.repo
    actor = actor_for(repo, worker)
    plan_id, task_id = repo.resolve(ref)

    def decide(repo: FlowRepo, state: PlanState, now: float) -> Decision:
        plan = repo.load_plan(plan_id).plan
        return decide_fail(plan, state, repo.config, task_id, actor, _clock(state, task_id),
                           plan_clock(repo, plan_id), now, error, mode)

    result = transact(app, plan_id, actor, decide, task=None if mode.startswith("skip") else task_id)
    if result["state"] == "retry_wait":
        text = f"{result['task']} failed (attempt {result['attempt']}/{result['max_attempts']}); retry at {result['retry_at']}"
    elif result["state"] == "skipped":
        text = f"skipped {result['task']}" + (" and its dependents" if result.get("dependents_skipped") else "")
    else:
        text = f"{result['task']} failed after {result['attempt']} attempt(s); its dependents are blocked"
    app.out.result(result, text)
    return 0


def retry(app: App, ref: str, worker: str | None) -> int:
    """A failed task (or the failed tasks behind a blocked one) ready again, one commit."""
    repo = app.repo
    actor = actor_for(repo, worker)
    plan_id, task_id = repo.resolve(ref)

    def decide(repo: FlowRepo, state: PlanState, now: float) -> Decision:
        return decide_retry(repo.load_plan(plan_id).plan, state, task_id, actor, now)

    # a failed task's state is its own log's: decided on it alone (a blocked one reads the plan)
    result = transact(app, plan_id, actor, decide, task=task_id)
    retried = result["retried"]
    text = f"retried {', '.join(retried)}" + ("" if retried == [result["task"]]
                                              else f" (blocking {result['task']})")
    if result["phase"] == "halted":
        text += f"; plan {plan_id} is halted: `flowgit resume {plan_id}` to go on"
    app.out.result(result, text)
    return 0


__all__ = ["claim", "simple", "done", "fail", "retry"]
