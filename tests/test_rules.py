"""Table tests of the pure phase rules: `decide(state, facts)` over real `evaluate` results,
and the idempotence of every move (apply its events, decide again: never the same move)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import pytest

from flowgit.core.events import Event, format_time, make_event
from flowgit.core.fold import PlanState, TaskRecord, evaluate, reduce_task
from flowgit.core.model import Plan
from flowgit.core.rules import Facts, Move, decide, is_stale, resume_phase
from flowgit.ops.phases import entered_checkpoint

NOW = 1_800_000_000.0
H1 = "a" * 64   # the hash approved
H2 = "b" * 64   # the plan file after an edit

PLAN = {
    "id": "p", "title": "P",
    "tasks": [
        {"id": "a", "title": "A"},
        {"id": "b", "title": "B", "depends_on": ["a"]},
        {"id": "c", "title": "C", "depends_on": ["CP"]},
    ],
    "checkpoints": [{"id": "CP", "after": ["b"]}],
}
NO_CP = {"id": "p", "title": "P", "tasks": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}]}


# ----- building blocks ----------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def task_log(task: str, outcome: str, clock: Clock, worker: str = "w") -> list[Event]:
    """A task's events leading to `outcome`: claimed, in_progress, done, skipped, failed, retry."""
    if outcome == "skipped":
        return [make_event("task.skipped", "p", task, worker, clock(), {"reason": "not needed"}, NOW - 50)]
    evs = [make_event("task.claimed", "p", task, worker, clock(),
                      {"lease_until": format_time(NOW + 900), "lease_seconds": 900}, NOW - 100)]
    if outcome == "claimed":
        return evs
    evs.append(make_event("task.started", "p", task, worker, clock(), {}, NOW - 90))
    if outcome == "in_progress":
        return evs
    if outcome == "done":
        evs.append(make_event("task.done", "p", task, worker, clock(), {"note": f"{task} ok"}, NOW - 80))
    elif outcome == "failed":
        evs.append(make_event("task.failed", "p", task, worker, clock(), {"error": "boom"}, NOW - 80))
    elif outcome == "retry":
        evs.append(make_event("task.failed", "p", task, worker, clock(),
                              {"error": "flaky", "retry": True, "retry_at": format_time(NOW + 60)}, NOW - 80))
    else:  # pragma: no cover - a typo in a table row
        raise ValueError(outcome)
    return evs


def phase_ev(to: str, clock: Clock, **data: Any) -> Event:
    return make_event("plan.phase", "p", None, "flowgit", clock(), {"to": to, "reason": "test", **data}, NOW - 200)


def approval(reviewer: str, digest: str, clock: Clock) -> Event:
    return make_event("plan.approved", "p", None, reviewer, clock(),
                      {"reviewer": reviewer, "comment": "ok", "plan_hash": digest}, NOW - 150)


def cp_approved(cp: str, clock: Clock) -> Event:
    return make_event("checkpoint.approved", "p", None, "rev", clock(),
                      {"checkpoint": cp, "reviewer": "rev", "comment": ""}, NOW - 20)


@dataclass
class World:
    plan: Plan
    tasks: dict[str, str] = field(default_factory=dict)     # task -> outcome
    plan_events: list[Event] = field(default_factory=list)
    clock: Clock = field(default_factory=Clock)

    def records(self) -> dict[str, TaskRecord]:
        return {t: reduce_task(task_log(t, o, self.clock)) for t, o in self.tasks.items()}

    def state(self) -> PlanState:
        return evaluate(self.plan, self.records(), self.plan_events, NOW)


def world(plan: dict[str, Any], phases: Sequence[str] = (), tasks: dict[str, str] | None = None,
          approvals: Sequence[tuple[str, str]] = (), cps: Sequence[str] = ()) -> World:
    w = World(Plan.from_dict(plan, "plan.yaml"), dict(tasks or {}))
    for to in phases:
        data = {"base_commit": "0" * 40, "plan_hash": H1} if to == "execute" else {}
        w.plan_events.append(phase_ev(to, w.clock, **data))
        if to == "plan_review":
            for reviewer, digest in approvals:
                w.plan_events.append(approval(reviewer, digest, w.clock))
    for cp in cps:
        w.plan_events.append(cp_approved(cp, w.clock))
    return w


def facts(required: int = 1, auto: bool = False, reset: bool = False, digest: str = H1,
          entered: str | None = None) -> Facts:
    return Facts(digest, required, auto, reset, entered)


TWO_CPS = {
    "id": "p", "title": "P",
    "tasks": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}],
    "checkpoints": [{"id": "CP1", "after": ["a"]}, {"id": "CP2", "after": ["b"]}],
}


