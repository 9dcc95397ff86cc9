"""The graph facts in one pass over a plan's columns (core/ranks.py, issue 17) are
`graph.cycle_order_rank`'s: the same cycle, order and ranks (floats bit for bit, dict order
included), or the same error, on random plans: ids in and out of order, dependencies that
sort after their task, cycles, dependencies on other plans, repeated dependencies,
checkpoints, and weights of every kind."""
from __future__ import annotations

import random
from typing import Any

import pytest

from flowgit.core.graph import cycle_order_rank
from flowgit.core.model import estimate_hours
from flowgit.core.ranks import order_rank, weights_of


def outcome(f: Any, *args: Any) -> Any:
    try:
        cycle, order, rank = f(*args)
    except (ValueError, TypeError) as exc:
        return "error", type(exc).__name__, str(exc)
    return cycle, order, [(k, v.hex()) for k, v in rank.items()]


def long_way(ids: list[str], deps: list[tuple[str, ...]], weights: list[float],
             cps: list[tuple[str, tuple[str, ...]]]) -> Any:
    graph: dict[str, Any] = dict(zip(ids, deps))
    graph.update(cps)
    return cycle_order_rank(graph, dict(zip(ids, weights)))


def plan(rng: random.Random) -> tuple[list[str], list[tuple[str, ...]], list[float], list[Any]]:
    n = rng.randint(0, 40)
    width = rng.choice([1, 2, 5])
    ids = [f"T-{i:0{width}d}" for i in range(n)]
    if rng.random() < 0.3:
        ids.append(f"NEW-{rng.randint(0, 9)}")  # a task added after the generated ones
    if rng.random() < 0.2:
        rng.shuffle(ids)
    ids = list(dict.fromkeys(ids)) if rng.random() < 0.95 else ids + ids[:2]  # plans refuse duplicates
    deps: list[tuple[str, ...]] = []
    for k, node in enumerate(ids):
        roll = rng.random()
        if k == 0 or roll < 0.2:
            deps.append(())
        elif roll < 0.8:
            deps.append((ids[rng.randrange(k)],))
        else:
            pool = ids + ["other/T-1", "other"] if rng.random() < 0.3 else ids
            deps.append(tuple(rng.choice(pool) for _ in range(rng.randint(1, 3))))
    weights = [rng.choice([1.0, 0.5, 2.0, 0.0, 8.0, 0.1, 1 / 3]) for _ in ids]
    if rng.random() < 0.05 and weights:
        weights[rng.randrange(len(weights))] = rng.choice([float("nan"), float("inf"), -1.0])
    cps = []
    if rng.random() < 0.2 and ids:
        cps.append(("CP", tuple(rng.sample(ids, min(len(ids), 2)))))
    return ids, deps, weights, cps


@pytest.mark.parametrize("seed", range(5))
def test_one_pass_gives_the_long_ways_facts(seed: int) -> None:
    rng = random.Random(seed)
    fast = 0
    for _ in range(600):
        ids, deps, weights, cps = plan(rng)
        want = outcome(long_way, ids, deps, weights, cps)
        assert outcome(order_rank, ids, deps, weights, cps) == want, (ids, deps, weights, cps)
        fast += not cps and want[0] is None and want[0] != "error"
    assert fast > 200  # most plans here take the one pass


def test_big_chains_in_id_order() -> None:
    n = 20000
    ids = [f"T-{i:05d}" for i in range(n)]
    deps = [(f"T-{i - 10:05d}",) if i >= 10 else () for i in range(n)]
    weights = weights_of([("30m", "1h", "2h", "4h")[i % 4] for i in range(n)], estimate_hours)
    assert outcome(order_rank, ids, deps, weights, []) == outcome(long_way, ids, deps, weights, [])
    moved = ids[1:] + ids[:1]  # one task written last
    assert outcome(order_rank, moved, deps[1:] + deps[:1], weights[1:] + weights[:1], []) == \
        outcome(long_way, moved, deps[1:] + deps[:1], weights[1:] + weights[:1], [])


def test_weights_are_each_estimates_hours() -> None:
    estimates: list[Any] = ["30m", "1h", None, 2, 2.5, True, "1h", ["x"], {"a": 1}, "2d", 0]
    got = []
    for e in estimates:
        try:
            got.append(estimate_hours(e))
        except Exception as exc:  # noqa: BLE001 - whatever it raises, weights_of raises too
            got.append(type(exc))
    try:
        assert weights_of(estimates, estimate_hours) == got
    except Exception as exc:  # noqa: BLE001
        assert type(exc) in got
