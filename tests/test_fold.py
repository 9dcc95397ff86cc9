"""The pure fold: `reduce_task` (one log -> a record) and `evaluate` (definition + records +
plan events + now -> states), driven by tables of events with explicit times."""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from flowgit.core.events import Event, format_time, make_event
from flowgit.core.fold import TaskRecord, evaluate, reduce_task
from flowgit.core.model import Plan

T0 = 1_800_000_000.0  # a fixed "now" base; every time below is an offset from it
PLAN = "p"


def ev(type_: str, task: str | None, actor: str, clock: int, at: float, /, **data: Any) -> Event:
    return make_event(type_, PLAN, task, actor, clock, data, now=T0 + at)


def ts(offset: float) -> str:
    return format_time(T0 + offset)


def claim(actor: str, clock: int, at: float, lease: float = 100, task: str = "a") -> Event:
    return ev("task.claimed", task, actor, clock, at, lease_until=ts(at + lease), lease_seconds=lease)


def plan_of(*tasks: tuple[str, Sequence[str]], checkpoints: Sequence[tuple[str, Sequence[str]]] = (),
            **tasks_extra: Any) -> Plan:
    return Plan.from_dict({
        "id": PLAN, "title": "t",
        "tasks": [{"id": t, "title": t, "depends_on": list(d), **tasks_extra.get(t, {})} for t, d in tasks],
        "checkpoints": [{"id": c, "after": list(a)} for c, a in checkpoints],
    }, "plan.yaml")


# ----- reduce_task: one log -> one record, independent of `now` ---------------------------------