def in_review_of(entered: str, approved: Sequence[str], tasks: dict[str, str] | None = None) -> World:
    """TWO_CPS in the checkpoint phase, entered for `entered`."""
    w = world(TWO_CPS, EXEC, tasks or {"a": "done", "b": "done"})
    w.plan_events.append(phase_ev("checkpoint", w.clock, checkpoint=entered))
    for cp in approved:
        w.plan_events.append(cp_approved(cp, w.clock))
    return w


def apply_move(w: World, move: Move, f: Facts) -> None:
    """What `flowgit.pipeline.move_events` appends for a move, without a repository."""
    if move.approve:
        w.plan_events.append(make_event("plan.approved", "p", None, "flowgit", w.clock(),
                                        {"reviewer": "auto", "comment": "auto_approve",
                                         "plan_hash": f.plan_hash}, NOW))
    data: dict[str, Any] = {"to": move.to, "reason": move.reason, "from": w.state().phase}
    if move.to == "execute" and w.state().base_commit is None:
        data.update(base_commit="1" * 40, plan_hash=f.plan_hash)
    if move.checkpoint:
        data["checkpoint"] = move.checkpoint
    w.plan_events.append(make_event("plan.phase", "p", None, "flowgit", w.clock(), data, NOW))


REVIEW = ("plan_review",)
EXEC = ("plan_review", "execute")

