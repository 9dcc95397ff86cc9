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
    for node in sorted(deps):
        wanted = deps[node]
        if isinstance(wanted, str):
            raise TypeError(f"deps of {node!r} must be a sequence of ids, not a string")
        if len(wanted) == 1:  # most tasks wait on one or none
            (only,) = wanted
            adj[node] = [only] if only in deps else []
        else:
            adj[node] = sorted({d for d in wanted if d in deps}) if wanted else []
    succ: dict[str, list[str]] = {node: [] for node in adj}
    for node, known in adj.items():  # nodes in id order, so each succ list comes out sorted
        for dep in known:
            succ[dep].append(node)
    if all(known[-1] < node for node, known in adj.items() if known):
        # every node sorts after its dependencies: the id order is the order (the smallest id
        # left is always free), and there is no cycle
        return _Graph(adj, succ, list(adj))
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
    deps = graph.deps
    for node in _require_order(graph):
        known = deps[node]
        if not known:
            level[node] = 0
        elif len(known) == 1:
            level[node] = level[known[0]] + 1
        else:
            level[node] = 1 + max([level[d] for d in known])
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
    succ, isfinite = graph.succ, math.isfinite
    for node in reversed(_require_order(graph)):
        weight = 1.0 if weights is None else float(weights.get(node, 1.0))
        if not isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {node!r} must be a finite number >= 0, not {weight}")
        after = succ[node]
        if not after:
            rank[node] = weight + 0.0
        elif len(after) == 1:
            rank[node] = weight + rank[after[0]]
        else:
            rank[node] = weight + max([rank[s] for s in after])
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
    return None, list(graph.order), {node: rank[node] for node in graph.deps}  # deps: in id order


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
    """The graph and its nodes' fields, as columns by id (no object per node)."""
    ids: list[str]  # in the order given
    title: dict[str, str]
    kind: dict[str, str]
    state: dict[str, str]
    worker: dict[str, str | None]
    graph: _Graph
    order: list[str]
    level: dict[str, int]
    critical: list[str]
    hours: dict[str, float]


@dataclass(frozen=True)
class Columns:
    """A graph's nodes as columns, index by index (what `Node` holds, without an object per
    node): what the graph command builds from a plan's rows."""
    ids: Sequence[str]
    titles: Sequence[str]
    deps: Sequence[Sequence[str]]
    kinds: Sequence[str]
    states: Sequence[str]
    hours: Sequence[float]
    workers: Sequence[str | None]


def _columns(nodes: Sequence[Node]) -> Columns:
    return Columns([n.id for n in nodes], [n.title for n in nodes], [n.deps for n in nodes],
                   [n.kind for n in nodes], [n.state for n in nodes], [n.hours for n in nodes],
                   [n.worker for n in nodes])