REDUCE_CASES: list[tuple[str, list[Event], dict[str, Any]]] = [
    ("empty", [], {"status": "open", "worker": None, "attempts": 0, "events": 0}),
    ("claim", [claim("w1", 1, 0)],
     {"status": "claimed", "worker": "w1", "lease_until": T0 + 100, "attempts": 1}),
    ("claim-start", [claim("w1", 1, 0), ev("task.started", "a", "w1", 2, 1, lease_until=ts(200))],
     {"status": "in_progress", "worker": "w1", "lease_until": T0 + 200, "attempts": 1}),
    ("heartbeat extends the lease",
     [claim("w1", 1, 0), ev("task.started", "a", "w1", 2, 1),
      ev("task.heartbeat", "a", "w1", 3, 50, lease_until=ts(500))],
     {"status": "in_progress", "lease_until": T0 + 500}),
    ("done", [claim("w1", 1, 0), ev("task.started", "a", "w1", 2, 1),
              ev("task.done", "a", "w1", 3, 2, note="ok", files_modified=["x.py"])],
     {"status": "done", "note": "ok", "files_modified": ("x.py",), "lease_until": None,
      "last_clock": 3, "events": 3}),
    ("fail with retry", [claim("w1", 1, 0),
                         ev("task.failed", "a", "w1", 2, 5, error="boom", retry=True, retry_at=ts(65))],
     {"status": "retry_wait", "failures": 1, "retry_at": T0 + 65, "last_error": "boom",
      "lease_until": None}),
    ("fail final", [claim("w1", 1, 0), ev("task.failed", "a", "w1", 2, 5, error="boom", retry_at=None)],
     {"status": "failed", "failures": 1, "retry_at": None, "last_error": "boom"}),
    ("retry then claimed again",
     [claim("w1", 1, 0), ev("task.failed", "a", "w1", 2, 5, error="boom", retry_at=ts(65)),
      claim("w2", 3, 70)],
     {"status": "claimed", "worker": "w2", "attempts": 2, "failures": 1, "retry_at": None}),
    ("skip", [ev("task.skipped", "a", "w1", 1, 0, reason="not needed", dependents=False)],
     {"status": "skipped", "skip_dependents": False, "note": "not needed"}),
    ("skip dependents", [ev("task.skipped", "a", "w1", 1, 0, reason="x", dependents=True)],
     {"status": "skipped", "skip_dependents": True}),
    ("release", [claim("w1", 1, 0), ev("task.released", "a", "w1", 2, 1, reason="later")],
     {"status": "open", "worker": None, "lease_until": None, "attempts": 1}),
    ("done by a non-holder is ignored", [claim("w1", 1, 0), ev("task.done", "a", "w2", 2, 1)],
     {"status": "claimed", "worker": "w1", "events": 2}),
    ("start by a non-holder is ignored", [claim("w1", 1, 0), ev("task.started", "a", "w2", 2, 1)],
     {"status": "claimed", "worker": "w1"}),
    ("heartbeat by a non-holder is ignored",
     [claim("w1", 1, 0), ev("task.heartbeat", "a", "w2", 2, 1, lease_until=ts(999))],
     {"status": "claimed", "worker": "w1", "lease_until": T0 + 100}),
    ("release by a non-holder is ignored", [claim("w1", 1, 0), ev("task.released", "a", "w2", 2, 1)],
     {"status": "claimed", "worker": "w1"}),
    ("second claim while the lease is live loses", [claim("w1", 1, 0), claim("w2", 2, 50)],
     {"status": "claimed", "worker": "w1", "attempts": 1}),
    ("claim after the lease expired wins", [claim("w1", 1, 0), claim("w2", 2, 150)],
     {"status": "claimed", "worker": "w2", "attempts": 2, "lease_until": T0 + 250}),
    ("re-claim by the holder keeps the attempt count", [claim("w1", 1, 0), claim("w1", 2, 50)],
     {"status": "claimed", "worker": "w1", "attempts": 1, "lease_until": T0 + 150}),
    ("claim after done is ignored", [claim("w1", 1, 0), ev("task.done", "a", "w1", 2, 1), claim("w2", 3, 500)],
     {"status": "done", "worker": "w1"}),
    ("claim after a final failure is ignored",
     [claim("w1", 1, 0), ev("task.failed", "a", "w1", 2, 1, error="x"), claim("w2", 3, 500)],
     {"status": "failed"}),
    ("skip after done is ignored", [claim("w1", 1, 0), ev("task.done", "a", "w1", 2, 1),
                                    ev("task.skipped", "a", "w3", 3, 2, dependents=True)],
     {"status": "done", "skip_dependents": False}),
    ("skip a claimed task", [claim("w1", 1, 0), ev("task.skipped", "a", "w1", 2, 1, reason="r")],
     {"status": "skipped", "lease_until": None}),
    ("clock order, not file order", [ev("task.done", "a", "w1", 2, 1), claim("w1", 1, 0)],
     {"status": "done"}),
    ("note and log", [ev("task.note", "a", "w1", 1, 0, text="hello"),
                      ev("task.log", "a", "w1", 2, 0, path="logs/a.txt")],
     {"status": "open", "note": "hello", "log_path": "logs/a.txt"}),
]


@pytest.mark.parametrize("events,expected", [c[1:] for c in REDUCE_CASES],
                         ids=[c[0] for c in REDUCE_CASES])
def test_reduce_task(events: list[Event], expected: dict[str, Any]) -> None:
    rec = reduce_task(events)
    got = {k: getattr(rec, k) for k in expected}
    assert got == expected


def test_reduce_task_snapshot_replaces_the_record() -> None:
    snap = TaskRecord(status="done", worker="w1", attempts=3).to_dict()
    rec = reduce_task([claim("w1", 1, 0), ev("task.snapshot", "a", "w1", 2, 1, state=snap)])
    assert (rec.status, rec.worker, rec.attempts, rec.last_clock) == ("done", "w1", 3, 2)


def test_record_round_trips_through_dict() -> None:
    rec = reduce_task([claim("w1", 1, 0), ev("task.done", "a", "w1", 2, 1, files_modified=["a", "b"])])
    assert TaskRecord.from_dict(rec.to_dict()) == rec


# ----- evaluate: leases and retries at different `now`s ---------------------------------------

ONE = plan_of(("a", ()))