# (name, world builder, facts, expected (to, checkpoint, approve) or None)
TABLE: list[tuple[str, Any, Facts, tuple[str, str | None, bool] | None]] = [
    # --- plan review and approvals
    ("review 0 of 1", lambda: world(PLAN, REVIEW), facts(1), None),
    ("review 1 of 1", lambda: world(PLAN, REVIEW, approvals=[("r1", H1)]), facts(1), ("execute", None, False)),
    ("review 1 of 2", lambda: world(PLAN, REVIEW, approvals=[("r1", H1)]), facts(2), None),
    ("review same reviewer twice of 2",
     lambda: world(PLAN, REVIEW, approvals=[("r1", H1), ("r1", H1)]), facts(2), None),
    ("review 2 of 2", lambda: world(PLAN, REVIEW, approvals=[("r1", H1), ("r2", H1)]), facts(2),
     ("execute", None, False)),
    ("review 3 of 2", lambda: world(PLAN, REVIEW, approvals=[("r1", H1), ("r2", H1), ("r3", H1)]),
     facts(2), ("execute", None, False)),
    ("review, none required", lambda: world(PLAN, REVIEW), facts(0), ("execute", None, False)),
    ("review, auto_approve", lambda: world(PLAN, REVIEW), facts(1, auto=True), ("execute", None, True)),
    ("review, auto_approve, none required", lambda: world(PLAN, REVIEW), facts(0, auto=True),
     ("execute", None, True)),
    ("review, stale approval does not count",
     lambda: world(PLAN, REVIEW, approvals=[("r1", H1)]), facts(1, digest=H2), None),
    ("review, 1 stale + 1 fresh of 2",
     lambda: world(PLAN, REVIEW, approvals=[("r1", H1), ("r2", H2)]), facts(2, digest=H2), None),
    ("review, stale approval, reset on: still waits",
     lambda: world(PLAN, REVIEW, approvals=[("r1", H1)]), facts(1, reset=True, digest=H2), None),
    # --- a plan edited after approval
    ("execute, stale, reset on", lambda: world(PLAN, EXEC, approvals=[("r1", H1)]),
     facts(1, reset=True, digest=H2), ("plan_review", None, False)),
    ("execute, stale, reset off", lambda: world(PLAN, EXEC, approvals=[("r1", H1)]),
     facts(1, reset=False, digest=H2), None),
    ("execute, stale, reset on but no approval required", lambda: world(PLAN, EXEC),
     facts(0, reset=True, digest=H2), None),
    ("checkpoint phase, stale, reset on",
     lambda: world(PLAN, EXEC + ("checkpoint",), {"a": "done", "b": "done"}, approvals=[("r1", H1)]),
     facts(1, reset=True, digest=H2), ("plan_review", None, False)),
    ("execute, fresh, reset on", lambda: world(PLAN, EXEC, approvals=[("r1", H1)]),
     facts(1, reset=True), None),
    # --- execution and checkpoints
    ("execute, nothing done", lambda: world(PLAN, EXEC, approvals=[("r1", H1)]), facts(1), None),
    ("execute, one running", lambda: world(PLAN, EXEC, {"a": "in_progress"}), facts(0), None),
    ("execute, checkpoint not yet reached", lambda: world(PLAN, EXEC, {"a": "done", "b": "claimed"}),
     facts(0), None),
    ("execute, checkpoint reached", lambda: world(PLAN, EXEC, {"a": "done", "b": "done"}), facts(0),
     ("checkpoint", "CP", False)),
    ("execute, checkpoint reached through skipped tasks",
     lambda: world(PLAN, EXEC, {"a": "skipped", "b": "skipped"}), facts(0), ("checkpoint", "CP", False)),
    ("execute, checkpoint reached, done + skipped",
     lambda: world(PLAN, EXEC, {"a": "done", "b": "skipped"}), facts(0), ("checkpoint", "CP", False)),
    ("checkpoint phase, awaiting review",
     lambda: world(PLAN, EXEC + ("checkpoint",), {"a": "done", "b": "done"}), facts(0), None),
    ("checkpoint phase, approved -> execute",
     lambda: world(PLAN, EXEC + ("checkpoint",), {"a": "done", "b": "done"}, cps=["CP"]), facts(0),
     ("execute", None, False)),
    ("execute, checkpoint approved, dependent left",
     lambda: world(PLAN, EXEC, {"a": "done", "b": "done"}, cps=["CP"]), facts(0), None),
    ("execute, all done, checkpoint approved",
     lambda: world(PLAN, EXEC, {"a": "done", "b": "done", "c": "done"}, cps=["CP"]), facts(0),
     ("finish", None, False)),
    ("execute, all done, no checkpoints", lambda: world(NO_CP, EXEC, {"a": "done", "b": "skipped"}),
     facts(0), ("finish", None, False)),
    ("execute, retry pending", lambda: world(NO_CP, EXEC, {"a": "done", "b": "retry"}), facts(0), None),
    ("execute, stalled by a failed task", lambda: world(PLAN, EXEC, {"a": "failed"}), facts(0),
     ("halted", None, False)),
    ("execute, failed task but other work left",
     lambda: world(NO_CP, EXEC, {"a": "failed"}), facts(0), None),
    # --- two checkpoints reached together: each is entered (its validations run) in turn
    ("execute, two reached", lambda: world(TWO_CPS, EXEC, {"a": "done", "b": "done"}), facts(0),
     ("checkpoint", "CP1", False)),
    ("in review of CP1, CP2 also reached", lambda: in_review_of("CP1", []), facts(0, entered="CP1"), None),
    ("CP1 approved, CP2 reached, not yet entered", lambda: in_review_of("CP1", ["CP1"]),
     facts(0, entered="CP1"), ("checkpoint", "CP2", False)),
    ("CP1 approved, CP2 entered", lambda: in_review_of("CP2", ["CP1"]), facts(0, entered="CP2"), None),
    ("CP1 approved, CP2 reached, entry unknown", lambda: in_review_of("CP1", ["CP1"]), facts(0), None),
    ("both approved", lambda: in_review_of("CP2", ["CP1", "CP2"]), facts(0, entered="CP2"),
     ("execute", None, False)),
    # --- phases the rules leave alone
    ("draft", lambda: world(PLAN), facts(0), None),
    ("draft, auto_approve", lambda: world(PLAN), facts(1, auto=True), None),
    ("finish", lambda: world(NO_CP, EXEC + ("finish",), {"a": "done", "b": "done"}), facts(0), None),
    ("complete", lambda: world(NO_CP, EXEC + ("finish", "complete"), {"a": "done", "b": "done"}),
     facts(0), None),
    ("complete, stale, reset on",
     lambda: world(NO_CP, EXEC + ("finish", "complete"), {"a": "done", "b": "done"}, approvals=[("r", H1)]),
     facts(1, reset=True, digest=H2), None),
    ("halted", lambda: world(PLAN, EXEC + ("halted",), {"a": "failed"}), facts(0), None),
    ("halted, all done", lambda: world(NO_CP, EXEC + ("halted",), {"a": "done", "b": "done"}), facts(0), None),
]


@pytest.mark.parametrize("name,build,f,expected", TABLE, ids=[row[0] for row in TABLE])
def test_decide(name: str, build: Any, f: Facts, expected: tuple[str, str | None, bool] | None) -> None:
    w = build()
    moves = decide(w.state(), f)
    assert len(moves) <= 1, moves
    if expected is None:
        assert moves == [], f"{name}: expected no move, got {moves}"
        return
    assert moves, f"{name}: expected a move to {expected[0]}"
    move = moves[0]
    assert (move.to, move.checkpoint, move.approve) == expected
    assert move.reason


@pytest.mark.parametrize("name,build,f,expected", [r for r in TABLE if r[3] is not None],
                         ids=[r[0] for r in TABLE if r[3] is not None])
