"""The phase rules: one pure function from a plan's state to the moves it calls for.

`flowgit advance` applies them once, `flowgit watch` whenever something changes, and the
pipeline commands after their own event. Applying the moves and asking again gives nothing:
the rules only ever move towards a state in which they no longer fire.
"""
from __future__ import annotations

from dataclasses import dataclass

from flowgit.core.fold import PlanState

ACTIVE_PHASES = ("draft", "plan_review", "execute", "checkpoint", "finish")


@dataclass(frozen=True)
class Facts:
    """What the rules look at, beyond the fold: the plan file's hash and the config."""

    plan_hash: str
    approvals_required: int
    auto_approve: bool
    reset_on_change: bool
    # the checkpoint the plan last entered the `checkpoint` phase for (its validations ran
    # then); None when unknown. A second checkpoint reached while the plan is in review of the
    # first is entered in turn, so its validations run too.
    entered: str | None = None
    # format 2 (ADR 0011), a recorded plan: whether the default branch's committed plan differs
    # from the recorded one (None: the accepted hash against `plan_hash`, as format 1)
    moved: bool | None = None


@dataclass(frozen=True)
class Move:
    """A phase move the rules decide."""

    to: str                          # the phase to enter
    reason: str
    checkpoint: str | None = None    # entering `checkpoint`: which one (run its validations)
    approve: bool = False            # auto_approve: record the approval too


def approvals_valid(state: PlanState, facts: Facts) -> int:
    return sum(1 for a in state.approvals if a.plan_hash == facts.plan_hash)


def is_stale(state: PlanState, facts: Facts) -> bool:
    accepted = state.info.accepted_hash
    if facts.moved is not None:
        return accepted is not None and facts.moved
    return accepted is not None and accepted != facts.plan_hash


def decide(state: PlanState, facts: Facts) -> list[Move]:
    """The next automatic move, if any (at most one: apply it, then ask again). None while an
    unreadable line in the plan log leaves the phase in doubt."""
    if state.held:
        return []
    phase = state.phase
    if phase == "plan_review":
        if facts.auto_approve or facts.approvals_required == 0:
            return [Move("execute", "no approval required" if not facts.auto_approve
                         else "auto-approved", approve=facts.auto_approve)]
        have = approvals_valid(state, facts)
        if have >= facts.approvals_required:
            return [Move("execute", f"approved ({have}/{facts.approvals_required})")]
        return []
    if phase in ("execute", "checkpoint") and facts.reset_on_change and facts.approvals_required > 0 \
            and is_stale(state, facts):
        return [Move("plan_review", "the plan changed after it was approved")]
    reached = [c.id for c in state.checkpoints.values() if c.state == "reached"]
    if phase == "execute":
        if reached:
            return [Move("checkpoint", f"checkpoint {reached[0]} reached", checkpoint=reached[0])]
        if state.all_finished and all(c.state == "approved" for c in state.checkpoints.values()):
            return [Move("finish", "all tasks done and checkpoints approved")]
        if state.stalled:
            failed = [t for t in state.tasks.values() if t.state == "failed"]
            cause = ", ".join(t.id for t in failed) or "unsatisfiable dependencies"
            return [Move("halted", f"stalled: nothing can run ({cause} failed)" if failed
                         else f"stalled: {cause}")]
        return []
    if phase == "finish" and not (state.all_finished
                                  and all(c.state == "approved" for c in state.checkpoints.values())):
        return [Move("execute", "work was added after execution finished")]
    if phase == "checkpoint":
        if not reached:
            return [Move("execute", "checkpoint reviewed")]
        if facts.entered is not None and facts.entered not in reached:
            return [Move("checkpoint", f"checkpoint {reached[0]} reached", checkpoint=reached[0])]
    return []


def resume_phase(state: PlanState) -> str:
    """Where `resume` returns a halted plan."""
    before = state.info.halted_from
    return before if before in ACTIVE_PHASES else "execute"