LEASE_CASES = [
    # events, now offset, state, worker, interrupted
    ([claim("w1", 1, 0)], 50, "claimed", "w1", False),
    ([claim("w1", 1, 0)], 99.999, "claimed", "w1", False),
    ([claim("w1", 1, 0)], 100, "ready", None, True),  # lease_until <= now: expired
    ([claim("w1", 1, 0)], 5000, "ready", None, True),
    ([claim("w1", 1, 0), ev("task.started", "a", "w1", 2, 1, lease_until=ts(300))], 200, "in_progress", "w1", False),
    ([claim("w1", 1, 0), ev("task.started", "a", "w1", 2, 1, lease_until=ts(300))], 301, "ready", None, True),
    ([claim("w1", 1, 0), ev("task.heartbeat", "a", "w1", 2, 90, lease_until=ts(400))], 350, "claimed", "w1", False),
    ([claim("w1", 1, 0), ev("task.heartbeat", "a", "w1", 2, 90, lease_until=ts(400))], 400, "ready", None, True),
    ([claim("w1", 1, 0), ev("task.done", "a", "w1", 2, 1)], 5000, "done", None, False),
    ([claim("w1", 1, 0), ev("task.released", "a", "w1", 2, 1)], 10, "ready", None, False),
]


@pytest.mark.parametrize("events,now,state,worker,interrupted", LEASE_CASES)
def test_leases_at_now(events: list[Event], now: float, state: str, worker: str | None,
                       interrupted: bool) -> None:
    st = evaluate(ONE, {"a": reduce_task(events)}, [], T0 + now)
    view = st.tasks["a"]
    assert (view.state, view.worker, view.interrupted) == (state, worker, interrupted)
    assert st.interrupted == (["a"] if interrupted else [])
    assert st.ready == (["a"] if state == "ready" else [])
    if state in ("claimed", "in_progress"):
        assert view.lease_until is not None and view.lease_until > T0 + now
    else:
        assert view.lease_until is None


RETRY = [claim("w1", 1, 0), ev("task.failed", "a", "w1", 2, 5, error="boom", retry=True, retry_at=ts(65))]


@pytest.mark.parametrize("now,state,retry_at", [
    (6, "retry_wait", T0 + 65),
    (64.9, "retry_wait", T0 + 65),
    (65, "ready", None),
    (1000, "ready", None),
])
def test_retry_due_or_not(now: float, state: str, retry_at: float | None) -> None:
    st = evaluate(ONE, {"a": reduce_task(RETRY)}, [], T0 + now)
    assert st.tasks["a"].state == state
    assert st.tasks["a"].retry_at == retry_at
    assert st.tasks["a"].attempts == 1


def test_retry_due_but_dependency_not_done_is_pending() -> None:
    plan = plan_of(("a", ()), ("b", ("a",)))
    st = evaluate(plan, {"b": reduce_task([])}, [], T0)
    assert st.tasks["b"].state == "pending"


# ----- dependencies -----------------------------------------------------------------------------

CHAIN = plan_of(("a", ()), ("b", ("a",)), ("c", ("b",)), ("d", ()))

DONE_A = [claim("w1", 1, 0), ev("task.done", "a", "w1", 2, 1)]
FAIL_A = [claim("w1", 1, 0), ev("task.failed", "a", "w1", 2, 1, error="x", retry_at=None)]

DEP_CASES = [
    ("nothing happened", {}, {"a": "ready", "b": "pending", "c": "pending", "d": "ready"},
     {"b": ("a",), "c": ("b",)}),
    ("a done", {"a": DONE_A}, {"a": "done", "b": "ready", "c": "pending", "d": "ready"}, {"c": ("b",)}),
    ("a claimed", {"a": [claim("w1", 1, 0)]}, {"a": "claimed", "b": "pending", "c": "pending"}, {}),
    ("a in retry", {"a": RETRY}, {"a": "retry_wait", "b": "pending", "c": "pending"}, {"b": ("a",)}),
    ("a failed blocks the chain", {"a": FAIL_A},
     {"a": "failed", "b": "blocked", "c": "blocked", "d": "ready"}, {"b": ("a",), "c": ("b",)}),
    ("a skipped satisfies b", {"a": [ev("task.skipped", "a", "w1", 1, 0, dependents=False)]},
     {"a": "skipped", "b": "ready", "c": "pending", "d": "ready"}, {}),
    ("skip_dependents spreads", {"a": [ev("task.skipped", "a", "w1", 1, 0, dependents=True)]},
     {"a": "skipped", "b": "skipped", "c": "skipped", "d": "ready"}, {}),
    # a dependent already done keeps its state and stops the spread: c waits on b only
    ("skip_dependents does not undo done work",
     {"a": [ev("task.skipped", "a", "w1", 1, 0, dependents=True)],
      "b": [claim("w1", 1, 0, task="b"), ev("task.done", "b", "w1", 2, 1)]},
     {"a": "skipped", "b": "done", "c": "ready"}, {}),
]


