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
    phase_gate,
)
from flowgit.errors import FlowError, RaceLost, UsageError
from flowgit.ids import check_id
from flowgit.store.planpin import gate_hash
from flowgit.store.repo import FlowRepo, actor_for
from flowgit.store.writing import Write


def plan_clock(repo: FlowRepo, plan_id: str) -> int:
    return max((e.clock for e in repo.plan_events(plan_id)), default=0) + 1


def transact(app: App, plan_id: str, actor: str,
             decide: Callable[[FlowRepo, PlanState, float], Decision],
             sync: bool | None = None, task: str | None = None, claim: bool = False,
             any_task: bool = False) -> dict[str, Any]:
    """The one way a task changes: lock, recover, read, decide, append, commit.

    With sync (`--sync` or config `sync: push`) the transition counts only once pushed: a
    rejected push takes the commit back, merges the remote and decides again. A synced
    `claim` with the state branch is won on its task's claim ref (ADR 0013)."""
    repo = app.repo
    if sync is None:
        sync = repo.config.sync == "push"
    if sync and claim and repo.state_store is not None:
        return _transact_claimed(app, plan_id, actor, decide, any_task)
    if sync:
        return _transact_synced(app, plan_id, actor, decide)
    with repo.writing(plan_id) as w:
        decision = _decide(repo, plan_id, task, w.now, decide)
        _record(w, decision, actor)
    result = dict(decision.result or {})
    result["commit"] = w.sha
    return result


def _record(w: Write, decision: Decision, actor: str) -> None:
    w.record(decision, actor)
    for stream, events in decision.more:  # a retry of several failed tasks: one commit
        w.append(stream, events)


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


def _transact_synced(app: App, plan_id: str, actor: str,
                     decide: Callable[[FlowRepo, PlanState, float], Decision]) -> dict[str, Any]:
    from flowgit.ops import sync as syncing

    repo = app.repo
    remote, branch = syncing.target(repo, None)
    syncing.pace(repo)  # this clone lost races lately: wait as a retry would
    tally: dict[str, Any] = {"pushed": False, "pushes": 0, "rebased": 0, "commit": None}
    decided: list[tuple[Decision, float]] = []

    def still_legal() -> bool:  # the same transition, decided again on the merged state
        decision, now = decided[-1]
        try:
            again = decide(repo, repo.state(plan_id, now), now)
        except FlowError:
            return False
        return (again.task, again.event_name) == (decision.task, decision.event_name)

    def push(sha: str | None) -> None:
        try:
            if sha is None:
                commit, pushes, rebased = sha, 1, 0
                tally["pushed"] = syncing.push(repo, remote, branch)
            else:
                commit, pushes, rebased = syncing.push_transition(
                    repo, remote, branch, sha, w.message, still_legal, syncing.RETRIES - tally["pushes"])
                tally["pushed"] = commit is not None
        except BaseException:
            if sha:
                syncing.take_back(repo, sha)  # never leave an unpushed claim behind
            raise
        tally.update(pushes=tally["pushes"] + pushes, rebased=tally["rebased"] + rebased, commit=commit)
        if not tally["pushed"] and sha:
            syncing.take_back(repo, sha)

    while tally["pushes"] < syncing.RETRIES:
        with repo.writing(plan_id, prepare=lambda: syncing.fetch_merge(repo, remote, branch, repo.journal),
                          then=push) as w:
            decision = decide(repo, w.state, w.now)
            decided.append((decision, w.now))
            _record(w, decision, actor)
        if tally["pushed"]:
            result = dict(decision.result or {})
            result.update({"commit": tally["commit"], "pushed": True, "attempts": tally["pushes"],
                           "rebased": tally["rebased"]})
            return result
        syncing.backoff(tally["pushes"] - 1)
    raise RaceLost(f"{plan_id}: could not push to {remote}/{branch} after {syncing.RETRIES} attempts; retry")


