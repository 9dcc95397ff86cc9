"""graph_facts builds the task graph once for its cycle check, order and ranks (issue 17)."""
from __future__ import annotations


def test_cycle_order_rank_is_the_three_functions() -> None:
    import random

    from flowgit.core import graph

    rnd = random.Random(17)
    for n in (1, 5, 40, 300):
        for cyclic in (False, True):
            deps = {f"T{i:03}": [f"T{j:03}" for j in rnd.sample(range(i), min(i, rnd.randint(0, 3)))]
                    for i in range(n)}
            if cyclic and n > 1:
                deps["T000"] = [f"T{n - 1:03}"]
            hours = {k: float(rnd.randint(0, 8)) for k in deps}
            cycle, order, rank = graph.cycle_order_rank(deps, hours)
            assert cycle == graph.find_cycle(deps)
            if cycle is None:
                assert order == graph.topo_order(deps)
                assert rank == graph.critical_rank(deps, hours)
                assert list(rank) == sorted(rank)
            else:
                assert (order, rank) == ([], {})