@pytest.mark.parametrize("logs,states,blocked_by", [c[1:] for c in DEP_CASES], ids=[c[0] for c in DEP_CASES])
def test_dependencies(logs: dict[str, list[Event]], states: dict[str, str],
                      blocked_by: dict[str, tuple[str, ...]]) -> None:
    st = evaluate(CHAIN, {t: reduce_task(e) for t, e in logs.items()}, [], T0 + 10)
    assert {t: st.tasks[t].state for t in states} == states
    for task, want in blocked_by.items():
        assert st.tasks[task].blocked_by == want


def test_counts_progress_and_stall_chain() -> None:
    plan_events = [ev("plan.phase", None, "w1", 1, 0, to="execute")]
    st = evaluate(plan_of(("a", ()), ("b", ("a",)), ("c", ("b",))), {"a": reduce_task(FAIL_A)},
                  plan_events, T0 + 10)
    assert st.counts == {"pending": 0, "ready": 0, "claimed": 0, "in_progress": 0, "retry_wait": 0,
                         "done": 0, "failed": 1, "skipped": 0, "blocked": 2, "review": 0}
    assert st.progress == 0
    assert st.stalled
    assert st.stall_chains() == [["c", "b", "a"]]


def test_not_stalled_while_a_retry_is_pending() -> None:
    plan_events = [ev("plan.phase", None, "w1", 1, 0, to="execute")]
    st = evaluate(CHAIN, {"a": reduce_task(RETRY)}, plan_events, T0 + 10)
    assert not st.stalled


def test_progress_counts_done_and_skipped() -> None:
    st = evaluate(CHAIN, {"a": reduce_task(DONE_A),
                          "d": reduce_task([ev("task.skipped", "d", "w1", 1, 0)])}, [], T0)
    assert st.progress == 50


def test_ready_order_by_rank_then_priority_then_id() -> None:
    plan = plan_of(("a", ()), ("b", ()), ("c", ()), ("z", ()), b={"priority": "high"}, c={"priority": "low"})
    st = evaluate(plan, {}, [], T0, rank={"z": 5.0})
    assert st.ready == ["z", "b", "a", "c"]


# ----- checkpoints ------------------------------------------------------------------------------

CP_PLAN = plan_of(("a", ()), ("b", ("CP",)), checkpoints=[("CP", ("a",))])


@pytest.mark.parametrize("a_log,plan_events,cp_state,b_state", [
    ([], [], "pending", "pending"),
    ([claim("w1", 1, 0)], [], "pending", "pending"),
    (DONE_A, [], "reached", "pending"),
    (DONE_A, [ev("checkpoint.approved", None, "rev", 1, 5, checkpoint="CP", reviewer="rev")],
     "approved", "ready"),
    (DONE_A, [ev("checkpoint.approved", None, "rev", 1, 5, checkpoint="CP", reviewer="rev"),
              ev("checkpoint.changes_requested", None, "rev", 2, 6, checkpoint="CP", reviewer="rev")],
     "reached", "pending"),
    (DONE_A, [ev("checkpoint.approved", None, "rev", 1, 5, checkpoint="OTHER", reviewer="rev")],
     "reached", "pending"),
    (FAIL_A, [], "blocked", "blocked"),
    ([ev("task.skipped", "a", "w1", 1, 0)], [], "reached", "pending"),
])
def test_checkpoints(a_log: list[Event], plan_events: list[Event], cp_state: str, b_state: str) -> None:
    st = evaluate(CP_PLAN, {"a": reduce_task(a_log)}, plan_events, T0 + 10)
    assert st.checkpoints["CP"].state == cp_state
    assert st.tasks["b"].state == b_state
    if b_state == "pending":
        assert st.tasks["b"].blocked_by == ("CP",)