def _view(c: Columns) -> _View:
    ids = list(c.ids)
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for node_id in ids:
            if node_id in seen:
                raise ValueError(f"duplicate node id {node_id!r}")
            seen.add(node_id)
    # checkpoints are gates, not work: they weigh nothing on the critical path or the gantt
    hours = {i: 0.0 if k == "checkpoint" else h for i, k, h in zip(ids, c.kinds, c.hours)}
    graph = _build(dict(zip(ids, c.deps)))
    rank = _rank(graph, hours)
    return _View(
        ids=ids,
        title=dict(zip(ids, c.titles)),
        kind=dict(zip(ids, c.kinds)),
        state=dict(zip(ids, c.states)),
        worker=dict(zip(ids, c.workers)),
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


def analyse(nodes: Sequence[Node] | Columns, fmt: str, *, title: str = "") -> Analysis:
    """`render` and the graph's facts from one build of the graph (at 50,000 tasks each
    build costs a fifth of a second); the nodes as `Node`s or as `Columns`."""
    renderers = {"mermaid": _mermaid, "dot": _dot, "ascii": _ascii, "gantt": _gantt}
    if fmt not in renderers:
        raise ValueError(f"unknown graph format {fmt!r}: use {', '.join(FORMATS)}")
    view = _view(nodes if isinstance(nodes, Columns) else _columns(nodes))
    return Analysis(renderers[fmt](view, _clean(title)), list(view.critical), _groups(view.level),
                    list(view.order))


def _clean(text: str) -> str:
    """One line, no control characters (a title must not drive the terminal)."""
    if text.isprintable():  # every character _CONTROL matches is unprintable
        return text
    return _CONTROL.sub(" ", text)


def _hours(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _captions(view: _View) -> dict[str, str]:
    """Each node's title, and its worker in brackets, on one line."""
    out = {}
    worker = view.worker
    for node_id, title in view.title.items():
        if not title.isprintable():
            title = _CONTROL.sub(" ", title)
        who = worker[node_id]
        out[node_id] = f"{title} ({_clean(who)})" if who else title
    return out


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
    ordered = sorted(ids)
    joined = "\n".join(ordered)
    if "\n" in "".join(ordered):
        bases = [node.translate(_ID_CHARS) for node in ordered]
    else:  # one translation of them all (a newline is no id's character: it splits them again)
        bases = joined.translate(_ID_CHARS_JOINED).split("\n") if ordered else []
    keywords = _MERMAID_KEYWORDS
    if len(set(bases)) == len(bases) and "" not in bases and \
            keywords.isdisjoint("\n".join(bases).lower().split("\n")):
        return dict(zip(ordered, bases))  # every id's own name: none taken twice, none reserved
    out: dict[str, str] = {}
    used: set[str] = set()
    for node, base in zip(ordered, bases):
        if not base:
            base = "_"
        if base.lower() in keywords:
            base = f"n_{base}"
        candidate, n = base, 1
        while candidate in used:  # "a.b" and "a-b" both sanitize to "a_b"
            n += 1
            candidate = f"{base}_{n}"
        used.add(candidate)
        out[node] = candidate
    return out


class _IdCharsJoined(_IdChars):
    def __missing__(self, code: int) -> str:
        return "\n" if code == 10 else super().__missing__(code)


_ID_CHARS_JOINED = _IdCharsJoined()


_MERMAID_CODES = {c: f"#{ord(c)};" for c in "#:;<>&`"} | {'"': "#quot;"}
_MERMAID_TABLE = str.maketrans(_MERMAID_CODES)


def _mermaid_text(text: str) -> str:
    """User text as mermaid entity codes: quotes end a label, ':' and ';' end gantt fields,
    '#' starts a comment or a code, and the rest would be read as HTML."""
    return text.translate(_MERMAID_TABLE)


def _class_name(state: str) -> str:
    return state if state in _STYLE else "state_" + re.sub(r"[^A-Za-z0-9_]", "_", state)


_MERMAID_SPECIAL = re.compile('[#:;<>&`"]')


def _mermaid_texts(texts: dict[str, str]) -> dict[str, str]:
    """_mermaid_text of each value; one search of them all when none needs it."""
    if _MERMAID_SPECIAL.search("\n".join(texts.values())) is None:
        return texts
    return {k: v.translate(_MERMAID_TABLE) for k, v in texts.items()}


def _mermaid(view: _View, title: str) -> str:
    ids = _mermaid_ids(view.ids)
    lines: list[str] = []
    if title:
        lines += ["---", f"title: {json.dumps(title, ensure_ascii=False)}", "---"]
    lines.append("flowchart TD")
    names = _mermaid_texts({i: i for i in view.ids})
    captions = _mermaid_texts(_captions(view))
    classes = {state: _class_name(state) for state in set(view.state.values())}
    kind, state = view.kind, view.state
    lines += [f'    {ids[i]}{{{{"{names[i]}: {captions[i]}"}}}}:::{classes[state[i]]}'
              if kind[i] == "checkpoint" else f'    {ids[i]}["{names[i]}: {captions[i]}"]:::{classes[state[i]]}'
              for i in view.order]
    critical_edges = _critical_edges(view)
    thick: list[str] = []
    deps = view.graph.deps
    index = 0
    for node_id in view.order:
        to = ids[node_id]
        for dep in deps[node_id]:
            lines.append(f"    {ids[dep]} --> {to}")
            if (dep, node_id) in critical_edges:
                thick.append(str(index))
            index += 1
    for name in sorted(classes):
        fill, stroke, dashed = _STYLE.get(name, _OTHER_STYLE)
        dash = ",stroke-dasharray:5 5" if dashed else ""
        lines.append(
            f"    classDef {classes[name]} fill:{fill},stroke:{stroke},color:#000{dash}"
        )
    if view.critical:
        lines.append("    classDef critical stroke-width:4px")
        lines.append(f"    class {','.join(ids[n] for n in view.critical)} critical")
    if thick:
        lines.append(f"    linkStyle {','.join(thick)} stroke:{_CRITICAL_COLOR},stroke-width:3px")
    lines.append("")
    return "\n".join(lines)


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
    captions = _captions(view)
    for node_id in view.order:
        state = view.state[node_id]
        fill, stroke, dashed = _STYLE.get(state, _OTHER_STYLE)
        label = _dot_quote(f"{node_id}\n{captions[node_id]}")
        attrs = [f"label={label}", f'fillcolor="{fill}"', f'color="{stroke}"']
        if view.kind[node_id] == "checkpoint":
            attrs.append("shape=hexagon")
        if dashed:
            attrs.append('style="rounded,filled,dashed"')
        if node_id in critical:
            attrs.append("penwidth=3")
        attrs.append(f"tooltip={_dot_quote(state)}")
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
    if not view.ids:
        return "\n".join([*lines, "(no tasks)"]) + "\n"
    critical = set(view.critical)
    captions = _captions(view)
    state_width = max(len(_clean(s)) for s in view.state.values()) + 2
    id_width = max(len(n) for n in view.ids)
    for number, group in enumerate(_groups(view.level), start=1):
        lines.append(f"Group {number} (parallel):" if len(group) > 1 else f"Group {number}:")
        for node_id in group:
            mark = "*" if node_id in critical else " "
            line = f"  {mark} {'[' + _clean(view.state[node_id]) + ']':<{state_width}} {node_id:<{id_width}}"
            line += f"  {captions[node_id]}"
            if view.graph.deps[node_id]:
                line += f"  <- {', '.join(view.graph.deps[node_id])}"
            lines.append(line.rstrip())
    total = sum(view.hours[n] for n in view.critical)
    lines.append(f"Critical path: {' -> '.join(view.critical)} ({_hours(total)} h)")
    lines.append(f"Execution order: {', '.join(view.order)}")
    return "\n".join(lines) + "\n"


# gantt -----------------------------------------------------------------------------------


def _gantt(view: _View, title: str) -> str:
    ids = _mermaid_ids(view.ids)
    captions = _captions(view)
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
            state = view.state[node_id]
            tags = []
            if state in _FINISHED:
                tags.append("done")
            elif state in _ACTIVE:
                tags.append("active")
            if node_id in critical:
                tags.append("crit")
            if view.kind[node_id] == "checkpoint":
                tags.append("milestone")
            name = _mermaid_text(f"{node_id} {captions[node_id]}")
            fields = ", ".join([*tags, ids[node_id], str(start[node_id]), str(end[node_id])])
            lines.append(f"    {name} :{fields}")
    return "\n".join(lines) + "\n"


__all__ = [
    "FORMATS",
    "Columns",
    "Node",
    "critical_path",
    "critical_rank",
    "find_cycle",
    "parallel_groups",
    "render",
    "topo_order",
]
