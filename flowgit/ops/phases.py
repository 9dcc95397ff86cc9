"""Applying phase moves: the I/O around the pure rules (validations, CHANGELOG, commits)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

from flowgit import git, proc
from flowgit.core.commands import Command
from flowgit.core.events import PLAN_LOG, Event, canonical, make_event
from flowgit.core.fold import PlanState
from flowgit.core.model import Plan, Validation
from flowgit.core.rules import Facts, Move, decide
from flowgit.errors import PlanEdited
from flowgit.store.repo import FlowRepo
from flowgit.store.writing import commit_message

OUTPUT_TAIL = 2000


def facts_for(repo: FlowRepo, plan_id: str) -> Facts:
    """What the rules look at. Format 2, a plan under execution (ADR 0011): approvals count
    for this branch's plan.yaml (what `approve` approves and records), and reset_on_change
    compares the default branch's committed plan with the approved one, so a branch switch
    never sends a plan back to review."""
    cfg = repo.config
    loaded = repo.load_plan(plan_id)
    digest, moved = loaded.hash, None
    if loaded.where == "state":
        from flowgit.store import planpin

        digest = planpin.branch_hash(repo, plan_id) or loaded.hash
        moved = planpin.moved(repo, plan_id)
    return Facts(digest, cfg.approvals_required, cfg.auto_approve,
                 cfg.reset_on_change, entered_checkpoint(repo.plan_events(plan_id)), moved)


def entered_checkpoint(plan_events: Sequence[Event]) -> str | None:
    """The checkpoint named by the last move into the `checkpoint` phase."""
    entered = None
    for ev in canonical(plan_events):
        if ev.type == "plan.phase" and ev.data.get("to") == "checkpoint" and ev.data.get("checkpoint"):
            entered = str(ev.data["checkpoint"])
    return entered


def plan_clock(repo: FlowRepo, plan_id: str) -> int:
    return max((e.clock for e in repo.plan_events(plan_id)), default=0) + 1


@dataclass(frozen=True)
class ValidationResult:
    name: str
    argv: tuple[str, ...]
    exit_code: int
    duration: float
    output_tail: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


# Set by a long-running process (`flowgit watch`) asked to stop: an interruptible validation
# under way is killed and `Stopped` raised, so no move is applied on half-run validations.
stop_requested = threading.Event()


class Stopped(BaseException):
    """A validation was cut short because the process is stopping (not an `Exception`, so
    nothing on the way up mistakes it for a failed command and records it)."""


def run_validation(v: Validation, cwd: str, env: dict[str, str] | None = None,
                   interruptible: bool = False) -> ValidationResult:
    """Run one validation as an argv list (never a shell string), with a timeout.
    `interruptible`: a stop request kills it and raises `Stopped` (for callers that record
    nothing of a half-run validation, like a phase move)."""
    if interruptible and stop_requested.is_set():
        raise Stopped(v.name)
    result = proc.run(v.argv, cwd=cwd, extra_env=env, timeout=v.timeout,
                      stop=stop_requested if interruptible else None)
    if result.stopped:
        raise Stopped(v.name)
    return ValidationResult(v.name, v.argv, result.returncode, result.duration,
                            result.text(OUTPUT_TAIL))


def validation_events(results: Sequence[ValidationResult], plan_id: str, checkpoint: str,
                      actor: str, clock: int, now: float) -> list[Event]:
    return [make_event("checkpoint.validation", plan_id, None, actor, clock + i,
                       {"checkpoint": checkpoint, "name": r.name, "argv": list(r.argv),
                        "exit_code": r.exit_code, "duration": r.duration,
                        "output_tail": r.output_tail}, now)
            for i, r in enumerate(results)]


def validations_for(repo: FlowRepo, plan: Plan, checkpoint: str | None) -> tuple[Validation, ...]:
    cp = plan.checkpoint(checkpoint) if checkpoint else None
    if cp is not None and cp.validations:
        return cp.validations
    return repo.config.validations


def validation_command(plan: Plan, checkpoint: str | None, v: Validation) -> Command:
    """The command a validation is, named where it is written (the checkpoint's, else config's)."""
    from flowgit.core import commands

    cp = plan.checkpoint(checkpoint) if checkpoint else None
    if cp is not None and cp.validations:
        return commands.checkpoint_validation(plan.id, cp.id, v.name, v.argv)
    return commands.config_validation(v.name, v.argv)


def trusted_validations(repo: FlowRepo, plan: Plan, checkpoint: str | None
                        ) -> tuple[list[Validation], list[dict[str, str]]]:
    """The validations this clone trusts, and those it does not (name and why), which are not run."""
    from flowgit.ops import trust

    run, skipped = [], []
    for v in validations_for(repo, plan, checkpoint):
        why = trust.why_untrusted(repo, validation_command(plan, checkpoint, v), plan.id)
        if why:
            skipped.append({"name": v.name, "reason": why})
        else:
            run.append(v)
    return run, skipped


def move_events(repo: FlowRepo, plan_id: str, state: PlanState, move: Move, actor: str,
                results: Sequence[ValidationResult], now: float) -> list[Event]:
    clock = plan_clock(repo, plan_id)
    facts = facts_for(repo, plan_id)
    events = []
    if move.approve:
        events.append(make_event("plan.approved", plan_id, None, actor, clock,
                                 {"reviewer": "auto", "comment": "auto_approve", "plan_hash": facts.plan_hash,
                                  "via": "auto"}, now))
        clock += 1
    data: dict[str, Any] = {"to": move.to, "reason": move.reason, "from": state.phase}
    if move.to == "execute" and state.base_commit is None:
        data["base_commit"] = git.head(repo.root)
        data["plan_hash"] = facts.plan_hash
    if move.checkpoint:
        data["checkpoint"] = move.checkpoint
    events.append(make_event("plan.phase", plan_id, None, actor, clock, data, now))
    if move.checkpoint:
        events += validation_events(results, plan_id, move.checkpoint, actor, clock + 1, now)
    return events


def advance_plan(repo: FlowRepo, plan_id: str, actor: str, limit: int = 8) -> list[dict[str, Any]]:
    """Apply the rules until they call for nothing. Validations run outside the lock; the
    move is re-decided under the lock and applied only if it still holds."""
    applied: list[dict[str, Any]] = []
    for _ in range(limit):
        repo.forget(plan_id)
        moves = decide(repo.state(plan_id), facts_for(repo, plan_id))
        if not moves:
            break
        move = moves[0]
        rel = repo.plan_edited(plan_id)
        if rel:
            raise PlanEdited(f"{rel} has uncommitted changes: the phase rules act on the committed "
                            f"plan; commit them (or restore the file) for the move to {move.to}")
        results: list[ValidationResult] = []
        not_run: list[dict[str, str]] = []
        if move.checkpoint:
            # only what this clone trusts runs; the rest waits, "not run yet" in the review,
            # for `flowgit checkpoint PLAN CP --validate` once trusted
            plan = repo.load_plan(plan_id).plan
            trusted, not_run = trusted_validations(repo, plan, move.checkpoint)
            results = [run_validation(v, str(repo.root), interruptible=True) for v in trusted]
        with repo.writing(plan_id) as w:
            state = w.state
            again = decide(state, facts_for(repo, plan_id))
            if not again or again[0] != move:
                continue
            w.append(PLAN_LOG, move_events(repo, plan_id, state, move, actor, results, w.now))
            w.message = commit_message(plan_id, None, f"phase {move.to}", actor, move.reason)
        sha = w.sha
        applied.append({"plan": plan_id, "from": state.phase, "to": move.to, "reason": move.reason,
                        "checkpoint": move.checkpoint, "commit": sha,
                        "validations": [{"name": r.name, "exit_code": r.exit_code} for r in results],
                        "not_run": not_run})
    return applied