def test_reached_checkpoint_is_not_a_stall() -> None:
    events = [ev("plan.phase", None, "w1", 1, 0, to="execute")]
    st = evaluate(CP_PLAN, {"a": reduce_task(DONE_A)}, events, T0 + 10)
    assert st.checkpoints["CP"].state == "reached"
    assert not st.stalled


# ----- cross-plan references --------------------------------------------------------------------

EXT_PLAN = plan_of(("a", ("other/T1", "whole")))


@pytest.mark.parametrize("external,state,waiting_on", [
    (None, "pending", ("other/T1", "whole")),
    ({"other/T1": "done"}, "pending", ("whole",)),
    ({"other/T1": "done", "whole": "complete"}, "ready", ()),
    ({"other/T1": "skipped", "whole": "complete"}, "ready", ()),
    ({"other/T1": "done", "whole": "execute"}, "pending", ("whole",)),
    ({"other/T1": "failed", "whole": "complete"}, "blocked", ()),
    ({"other/T1": "blocked", "whole": "complete"}, "blocked", ()),
    ({"other/T1": "unknown", "whole": "complete"}, "pending", ("other/T1",)),
])
def test_external_mapping(external: dict[str, str] | None, state: str, waiting_on: tuple[str, ...]) -> None:
    st = evaluate(EXT_PLAN, {}, [], T0, external)
    assert st.tasks["a"].state == state
    assert st.tasks["a"].waiting_on == waiting_on
    if state == "blocked":
        assert st.tasks["a"].blocked_by == ("other/T1",)


# ----- phase and approvals ----------------------------------------------------------------------

def _approve(who: str, clock: int) -> Event:
    return ev("plan.approved", None, who, clock, clock, reviewer=who, comment="lgtm", plan_hash="h1")


PHASE_CASES = [
    ("no events", [], "draft", [], None),
    ("created", [ev("plan.created", None, "w1", 1, 0)], "draft", [], None),
    ("submitted", [ev("plan.phase", None, "w1", 1, 0, to="plan_review")], "plan_review", [], None),
    ("approved twice by one reviewer counts once",
     [ev("plan.phase", None, "w1", 1, 0, to="plan_review"), _approve("r1", 2), _approve("r1", 3),
      _approve("r2", 4)], "plan_review", ["r1", "r2"], None),
    ("execute keeps approvals and base",
     [ev("plan.phase", None, "w1", 1, 0, to="plan_review"), _approve("r1", 2),
      ev("plan.phase", None, "w1", 3, 3, to="execute", base_commit="abc")], "execute", ["r1"], "abc"),
    ("moved back to draft resets approvals",
     [ev("plan.phase", None, "w1", 1, 0, to="plan_review"), _approve("r1", 2),
      ev("plan.phase", None, "w1", 3, 3, to="draft", reason="edited")], "draft", [], None),
    ("rejected resets approvals",
     [ev("plan.phase", None, "w1", 1, 0, to="plan_review"), _approve("r1", 2),
      ev("plan.rejected", None, "r2", 3, 3, reviewer="r2", comment="no")], "plan_review", [], None),
    ("complete", [ev("plan.phase", None, "w1", 1, 0, to="execute", base_commit="b0"),
                  ev("plan.phase", None, "w1", 2, 1, to="finish"),
                  ev("plan.phase", None, "w1", 3, 2, to="complete")], "complete", [], "b0"),
    ("snapshot then a phase", [ev("plan.snapshot", None, "w1", 5, 0,
                                  state={"phase": "execute", "base_commit": "s1", "approvals": []}),
                               ev("plan.phase", None, "w1", 6, 1, to="checkpoint")],
     "checkpoint", [], "s1"),
]


