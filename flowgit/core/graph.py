"""The task DAG of one plan: cycles, order, parallel groups, critical path, and its views.

Pure functions over plain data. A graph is a mapping from node id to the ids it depends on;
ids that are not keys of the mapping are ignored (cross-plan references are the caller's).
Every result is deterministic: ties are broken by id, so the same input gives the same bytes.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

FORMATS = ("mermaid", "dot", "ascii", "gantt")


@dataclass(frozen=True)
class Node:
    """One task or checkpoint as the views need it."""

    id: str
    title: str
    deps: tuple[str, ...]
    kind: str = "task"
    state: str = "pending"
    priority: str = "medium"
    hours: float = 1.0
    worker: str | None = None


@dataclass(frozen=True)
class _Graph:
    deps: dict[str, list[str]]  # node -> known deps, unique and sorted
    succ: dict[str, list[str]]  # node -> dependents, sorted
    order: list[str] | None  # topological order, None when there is a cycle


def _build(deps: Mapping[str, Sequence[str]]) -> _Graph:
    adj: dict[str, list[str]] = {}
    succ: dict[str, list[str]] = {}
    for node in sorted(deps):
        wanted = deps[node]
        if isinstance(wanted, str):
            raise TypeError(f"deps of {node!r} must be a sequence of ids, not a string")
        adj[node] = sorted({d for d in wanted if d in deps})
        succ[node] = []
    for node, known in adj.items():  # nodes in id order, so each succ list comes out sorted
        for dep in known:
            succ[dep].append(node)
    indegree = {node: len(known) for node, known in adj.items()}
    available = [node for node, n in indegree.items() if n == 0]
    heapq.heapify(available)
    order: list[str] = []
    while available:
        node = heapq.heappop(available)
        order.append(node)
        for dependent in succ[node]:
            indegree[dependent] -= 1
            if indegree[dependent] == 0:
                heapq.heappush(available, dependent)
    return _Graph(adj, succ, order if len(order) == len(adj) else None)


def _cycle(adj: Mapping[str, Sequence[str]]) -> list[str] | None:
    done: set[str] = set()
    for root in adj:  # adj keys are sorted
        if root in done:
            continue
        path = [root]
        on_path = {root: 0}
        stack = [iter(adj[root])]
        while stack:
            for nxt in stack[-1]:
                if nxt in on_path:
                    cycle = path[on_path[nxt] :]
                    start = cycle.index(min(cycle))
                    cycle = cycle[start:] + cycle[:start]
                    return [*cycle, cycle[0]]
                if nxt not in done:
                    on_path[nxt] = len(path)
                    path.append(nxt)
                    stack.append(iter(adj[nxt]))
                    break
            else:
                node = path.pop()
                del on_path[node]
                done.add(node)
                stack.pop()
    return None


def _require_order(graph: _Graph) -> list[str]:
    if graph.order is None:
        cycle = _cycle(graph.deps) or []
        raise ValueError(f"dependency cycle: {' -> '.join(cycle)}")
    return graph.order


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as [a, b, ..., a] (each needs the next), or None.

    The search starts from the smallest id and follows deps in id order; the cycle found is
    rotated to begin at its smallest id.
    """
    return _cycle(_build(deps).deps)