def _transact_claimed(app: App, plan_id: str, actor: str,
                      decide: Callable[[FlowRepo, PlanState, float], Decision],
                      any_task: bool = False) -> dict[str, Any]:
    """A synced claim (format 2): fetch the state and the plan's claim refs, decide, commit,
    then win the task's claim ref by compare-and-swap (ops/claimrefs). A claim of the plan
    (`any_task`) passes over the tasks other clones claimed since this clone last folded, and
    folds their claims into its own state commit; a claim of one task folds them first, in a
    commit of their own, so that it is decided on them. A claim lost to another clone is taken
    back and decided again on what the next fetch brings; a claim of the plan lost so takes
    another task at once, on the state it fetched: the loss says only that one task went
    (ADR 0013)."""
    from flowgit.ops import claimrefs
    from flowgit.ops import sync as syncing
    from flowgit.store.writing import commit_message

    repo = app.repo
    remote, branch = syncing.target(repo, None)
    syncing.pace(repo)
    tally: dict[str, Any] = {"won": False, "pushes": 0}
    decided: list[Decision] = []
    fetched: list[str] = []
    lost: set[str] = set()  # tasks of the plan this process lost to other clones since its fetch
    pending: list[claimrefs.Fresh] = []  # the claims fetched, to fold into this claim's own commit
    eager = [not any_task]
    again = [False]

    def same_state() -> bool:
        """A lost plan claim decides again on the state it fetched when it knows who else
        claims (it takes from its own share); otherwise it fetches again and learns them."""
        from flowgit.ops.sync import PACE_FORGET

        return bool(any_task and lost and fetched and claimrefs.workers_lately(repo, PACE_FORGET))

    def prepare() -> None:
        if not again[0]:
            lost.clear()
            pending.clear()
            fetched.append(syncing.fetch_merge(repo, remote, branch, repo.journal, claims=plan_id,
                                               defer=None if eager[0] else pending))

    def push(sha: str | None) -> None:
        decision = decided[-1]
        assert sha is not None and decision.task is not None and len(decision.task_events) == 1
        tally["pushes"] += 1
        # a claim that also moves the plan (or a remote with no state yet) goes with the state
        # branch atomically; any other pushes the state below it on its own
        whole = bool(decision.plan_events or decision.more) or fetched[-1] == "no remote branch"
        event = decision.task_events[0]
        event = next((e for e in w.written.get((plan_id, decision.task), []) if e.id == event.id), event)
        try:
            won = syncing.push_claim(repo, remote, plan_id, decision.task, event, sha, whole)
        except BaseException:
            syncing.take_back(repo, sha)  # never leave an unpushed claim behind
            raise
        if not won:
            syncing.take_back(repo, sha)
            if not syncing.push_error():  # another clone won that task: not this one's to take
                lost.add(decision.task)
        elif pending:
            claimrefs.note_folded(repo, pending[-1])  # kept: the claim commit holds them
        tally.update(won=won, commit=sha)

    from flowgit.errors import NothingToDo

    while tally["pushes"] < syncing.RETRIES:
        again[0] = same_state()  # on the state already fetched
        try:
            with repo.writing(plan_id, prepare=prepare, then=push) as w:
                folds = claimrefs.fold_changes(repo, pending[-1]) if pending else {}
                passed = lost | {t for p, t in folds if p == plan_id}
                decision = _unheld(repo, plan_id, w.state, w.now, decide, passed)
                assert (plan_id, decision.task) not in folds, "a claim of the plan passes over folded tasks"
                decided.append(decision)
                _record(w, decision, actor)
                if folds:
                    w.rewrites.update(folds)
                    names = ", ".join(f"{p}/{t}" for p, t in sorted(folds))
                    w.message = commit_message(plan_id, decision.task, decision.event_name, actor,
                                               f"With the claims of {names} from {remote}'s claim refs.")
        except NothingToDo:
            deferred = bool(pending and pending[-1].claims) and not eager[0]
            if not (again[0] or deferred):
                raise
            # every task it knew free went to others: fetch again (and fold what it fetched
            # into the state, in a commit of its own, as a claim that finds nothing still does)
            eager[0] = eager[0] or deferred
            lost.clear()
            continue
        if tally["won"]:
            result = dict(decision.result or {})
            result.update({"commit": tally["commit"], "pushed": True, "attempts": tally["pushes"],
                           "rebased": 0})
            return result
        if syncing.push_error() or not (any_task and lost):  # a lost plan claim tries another task at once
            syncing.backoff(tally["pushes"] - 1)
    raise RaceLost(f"{plan_id}: could not win a claim on {remote} after {syncing.RETRIES} attempts; retry")


def _unheld(repo: FlowRepo, plan_id: str, state: PlanState, now: float,
            decide: Callable[[FlowRepo, PlanState, float], Decision], lost: set[str]) -> Decision:
    """A synced claim's decision, with the tasks that a fetched claim ref holding no claim holds
    (ops/claimrefs) passed over by a claim of the plan, and a claim of one of them refused in
    that ref's line (exit 1): one bad ref holds its own task, not the plan. A claim of the plan
    also passes over the tasks it `lost` to other clones since its fetch."""
    store = repo.state_store
    held = {t: line for (p, t), line in (store.held_claims if store is not None else {}).items()
            if p == plan_id}
    if not held and not lost:
        return decide(repo, state, now)
    from dataclasses import replace

    from flowgit.errors import InvalidFile, NothingToDo

    try:
        decision = decide(repo, replace(state, order=tuple(t for t in state.order
                                                           if t not in held and t not in lost)), now)
    except NothingToDo:
        first = next((t for t in state.order if t in held), None)
        if first is not None and not lost:  # ready tasks there are, but only held ones
            raise InvalidFile(held[first]) from None
        raise
    if decision.task in held:
        raise InvalidFile(held[decision.task])
    return decision


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
        if crowd and not chosen:  # others claim from this state too: take from this one's share
            chosen.append("")
        want = task_id or after_lost_race(plan, state, chosen[-1] if chosen else None, random.random(),
                                          spread, actor, crowd)
        if want is not None and task_id is None:
            tclock = state.tasks[want].record.last_clock + 1
        d = decide_claim(plan, state, want, actor, tclock, now, lease_s)
        if want is None:
            assert d.task is not None  # decide_claim names the task it picked
            d = decide_claim(plan, state, d.task, actor,
                             state.tasks[d.task].record.last_clock + 1, now, lease_s)
        chosen.append(d.task)
        return Decision(d.task, d.task_events, gate, d.event_name, d.result)

    result = transact(app, plan_id, actor, decide, True if sync else None, claim=True, any_task=task_id is None)
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