def test_applying_a_move_never_calls_for_it_again(name: str, build: Any, f: Facts, expected: Any) -> None:
    w = build()
    seen: list[Move] = []
    for _ in range(8):
        if f.entered is not None:
            f = replace(f, entered=entered_checkpoint(w.plan_events))
        moves = decide(w.state(), f)
        if not moves:
            break
        move = moves[0]
        assert move not in seen, f"{name}: {move} decided again after it was applied ({seen})"
        before = w.state().phase
        seen.append(move)
        apply_move(w, move, f)
        assert w.state().phase == move.to
        assert move.to != before or move.checkpoint, "a move changes the phase or the checkpoint in review"
    else:  # pragma: no cover
        pytest.fail(f"{name}: the rules never settle: {seen}")
    assert seen and seen[0].to == expected[0]


def test_reset_then_reapproval_resumes_execution() -> None:
    w = world(PLAN, EXEC, {"a": "done"}, approvals=[("r1", H1)])
    f = facts(1, reset=True, digest=H2)
    st = w.state()
    assert is_stale(st, f)
    [move] = decide(st, f)
    apply_move(w, move, f)
    assert w.state().phase == "plan_review" and decide(w.state(), f) == []
    w.plan_events.append(approval("r1", H2, w.clock))
    [move] = decide(w.state(), f)
    assert move.to == "execute"
    apply_move(w, move, f)
    assert not is_stale(w.state(), f)
    assert w.state().base_commit == "0" * 40, "re-entering execute keeps the commit execution began at"
    assert decide(w.state(), f) == []


def test_changes_requested_accepts_the_new_plan_hash() -> None:
    """A reviewer's request for changes edits plan.yaml; that edit is not a stale approval."""
    w = world(PLAN, EXEC + ("checkpoint",), {"a": "done", "b": "done"}, approvals=[("r1", H1)])
    w.plan_events.append(make_event("checkpoint.changes_requested", "p", None, "r1", w.clock(),
                                    {"checkpoint": "CP", "reviewer": "r1", "tasks": ["CP-fix-1"],
                                     "plan_hash": H2}, NOW))
    assert not is_stale(w.state(), facts(1, reset=True, digest=H2))


def test_checkpoint_re_gates_after_changes_requested() -> None:
    plan = dict(PLAN, tasks=PLAN["tasks"] + [{"id": "CP-fix-1", "title": "fix"}],
                checkpoints=[{"id": "CP", "after": ["b", "CP-fix-1"]}])
    w = world(plan, EXEC + ("checkpoint",), {"a": "done", "b": "done"})
    w.plan_events.append(make_event("checkpoint.changes_requested", "p", None, "r", w.clock(),
                                    {"checkpoint": "CP", "reviewer": "r", "tasks": ["CP-fix-1"]}, NOW))
    st = w.state()
    assert st.checkpoints["CP"].state == "pending"
    assert decide(st, facts(0)) == [Move("execute", "checkpoint reviewed")]
    apply_move(w, decide(st, facts(0))[0], facts(0))
    assert decide(w.state(), facts(0)) == []
    w.tasks["CP-fix-1"] = "done"
    [move] = decide(w.state(), facts(0))
    assert (move.to, move.checkpoint) == ("checkpoint", "CP")


def test_resume_phase() -> None:
    w = world(PLAN, EXEC + ("checkpoint", "halted"), {"a": "done", "b": "done"})
    assert resume_phase(w.state()) == "checkpoint"
    w = world(PLAN, REVIEW + ("halted",))
    assert resume_phase(w.state()) == "plan_review"


def test_decide_is_pure() -> None:
    w = world(PLAN, EXEC, {"a": "done", "b": "done"})
    st = w.state()
    assert decide(st, facts(0)) == decide(st, facts(0))
    assert st.phase == "execute"


def test_table_is_fast() -> None:
    """A 2,000-task plan in execute: evaluate + decide well under the advance budget."""
    tasks = [{"id": f"t{i}", "title": "x", **({"depends_on": [f"t{i - 1}"]} if i % 10 else {})}
             for i in range(2000)]
    plan = Plan.from_dict({"id": "p", "title": "big", "tasks": tasks,
                           "checkpoints": [{"id": "CP", "after": ["t1999"]}]}, "plan.yaml")
    clock = Clock()
    records = {f"t{i}": reduce_task(task_log(f"t{i}", "done", clock)) for i in range(0, 2000, 2)}
    evs = [phase_ev("plan_review", clock), phase_ev("execute", clock, base_commit="0" * 40)]
    start = time.perf_counter()
    st = evaluate(plan, records, evs, NOW)
    decide(st, facts(0))
    assert time.perf_counter() - start < 0.3
