"""`graph` draws from the plan's columns (issue 17): no task built and no node object per task.
Its output is what the graph of `Node`s gives, and the shortcuts it takes (mermaid names in one
translation, labels searched once for characters to escape, one and no dependency) give what
the long way gives, on ids chosen to collide."""
from __future__ import annotations

import json
import random
from typing import Any

import pytest

from flowgit.core import graph as g
from flowgit.core.model import Plan
from flowgit.formats import yamlio


def reference_ids(ids: list[str]) -> dict[str, str]:
    """The mermaid names as they were made one id at a time."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for node in sorted(ids):
        base = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in node) or "_"
        if base.lower() in g._MERMAID_KEYWORDS:
            base = f"n_{base}"
        candidate, n = base, 1
        while candidate in used:
            n += 1
            candidate = f"{base}_{n}"
        used.add(candidate)
        out[node] = candidate
    return out


@pytest.mark.parametrize("seed", range(30))
def test_mermaid_names_match_the_one_at_a_time_rule(seed: int) -> None:
    rng = random.Random(seed)
    pool = ["a.b", "a-b", "a_b", "a_b_2", "end", "END", "End", "x", "é", "a\nb", "n_end", "graph",
            "T-1", "T_1", "T.1", "1", "_"]
    for _ in range(20):
        ids = list({rng.choice(pool) if rng.random() < 0.5 else
                    "".join(rng.choice("ab._-E") for _ in range(rng.randint(1, 4)))
                    for _ in range(rng.randint(0, 12))})
        assert g._mermaid_ids(ids) == reference_ids(ids), ids


def slow_nodes(plan: Plan, states: dict[str, str], workers: dict[str, Any],
               checkpoints: dict[str, str]) -> list[g.Node]:
    """The graph command's nodes as it built them before (a Node per task)."""
    known = set(plan.node_ids())
    nodes = [g.Node(id=t.id, title=t.title, deps=tuple(d for d in t.depends_on if d in known),
                    kind="task", state=states[t.id], priority=t.priority, hours=t.hours,
                    worker=workers[t.id]) for t in plan.tasks]
    nodes += [g.Node(id=c.id, title=c.title, deps=tuple(a for a in c.after if a in known),
                     kind="checkpoint", state=checkpoints[c.id], hours=0.0) for c in plan.checkpoints]
    return nodes


PLAN = """\
id: web
title: 'Web: "quoted" #1'
goal: Test
tasks:
  - id: T-1
    title: 'DB schema: tables; <b>&`x`'
    estimate: 2h
  - id: T-2
    title: Store
    depends_on: [T-1]
    estimate: 30m
  - id: T.2
    title: Twin name
    depends_on: [T-1, T-2]
  - id: end
    title: A keyword
    depends_on: [T-2, T.2]
    estimate: 1d
  - id: T-5
    title: Waits on another plan
    depends_on: [other/T-9, T-1]
checkpoints:
  - id: CP
    title: All done
    after: [end, T-5]
"""


@pytest.mark.parametrize("fmt", g.FORMATS)
def test_the_graph_command_draws_what_the_nodes_draw(repo: Any, fmt: str) -> None:
    repo.plan("other", "id: other\ntitle: Other\ntasks:\n  - id: T-9\n    title: Far\n")
    repo.plan("web", PLAN)
    repo.ok("claim", "web/T-1", "--worker", "w1")
    out = repo.ok("--json", "graph", "web", "--format", fmt).json
    status = repo.ok("--json", "status", "web").json
    states = {t["id"]: t["state"] for t in status["tasks"]}
    workers = {t["id"]: t["worker"] for t in status["tasks"]}
    plan = Plan.from_dict(yamlio.loads(PLAN, "plan.yaml"), "plan.yaml")
    nodes = slow_nodes(plan, states, workers, {"CP": "pending"})
    want = g.analyse(nodes, fmt, title=plan.title)
    assert out["graph"] == want.text
    assert out["critical_path"] == want.critical_path
    assert out["parallel_groups"] == want.parallel_groups
    assert out["execution_order"] == want.execution_order
    text = repo.ok("graph", "web", "--format", fmt).out
    assert text == want.text
    if fmt == "mermaid":
        assert 'T_1["T-1: DB schema#58; tables#59; #60;b#62;#38;#96;x#96; (w1)"]:::claimed' in text
        assert "n_end" in text and "T_2_2" in text


def test_columns_refuse_what_nodes_refuse() -> None:
    """Duplicates and cycles: the same ValueError from either form."""
    for nodes, message in ((
            [g.Node("a", "x", ()), g.Node("b", "y", ()), g.Node("a", "z", ())], "duplicate node id 'a'"),
            ([g.Node("a", "x", ("b",)), g.Node("b", "y", ("a",))], "dependency cycle: a -> b -> a")):
        for form in (nodes, g._columns(nodes)):
            with pytest.raises(ValueError, match=message):
                g.analyse(form, "mermaid")


def test_json_and_text_agree_at_scale(repo: Any) -> None:
    """A plan of 300 tasks in chains: the JSON's graph is the text output."""
    lines = ["id: big", "title: Big", "tasks:"]
    for i in range(300):
        lines += [f"  - id: T-{i:03d}", f"    title: Task {i}"]
        if i >= 3:
            lines.append(f"    depends_on: [T-{i - 3:03d}]")
    repo.plan("big", "\n".join(lines) + "\n")
    data = repo.ok("--json", "graph", "big", "--format", "mermaid").json
    assert data["graph"] == repo.ok("graph", "big", "--format", "mermaid").out
    assert json.dumps(data["execution_order"][:4]) == '["T-000", "T-001", "T-002", "T-003"]'


def reference_order(deps: dict[str, list[str]]) -> list[str] | None:
    """Kahn's order with the smallest free id first, the long way (None on a cycle)."""
    import heapq

    adj = {n: sorted({d for d in ds if d in deps}) for n, ds in deps.items()}
    indegree = {n: len(ds) for n, ds in adj.items()}
    free = [n for n, k in indegree.items() if k == 0]
    heapq.heapify(free)
    order = []
    while free:
        node = heapq.heappop(free)
        order.append(node)
        for other in sorted(adj):
            if node in adj[other]:
                indegree[other] -= 1
                if indegree[other] == 0:
                    heapq.heappush(free, other)
    return order if len(order) == len(adj) else None


@pytest.mark.parametrize("seed", range(40))
def test_the_order_is_kahns_whether_or_not_ids_sort_in_it(seed: int) -> None:
    """The id order is taken as the order when every node sorts after its dependencies; it
    is the order Kahn's algorithm gives then, and otherwise Kahn's runs."""
    rng = random.Random(seed)
    names = [f"T-{i:02d}" for i in range(rng.randint(1, 12))]
    increasing = rng.random() < 0.5
    deps = {n: [d for d in rng.sample(names, rng.randint(0, min(3, len(names)))) if not increasing or d < n] for n in names}
    if rng.random() < 0.2:
        deps[names[0]].append("other/T-9")
    want = reference_order(deps)
    cycle, order, rank = g.cycle_order_rank(deps)
    assert (cycle is None) == (want is not None)
    if want is not None:
        assert order == want == g.topo_order(deps)
        assert list(rank) == sorted(deps) and rank == g.critical_rank(deps)
