"""A plan's evaluated state kept between commands (issue 17, ADR 0012).

`evaluate` walks every task of the plan. What it gives depends on the plan (its hash), the
plan log, the records of the task logs, the time (only through leases and retries falling
due) and, for plans that wait on other plans, their states. This keeps its rows in the
derived cache, with what they were computed from:

- nothing changed and no lease or retry fell due: the rows are the state, read as they are;
- some logs changed (a `claim`, a `done`, a fetch), or some leases or retries fell due:
  those tasks are evaluated again, and their dependents only when a task's row changed;
- the plan changed, a checkpoint was decided, the plan log became unreadable, the clock
  went back, the plan waits on other plans, or a task's done names a commit this clone
  lacks: a full evaluation.

Deleting the cache, or `FLOWGIT_NO_CACHE=1`, gives the same answer from scratch
(tests/test_scale_equal.py compares them)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from flowgit.core.events import Event
from flowgit.core.fold import (ACTIVE, PlanState, Reuse, TaskRecord, checkpoint_decisions, evaluate,
                               state_from_rows)
from flowgit.core.planstate import Views
from flowgit.core.model import Plan

if TYPE_CHECKING:
    from flowgit.store.repo import FlowRepo

ROW_WIDTH = 10  # a task's row in core/fold.evaluate
NEVER = float("inf")


def evaluated(repo: FlowRepo, plan_id: str, plan: Plan, digest: str, records: Mapping[str, TaskRecord],
              plan_events: Sequence[Event], now: float, external: Mapping[str, str],
              graph: Callable[[], tuple[Sequence[str], Mapping[str, float]]], held: str | None,
              unreleased: frozenset[str]) -> PlanState:
    """The plan's state at `now`; `graph` gives its execution order and critical-path ranks
    (asked for only when something is evaluated)."""
    if external or unreleased or repo.cache.off:
        order, rank = graph()
        return evaluate(plan, records, plan_events, now, external, rank, order, held, unreleased)
    name = f"{plan_id}@eval"
    entry = repo.cache.entry(name)
    # the plan log reaches the task rows only through held (an unreadable line) and the
    # checkpoint decisions: a phase move or a plan.task_failed keeps the rows
    key = [digest, held, sorted(checkpoint_decisions(plan_events).items())]
    ids = _identities(repo, plan_id, records)
    reuse = _reuse(entry, key, ids, now)
    if reuse is not None and not reuse.dirty and isinstance(entry.get("ready"), list):
        again = state_from_rows(plan, records, plan_events, held, reuse.tasks, reuse.checkpoints,
                                entry["ready"])
        if again is not None:
            return again
    order, rank = graph()
    state = evaluate(plan, records, plan_events, now, external, rank, order, held, unreleased, reuse)
    views = state.tasks
    assert isinstance(views, Views)  # evaluate gives its views as rows
    if reuse is None or reuse.dirty or entry.get("ids") != ids or "ready" not in entry:
        entry.clear()
        rows = views.rows  # kept in plan order: the next read needs no plan to know it
        same: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # one object for equal rows: marshal
        # writes the others as references (every done task's row is the same), half the load
        entry.update({"key": key, "now": now, "until": _next_due(rows, now), "ids": ids,
                      "rows": {t: same.setdefault(rows[t], rows[t]) for t in views.ids},
                      "cps": dict(views.cp_rows),
                      "ready": list(state.order)})
        repo.cache.changed(name)
    return state


def _reuse(entry: Mapping[str, Any], key: list[Any], ids: Mapping[str, Any], now: float) -> Reuse | None:
    if entry.get("key") != key:
        return None
    rows, cps, old_ids = entry.get("rows"), entry.get("cps"), entry.get("ids")
    at, until = entry.get("now"), entry.get("until")
    if not (isinstance(rows, dict) and isinstance(cps, dict) and isinstance(old_ids, dict)
            and isinstance(at, float) and isinstance(until, float) and now >= at):
        return None
    for row in rows.values():  # a shape this version did not write: evaluate afresh
        if type(row) is not tuple or len(row) != ROW_WIDTH:
            return None
    dirty = {t for t, i in ids.items() if i is None or old_ids.get(t) != i}
    dirty.update(t for t in old_ids if t not in ids)
    if now >= until:
        dirty.update(t for t, row in rows.items() if _due(row, now))
    return Reuse(rows, cps, frozenset(dirty))


def _due(row: tuple[Any, ...], now: float) -> bool:
    state, lease, retry = row[0], row[3], row[4]
    return (state in ACTIVE and lease is not None and lease <= now) or \
        (state == "retry_wait" and retry is not None and retry <= now)


def _next_due(rows: Mapping[str, tuple[Any, ...]], now: float) -> float:
    """The first time after `now` at which a lease runs out or a retry falls due."""
    soonest = NEVER
    for row in rows.values():
        state = row[0]
        if state in ACTIVE:
            when = row[3]
        elif state == "retry_wait":
            when = row[4]
        else:
            continue
        if when is not None and now < when < soonest:
            soonest = when
    return soonest


def _identities(repo: FlowRepo, plan_id: str, records: Mapping[str, TaskRecord]) -> dict[str, Any]:
    """Each task log's identity as the records cache keyed it (its blob id, or its file's
    stats in format 1); None for a log that is not cached (an unreadable one): always
    evaluated again."""
    logs = repo.cache.entry(f"{plan_id}@logs").get("logs") or {}
    out: dict[str, Any] = {}
    for task in records:
        hit = logs.get(task)
        out[task] = hit[0] if hit else None
    return out