@pytest.mark.parametrize("events,phase,reviewers,base", [c[1:] for c in PHASE_CASES],
                         ids=[c[0] for c in PHASE_CASES])
def test_phase(events: list[Event], phase: str, reviewers: list[str], base: str | None) -> None:
    shuffled = list(events)
    random.Random(7).shuffle(shuffled)
    for evs in (events, shuffled):
        st = evaluate(ONE, {}, evs, T0)
        assert (st.phase, st.base_commit, [a.reviewer for a in st.approvals]) == (phase, base, reviewers)


# ----- two machines, one merged log ---------------------------------------------------------------

def _two_machines() -> tuple[dict[str, list[Event]], list[Event]]:
    """Alice and Bob both worked offline from the same start; their logs are then merged."""
    alice: dict[str, list[Event]] = {
        # both claim `a` at clock 1; (clock, actor, id) puts alice first, so she wins
        "a": [claim("alice", 1, 10, lease=600), ev("task.started", "a", "alice", 2, 11),
              ev("task.done", "a", "alice", 3, 20, note="alice did it")],
        "d": [claim("alice", 1, 30, task="d"),
              ev("task.failed", "d", "alice", 2, 31, error="flaky", retry_at=ts(40))],
    }
    bob: dict[str, list[Event]] = {
        "a": [claim("bob", 1, 12, lease=600), ev("task.started", "a", "bob", 2, 13),
              ev("task.failed", "a", "bob", 3, 14, error="bob lost the race", retry_at=None)],
        "e": [claim("bob", 1, 15, task="e"), ev("task.done", "e", "bob", 2, 16)],
        # bob claims `c` with an older clock than alice's claim of it: bob wins
        "c": [claim("bob", 1, 50, task="c")],
    }
    alice["c"] = [claim("alice", 4, 45, task="c")]
    plan_events = [
        ev("plan.phase", None, "alice", 1, 0, to="execute", base_commit="base"),
        ev("plan.task_failed", None, "bob", 2, 14, task="a", error="bob lost the race"),
        ev("plan.phase", None, "bob", 1, 0, to="execute", base_commit="base"),
    ]
    merged = {t: alice.get(t, []) + bob.get(t, []) for t in set(alice) | set(bob)}
    return merged, plan_events


MERGE_PLAN = plan_of(("a", ()), ("b", ("a",)), ("c", ()), ("d", ()), ("e", ()))


def test_merged_logs_same_state_in_any_order() -> None:
    logs, plan_events = _two_machines()
    now = T0 + 100
    reference = evaluate(MERGE_PLAN, {t: reduce_task(e) for t, e in logs.items()}, plan_events, now)
    assert reference.tasks["a"].state == "done"
    assert reference.tasks["a"].record.note == "alice did it"
    assert reference.tasks["a"].record.failures == 0  # bob's failure was not his to record
    assert reference.tasks["b"].state == "ready"
    assert (reference.tasks["c"].state, reference.tasks["c"].worker) == ("claimed", "bob")
    assert reference.tasks["d"].state == "ready"  # its retry is due at now
    assert reference.tasks["e"].state == "done"
    assert reference.phase == "execute"
    rng = random.Random(2024)
    for _ in range(50):
        shuffled_logs = {}
        for task, events in logs.items():
            events = list(events)
            rng.shuffle(events)
            shuffled_logs[task] = events
        pev = list(plan_events)
        rng.shuffle(pev)
        records = {t: reduce_task(e) for t, e in shuffled_logs.items()}
        assert evaluate(MERGE_PLAN, records, pev, now) == reference


@pytest.mark.parametrize("first", ["alice", "bob"])
def test_concatenation_order_does_not_matter(first: str) -> None:
    a = [claim("alice", 1, 10), ev("task.done", "a", "alice", 2, 11)]
    b = [claim("bob", 1, 10), ev("task.done", "a", "bob", 2, 11, note="bob")]
    rec = reduce_task(a + b if first == "alice" else b + a)
    assert (rec.status, rec.worker, rec.note, rec.attempts) == ("done", "alice", None, 1)
    assert rec.events == 4
