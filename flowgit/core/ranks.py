"""A plan's graph facts from its columns (issue 17, ADR 0012): the execution order and each
node's critical-path rank, as `graph.cycle_order_rank` gives them, in one pass when the
plan's ids sorted are an order (every node sorts after the nodes it waits on: what generators
and id schemes like `T-00042` give). Then the order is the ids sorted (the smallest free id
is always the next), and walking it backwards, each node's rank is its weight plus the
highest rank among its dependents, handed down to the nodes it waits on: no adjacency lists,
no successor lists, no heap. Anything else (checkpoints, a node waiting on one that sorts
after it, a weight that is no finite number >= 0) is `graph.cycle_order_rank`'s, with its
cycle and errors (tests/test_graph_columns.py holds both to the long way)."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from flowgit.core.graph import cycle_order_rank


def weights_of(estimates: Sequence[Any], hours_of: Callable[[Any], float]) -> list[float]:
    """Each estimate's hours, computed once per distinct estimate (by type too: 1 and True
    differ); a list or a mapping each time."""
    hours: dict[Any, float] = {}
    out = []
    for estimate in estimates:
        key = estimate if type(estimate) is str else (type(estimate), estimate)
        try:
            weight = hours.get(key)
            if weight is None:
                weight = hours[key] = hours_of(estimate)
        except TypeError:  # a list or a mapping: no key
            weight = hours_of(estimate)
        out.append(weight)
    return out


def order_rank(ids: Sequence[str], deps: Sequence[Sequence[str]], weights: Sequence[float],
               checkpoints: Sequence[tuple[str, Sequence[str]]] = ()
               ) -> tuple[list[str] | None, list[str], dict[str, float]]:
    """(cycle, execution order, rank by node in id order) of the plan whose tasks are `ids`
    (plan order) waiting on `deps`, weighing `weights`, and whose checkpoints wait on theirs."""
    if not checkpoints:
        found = _sorted_order(ids, deps, weights)
        if found is not None:
            return None, found[0], found[1]
    graph: dict[str, Sequence[str]] = dict(zip(ids, deps))
    graph.update(checkpoints)
    # dependencies on other plans are left out by the graph itself (it keeps only its keys)
    return cycle_order_rank(graph, dict(zip(ids, weights)))


def _sorted_order(ids: Sequence[str], deps: Sequence[Sequence[str]], weights: Sequence[float]
                  ) -> tuple[list[str], dict[str, float]] | None:
    order = sorted(ids)
    if order != ids:  # tasks appended out of id order: the columns taken in id order
        at = {node: k for k, node in enumerate(ids)}
        deps = [deps[at[node]] for node in order]
        weights = [weights[at[node]] for node in order]
    known = set(order)
    if len(known) != len(order):
        return None
    isfinite = math.isfinite
    best: dict[str, float] = {}
    ranks = [0.0] * len(order)
    for k in range(len(order) - 1, -1, -1):
        node = order[k]
        weight = float(weights[k])
        if not isfinite(weight) or weight < 0:
            return None  # cycle_order_rank's error
        above = best.get(node)
        rank = ranks[k] = weight + (0.0 if above is None else above)
        for dep in deps[k]:
            if dep in known:
                if not dep < node:
                    return None  # not the id order (or a cycle): the long way
                held = best.get(dep)
                if held is None or rank > held:
                    best[dep] = rank
    return order, dict(zip(order, ranks))
