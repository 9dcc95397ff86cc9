"""core/fold.evaluate reads what it needs of a task's record from the row the cache holds
(`Records.rows`), without building a `TaskRecord` (issue 17: 25,000 of them on a cold read):
on random plans and records (every status, leases and retries either side of now, skips that
spread, waits, unreadable logs), split at random between rows and records just folded, the
rows, checkpoints and ready order are those of the records handed in as a plain mapping."""
from __future__ import annotations

import random
from typing import Any

import pytest

from flowgit.core.fold import evaluate
from flowgit.core.graph import cycle_order_rank
from flowgit.core.index import plan_columns
from flowgit.core.model import Plan
from flowgit.core.planstate import Records, TaskRecord, Views

NOW = 1_000_000.0
STATUSES = ("open", "claimed", "in_progress", "retry_wait", "done", "failed", "skipped", "review")


def plan(rng: random.Random, n: int) -> Plan:
    tasks = []
    for i in range(n):
        task: dict[str, Any] = {"id": f"t{i}", "title": f"T{i}", "priority": rng.choice(("high", "medium", "low"))}
        deps = sorted({f"t{rng.randrange(i)}" for _ in range(rng.randrange(3))} if i else set())
        if deps:
            task["depends_on"] = deps
        if rng.random() < 0.1:
            task["wait"] = {"run": ["true"]}
        tasks.append(task)
    cps = [{"id": "cp", "title": "Gate", "after": [f"t{rng.randrange(n)}"]}] if rng.random() < 0.5 else []
    return Plan.from_dict({"id": "p", "title": "P", "tasks": tasks, "checkpoints": cps}, "p")


def record(rng: random.Random) -> TaskRecord:
    status = rng.choice(STATUSES)
    return TaskRecord(status=status, worker=rng.choice(("w", "x", None)), lease_until=rng.choice((None, NOW - 30, NOW + 30)),
                      attempts=rng.randrange(4), retry_at=rng.choice((None, NOW - 5, NOW + 5)),
                      skip_dependents=rng.random() < 0.3, wait_ok=rng.random() < 0.5,
                      unreadable=rng.choice((None,) * 9 + ("p/t.jsonl:3",)), last_error=rng.choice((None, "e")))


def facts(p: Plan, records: object, held: str | None) -> tuple[object, ...]:
    deps = dict(zip(*plan_columns(p)))
    deps.update({c.id: c.after for c in p.checkpoints})
    _, order, rank = cycle_order_rank(deps, {t.id: 1.0 for t in p.tasks})
    state = evaluate(p, records, [], NOW, {}, rank, order, held)  # type: ignore[arg-type]
    views = state.tasks
    assert isinstance(views, Views)
    return dict(views.rows), dict(views.cp_rows), state.order, [views[t].record for t in views]


@pytest.mark.parametrize("seed", range(30))
def test_rows_read_as_records(seed: int) -> None:
    rng = random.Random(seed)
    p = plan(rng, rng.randrange(2, 40))
    records = {t.id: record(rng) for t in p.tasks if rng.random() < 0.7}
    fresh = {t: r for t, r in records.items() if rng.random() < 0.3}
    rows = {t: r.to_row() for t, r in records.items() if t not in fresh}
    held = rng.choice((None, None, "p/_plan.jsonl:2"))
    assert facts(p, Records(rows, dict(fresh)), held) == facts(p, records, held)