def topo_order(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Deps before dependents; among nodes available at once, the smallest id first."""
    return list(_require_order(_build(deps)))


def _levels(graph: _Graph) -> dict[str, int]:
    level: dict[str, int] = {}
    for node in _require_order(graph):
        level[node] = 1 + max((level[d] for d in graph.deps[node]), default=-1)
    return level


def parallel_groups(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Group k holds the nodes whose longest chain of deps has k edges, each group sorted."""
    return _groups(_levels(_build(deps)))


def _groups(level: Mapping[str, int]) -> list[list[str]]:
    groups: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for node in sorted(level):
        groups[level[node]].append(node)
    return groups


def _rank(graph: _Graph, weights: Mapping[str, float] | None) -> dict[str, float]:
    rank: dict[str, float] = {}
    for node in reversed(_require_order(graph)):
        weight = 1.0 if weights is None else float(weights.get(node, 1.0))
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {node!r} must be a finite number >= 0, not {weight}")
        rank[node] = weight + max((rank[s] for s in graph.succ[node]), default=0.0)
    return rank


def critical_rank(
    deps: Mapping[str, Sequence[str]], weights: Mapping[str, float] | None = None
) -> dict[str, float]:
    """For each node (in id order), the heaviest path from it to any sink, itself included.

    Weights default to 1 per node; a node missing from `weights` weighs 1.
    """
    rank = _rank(_build(deps), weights)
    return {node: rank[node] for node in sorted(rank)}


def cycle_order_rank(deps: Mapping[str, Sequence[str]], weights: Mapping[str, float] | None = None
                     ) -> tuple[list[str] | None, list[str], dict[str, float]]:
    """find_cycle, topo_order and critical_rank of one graph, built once (a third of the time
    at 50,000 tasks); with a cycle, the order and ranks are empty."""
    graph = _build(deps)
    if graph.order is None:
        return _cycle(graph.deps), [], {}
    rank = _rank(graph, weights)
    return None, list(graph.order), {node: rank[node] for node in sorted(rank)}


def _critical(graph: _Graph, rank: Mapping[str, float]) -> list[str]:
    def best(candidates: Sequence[str]) -> str | None:
        choice: str | None = None
        for node in candidates:  # sorted, so strict > keeps the smallest id on a tie
            if choice is None or rank[node] > rank[choice]:
                choice = node
        return choice

    path: list[str] = []
    node = best([n for n, known in graph.deps.items() if not known])
    while node is not None:
        path.append(node)
        node = best(graph.succ[node])
    return path


def critical_path(
    deps: Mapping[str, Sequence[str]], weights: Mapping[str, float] | None = None
) -> list[str]:
    """The heaviest path from a source to a sink (weights default to 1 per node).

    Ties go to the smallest id: first among the sources, then at each step among the
    dependents that keep the path heaviest.
    """
    graph = _build(deps)
    return _critical(graph, _rank(graph, weights))


# --- views -------------------------------------------------------------------------------

_STYLE: dict[str, tuple[str, str, bool]] = {  # state -> fill, stroke, dashed
    "pending": ("#eceff1", "#90a4ae", False),
    "ready": ("#fff59d", "#f9a825", False),
    "claimed": ("#bbdefb", "#1e88e5", False),
    "in_progress": ("#90caf9", "#1565c0", False),
    "review": ("#90caf9", "#1565c0", True),
    "retry_wait": ("#ffe0b2", "#ef6c00", False),
    "done": ("#c8e6c9", "#2e7d32", False),
    "skipped": ("#f5f5f5", "#9e9e9e", True),
    "failed": ("#ffcdd2", "#c62828", False),
    "blocked": ("#ffcdd2", "#c62828", True),
    "reached": ("#b3e5fc", "#0277bd", False),
    "approved": ("#c8e6c9", "#2e7d32", False),
}
_OTHER_STYLE = ("#ffffff", "#616161", False)
_CRITICAL_COLOR = "#d32f2f"
_ACTIVE = frozenset({"claimed", "in_progress", "reached"})
_FINISHED = frozenset({"done", "skipped", "approved"})
_MERMAID_KEYWORDS = frozenset(
    {
        "end", "graph", "flowchart", "subgraph", "style", "class", "classdef", "click",
        "linkstyle", "default", "direction", "call", "href", "interpolate", "acctitle",
        "accdescr",
    }
)  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class _View:
    nodes: dict[str, Node]
    graph: _Graph
    order: list[str]
    level: dict[str, int]
    critical: list[str]
    hours: dict[str, float]


def _view(nodes: Sequence[Node]) -> _View:
    by_id: dict[str, Node] = {}
    for node in nodes:
        if node.id in by_id:
            raise ValueError(f"duplicate node id {node.id!r}")
        by_id[node.id] = node
    # checkpoints are gates, not work: they weigh nothing on the critical path or the gantt
    hours = {n.id: 0.0 if n.kind == "checkpoint" else n.hours for n in nodes}
    graph = _build({n.id: n.deps for n in nodes})
    rank = _rank(graph, hours)
    return _View(
        nodes=by_id,
        graph=graph,
        order=_require_order(graph),
        level=_levels(graph),
        critical=_critical(graph, rank),
        hours=hours,
    )


def render(nodes: Sequence[Node], fmt: str, *, title: str = "") -> str:
    """The graph as mermaid, dot, ascii or gantt text, ending with a newline."""
    return analyse(nodes, fmt, title=title).text


@dataclass(frozen=True)
class Analysis:
    """One pass over a graph: its text, and what `critical_path`, `parallel_groups` and
    `topo_order` give for the same nodes (with their hours, checkpoints weighing nothing)."""

    text: str
    critical_path: list[str]
    parallel_groups: list[list[str]]
    execution_order: list[str]


def analyse(nodes: Sequence[Node], fmt: str, *, title: str = "") -> Analysis:
    """`render` and the graph's facts from one build of the graph (at 50,000 tasks each
    build costs a fifth of a second)."""
    renderers = {"mermaid": _mermaid, "dot": _dot, "ascii": _ascii, "gantt": _gantt}
    if fmt not in renderers:
        raise ValueError(f"unknown graph format {fmt!r}: use {', '.join(FORMATS)}")
    view = _view(nodes)
    return Analysis(renderers[fmt](view, _clean(title)), list(view.critical), _groups(view.level),
                    list(view.order))


def _clean(text: str) -> str:
    """One line, no control characters (a title must not drive the terminal)."""
    if text.isprintable():  # every character _CONTROL matches is unprintable
        return text
    return _CONTROL.sub(" ", text)


def _hours(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _caption(node: Node) -> str:
    title = _clean(node.title)
    return f"{title} ({_clean(node.worker)})" if node.worker else title


def _critical_edges(view: _View) -> set[tuple[str, str]]:
    return set(pairwise(view.critical))


def _edges(view: _View) -> list[tuple[str, str]]:
    return [(dep, node) for node in view.order for dep in view.graph.deps[node]]


# mermaid ---------------------------------------------------------------------------------


class _IdChars(dict[int, str]):
    """`str.translate` table: a letter, digit or `_` stays, anything else is `_` (as
    `re.sub(r"[^A-Za-z0-9_]", "_", id)`, in C)."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        self[code] = out = char if char.isascii() and (char.isalnum() or char == "_") else "_"
        return out


_ID_CHARS = _IdChars()


def _mermaid_ids(ids: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    used: set[str] = set()
    for node in sorted(ids):
        base = node.translate(_ID_CHARS) or "_"
        if base.lower() in _MERMAID_KEYWORDS:
            base = f"n_{base}"
        candidate, n = base, 1
        while candidate in used:  # "a.b" and "a-b" both sanitize to "a_b"
            n += 1
            candidate = f"{base}_{n}"
        used.add(candidate)
        out[node] = candidate
    return out


_MERMAID_CODES = {c: f"#{ord(c)};" for c in "#:;<>&`"} | {'"': "#quot;"}
_MERMAID_TABLE = str.maketrans(_MERMAID_CODES)


def _mermaid_text(text: str) -> str:
    """User text as mermaid entity codes: quotes end a label, ':' and ';' end gantt fields,
    '#' starts a comment or a code, and the rest would be read as HTML."""
    return text.translate(_MERMAID_TABLE)


def _class_name(state: str) -> str:
    return state if state in _STYLE else "state_" + re.sub(r"[^A-Za-z0-9_]", "_", state)


def _mermaid(view: _View, title: str) -> str:
    ids = _mermaid_ids(list(view.nodes))
    lines: list[str] = []
    if title:
        lines += ["---", f"title: {json.dumps(title, ensure_ascii=False)}", "---"]
    lines.append("flowchart TD")
    for node_id in view.order:
        node = view.nodes[node_id]
        label = f"{_mermaid_text(node.id)}: {_mermaid_text(_caption(node))}"
        shape = f'{{{{"{label}"}}}}' if node.kind == "checkpoint" else f'["{label}"]'
        lines.append(f"    {ids[node_id]}{shape}:::{_class_name(node.state)}")
    critical_edges = _critical_edges(view)
    thick: list[str] = []
    for index, (dep, node_id) in enumerate(_edges(view)):
        lines.append(f"    {ids[dep]} --> {ids[node_id]}")
        if (dep, node_id) in critical_edges:
            thick.append(str(index))
    for state in sorted({n.state for n in view.nodes.values()}):
        fill, stroke, dashed = _STYLE.get(state, _OTHER_STYLE)
        dash = ",stroke-dasharray:5 5" if dashed else ""
        lines.append(
            f"    classDef {_class_name(state)} fill:{fill},stroke:{stroke},color:#000{dash}"
        )
    if view.critical:
        lines.append("    classDef critical stroke-width:4px")
        lines.append(f"    class {','.join(ids[n] for n in view.critical)} critical")
    if thick:
        lines.append(f"    linkStyle {','.join(thick)} stroke:{_CRITICAL_COLOR},stroke-width:3px")
    return "\n".join(lines) + "\n"


# dot -------------------------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _dot(view: _View, title: str) -> str:
    lines = ["digraph flowgit {"]
    if title:
        lines.append(f"    label={_dot_quote(title)};")
        lines.append("    labelloc=t;")
    lines.append("    rankdir=TB;")
    lines.append('    node [shape=box, style="rounded,filled", fontname="Helvetica"];')
    lines.append('    edge [color="#607d8b"];')
    critical = set(view.critical)
    for node_id in view.order:
        node = view.nodes[node_id]
        fill, stroke, dashed = _STYLE.get(node.state, _OTHER_STYLE)
        label = _dot_quote(f"{node.id}\n{_caption(node)}")
        attrs = [f"label={label}", f'fillcolor="{fill}"', f'color="{stroke}"']
        if node.kind == "checkpoint":
            attrs.append("shape=hexagon")
        if dashed:
            attrs.append('style="rounded,filled,dashed"')
        if node_id in critical:
            attrs.append("penwidth=3")
        attrs.append(f"tooltip={_dot_quote(node.state)}")
        lines.append(f"    {_dot_quote(node_id)} [{', '.join(attrs)}];")
    critical_edges = _critical_edges(view)
    for dep, node_id in _edges(view):
        bold = (
            f' [color="{_CRITICAL_COLOR}", penwidth=2.5, style=bold]'
            if (dep, node_id) in critical_edges
            else ""
        )
        lines.append(f"    {_dot_quote(dep)} -> {_dot_quote(node_id)}{bold};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ascii -----------------------------------------------------------------------------------


def _ascii(view: _View, title: str) -> str:
    lines: list[str] = [title] if title else []
    if not view.nodes:
        return "\n".join([*lines, "(no tasks)"]) + "\n"
    critical = set(view.critical)
    state_width = max(len(_clean(n.state)) for n in view.nodes.values()) + 2
    id_width = max(len(n) for n in view.nodes)
    for number, group in enumerate(_groups(view.level), start=1):
        lines.append(f"Group {number} (parallel):" if len(group) > 1 else f"Group {number}:")
        for node_id in group:
            node = view.nodes[node_id]
            mark = "*" if node_id in critical else " "
            line = f"  {mark} {'[' + _clean(node.state) + ']':<{state_width}} {node_id:<{id_width}}"
            line += f"  {_caption(node)}"
            if view.graph.deps[node_id]:
                line += f"  <- {', '.join(view.graph.deps[node_id])}"
            lines.append(line.rstrip())
    total = sum(view.hours[n] for n in view.critical)
    lines.append(f"Critical path: {' -> '.join(view.critical)} ({_hours(total)} h)")
    lines.append(f"Execution order: {', '.join(view.order)}")
    return "\n".join(lines) + "\n"


# gantt -----------------------------------------------------------------------------------


def _gantt(view: _View, title: str) -> str:
    ids = _mermaid_ids(list(view.nodes))
    # whole seconds: mermaid reads `dateFormat X` timestamps, and fractions break it
    end: dict[str, int] = {}
    start: dict[str, int] = {}
    for node_id in view.order:
        start[node_id] = max((end[d] for d in view.graph.deps[node_id]), default=0)
        end[node_id] = start[node_id] + round(view.hours[node_id] * 3600)
    critical = set(view.critical)
    lines = ["gantt"]
    if title:
        lines.append(f"    title {_mermaid_text(title)}")
    lines += ["    dateFormat X", "    axisFormat %H:%M", "    todayMarker off"]
    for number, group in enumerate(_groups(view.level), start=1):
        lines.append(f"    section Group {number}")
        for node_id in sorted(group, key=lambda n: (start[n], n)):
            node = view.nodes[node_id]
            tags = []
            if node.state in _FINISHED:
                tags.append("done")
            elif node.state in _ACTIVE:
                tags.append("active")
            if node_id in critical:
                tags.append("crit")
            if node.kind == "checkpoint":
                tags.append("milestone")
            name = _mermaid_text(f"{node.id} {_caption(node)}")
            fields = ", ".join([*tags, ids[node_id], str(start[node_id]), str(end[node_id])])
            lines.append(f"    {name} :{fields}")
    return "\n".join(lines) + "\n"


__all__ = [
    "FORMATS",
    "Node",
    "critical_path",
    "critical_rank",
    "find_cycle",
    "parallel_groups",
    "render",
    "topo_order",
]
