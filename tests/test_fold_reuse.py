"""core/fold.evaluate with the rows of an earlier evaluation (store/evalcache.py): on random
plans (chains and fans, checkpoints, waits, skips that spread, leases and retries falling
due), changing some tasks' records and evaluating again from the earlier rows gives the
states a full evaluation gives, whether the dependents come from the plan's columns or from
the kept dependents map (issue 17: a read after a transition walks only what moved)."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest

from flowgit.core.fold import Reuse, dependents_of, evaluate
from flowgit.core.graph import cycle_order_rank
from flowgit.core.index import indexed_plan, plan_columns, task_rows
from flowgit.core.model import Plan
from flowgit.core.planstate import TaskRecord, Views

NOW = 1_000_000.0
STATUSES = ("open", "claimed", "in_progress", "retry_wait", "done", "failed", "skipped", "review")


def _plan(rng: random.Random, n: int) -> Plan:
    tasks = []
    for i in range(n):
        deps = sorted({f"t{rng.randrange(i)}" for _ in range(rng.randrange(3))} if i else set())
        task = {"id": f"t{i}", "title": f"T{i}", "priority": rng.choice(("high", "medium", "low"))}
        if deps:
            task["depends_on"] = deps
        if rng.random() < 0.05:
            task["wait"] = {"run": ["true"]}
        tasks.append(task)
    cps = []
    if n > 4:
        cps.append({"id": "cp1", "title": "Gate", "after": [f"t{rng.randrange(n // 2)}"]})
        tasks[-1].setdefault("depends_on", []).append("cp1")
    return Plan.from_dict({"id": "p", "title": "P", "tasks": tasks, "checkpoints": cps}, "p")


def _record(rng: random.Random) -> TaskRecord:
    status = rng.choice(STATUSES)
    return TaskRecord(status=status, worker="w" if status in ("claimed", "in_progress") else None,
                      lease_until=NOW + rng.choice((-30, 30, 600)), attempts=rng.randrange(3),
                      retry_at=NOW + rng.choice((-5, 5)) if status == "retry_wait" else None,
                      skip_dependents=status == "skipped" and rng.random() < 0.5,
                      wait_ok=rng.random() < 0.5)


def _full(plan: Plan, records: dict[str, TaskRecord], now: float) -> Views:
    deps = dict(zip(*plan_columns(plan)))
    deps.update({c.id: c.after for c in plan.checkpoints})
    _, order, rank = cycle_order_rank(deps, {t.id: 1.0 for t in plan.tasks})
    state = evaluate(plan, records, [], now, {}, rank, order)
    views = state.tasks
    assert isinstance(views, Views)
    return views


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("known", [False, True])
def test_evaluating_from_earlier_rows_gives_the_full_evaluation(seed: int, known: bool) -> None:
    rng = random.Random(seed)
    plan = _plan(rng, rng.randrange(3, 60))
    if known:  # as read from the plan index: a task's row fetched alone
        rows = task_rows(plan.tasks)
        plan = indexed_plan(replace(plan, tasks=()), lambda: rows)
    ids = plan_columns(plan)[0]
    records = {t: _record(rng) for t in ids if rng.random() < 0.6}
    deps = dict(zip(*plan_columns(plan)))
    deps.update({c.id: c.after for c in plan.checkpoints})
    _, order, rank = cycle_order_rank(deps, {t: 1.0 for t in ids})
    first = evaluate(plan, records, [], NOW, {}, rank, order)
    before = first.tasks
    assert isinstance(before, Views)
    now = NOW
    for _ in range(4):
        dirty = set(rng.sample(ids, rng.randrange(1, min(4, len(ids)) + 1)))
        for t in dirty:
            if rng.random() < 0.2:
                records.pop(t, None)
            else:
                records[t] = _record(rng)
        later = now + rng.choice((0, 0, 60))  # leases and retries falling due (as evalcache: the
        # time never goes back, and every active row is evaluated again once it may have)
        due = {t for t, row in before.rows.items()
               if later > now and row[0] in ("claimed", "in_progress", "retry_wait")}
        now = later
        reuse = Reuse(before.rows, before.cp_rows, frozenset(dirty | due),
                      dependents_of(deps) if known else None, before.ids if known else None)
        again = evaluate(plan, records, [], now, {}, rank, order, reuse=reuse)
        truth = _full(plan, records, now)
        got = again.tasks
        assert isinstance(got, Views)
        assert got.ids == truth.ids
        assert got.rows == truth.rows and dict(got.cp_rows) == dict(truth.cp_rows)
        assert list(again.order) == list(evaluate(plan, records, [], now, {}, rank, order).order)
        before = got
