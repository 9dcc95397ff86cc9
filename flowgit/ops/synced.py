"""Synced transitions (`--sync`, config `sync: push`): a transition counts only once pushed.
`pushed` pushes the branch the transition went to, and after a rejected push merges the remote
and decides again (ADR 0006); `claimed`, a synced claim in format 2, wins its task's claim ref
by compare-and-swap (ADR 0013)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from flowgit.core.fold import PlanState
from flowgit.core.lifecycle import Decision
from flowgit.errors import FlowError, InvalidFile, NothingToDo, RaceLost
from flowgit.ops import claimrefs
from flowgit.ops import sync as syncing
from flowgit.store.repo import FlowRepo
from flowgit.store.writing import commit_message

Decide = Callable[[FlowRepo, PlanState, float], Decision]


def pushed(repo: FlowRepo, plan_id: str, actor: str, decide: Decide) -> dict[str, Any]:
    """A synced transition: decided on the fetched and merged state, committed, pushed; a
    rejected push is rebased onto the remote's tip when the transition is still legal there,
    else taken back and decided again (ADR 0006)."""
    remote, branch = syncing.target(repo, None, verify=False)
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
            w.record(decision, actor)
        if tally["pushed"]:
            result = dict(decision.result or {})
            result.update({"commit": tally["commit"], "pushed": True, "attempts": tally["pushes"],
                           "rebased": tally["rebased"]})
            return result
        syncing.backoff(tally["pushes"] - 1)
    raise RaceLost(f"{plan_id}: could not push to {remote}/{branch} after {syncing.RETRIES} attempts; retry")


def claimed(repo: FlowRepo, plan_id: str, actor: str, decide: Decide,
            any_task: bool = False) -> dict[str, Any]:
    """A synced claim (format 2): fetch the state and the plan's claim refs, decide, commit,
    then win the task's claim ref by compare-and-swap (ops/claimrefs). A claim of the plan
    (`any_task`) passes over the tasks other clones claimed since this clone last folded, and
    folds their claims into its own state commit; a claim of one task folds them first, in a
    commit of their own, so that it is decided on them. A claim lost to another clone is taken
    back and decided again on what the next fetch brings; a claim of the plan lost so takes
    another task at once, on the state it fetched: the loss says only that one task went
    (ADR 0013)."""
    from flowgit.ops import sync as syncing
    remote, branch = syncing.target(repo, None, verify=False)
    # no pace before the first round (ADR 0006's, for one state branch): a lost claim ref says
    # only that another clone took that task, and the next pick is another (ADR 0013 "Shares")
    tally: dict[str, Any] = {"won": False, "pushes": 0}
    decided: list[Decision] = []
    fetched: list[str] = []
    lost: set[str] = set()  # tasks of the plan this process lost to other clones since its fetch
    pending: list[claimrefs.Fresh] = []  # the claims fetched, to fold into this claim's own commit
    eager = [not any_task]
    again = [False]

    def same_state() -> bool:
        """A lost plan claim decides again on the state it fetched when it knows who else
        claims (it takes from its own share) and lost only once on it; otherwise it fetches
        again: it learns who claims, or a view that two losses say is stale (the last tasks,
        which every idle worker goes for)."""
        from flowgit.ops.sync import PACE_FORGET

        return bool(any_task and len(lost) == 1 and fetched and claimrefs.workers_lately(repo, PACE_FORGET))

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

    while tally["pushes"] < syncing.RETRIES:
        again[0] = same_state()  # on the state already fetched
        try:
            with repo.writing(plan_id, prepare=prepare, then=push) as w:
                folds = claimrefs.fold_changes(repo, pending[-1]) if pending else {}
                passed = lost | {t for p, t in folds if p == plan_id}
                decision = unheld(repo, plan_id, w.state, w.now, decide, passed)
                assert (plan_id, decision.task) not in folds, "a claim of the plan passes over folded tasks"
                decided.append(decision)
                w.record(decision, actor)
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


def unheld(repo: FlowRepo, plan_id: str, state: PlanState, now: float, decide: Decide,
           lost: set[str]) -> Decision:
    """A synced claim's decision, with the tasks that a fetched claim ref holding no claim holds
    (ops/claimrefs) passed over by a claim of the plan, and a claim of one of them refused in
    that ref's line (exit 1): one bad ref holds its own task, not the plan. A claim of the plan
    also passes over the tasks it `lost` to other clones since its fetch."""
    store = repo.state_store
    held = {t: line for (p, t), line in (store.held_claims if store is not None else {}).items()
            if p == plan_id}
    if not held and not lost:
        return decide(repo, state, now)
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
