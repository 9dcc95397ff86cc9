"""The task graph as SVG, drawn by flowgit: columns are the parallel groups core.graph
computes (everything in a column may run at once), the order within a column reduces edge
crossings (barycentre sweeps), and the critical path is marked. Pure: data in, text out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from flowgit.board.html import esc
from flowgit.core.graph import parallel_groups

NODE_W = 210
NODE_H = 56
COL_GAP = 70
ROW_GAP = 14
MARGIN = 24
TITLE_CHARS = 30


@dataclass(frozen=True)
class GNode:
    id: str
    title: str
    deps: tuple[str, ...]          # ids of other nodes of this graph
    kind: str = "task"             # task | gate
    cls: str = "s-pending"         # the css class that colours it
    label: str = ""                # the text that says what the colour says
    icon: str = ""
    href: str = ""
    critical: bool = False
    note: str = ""                 # a second line: worker, lease, ...


@dataclass(frozen=True)
class Layout:
    pos: Mapping[str, tuple[float, float]]
    width: float
    height: float
    columns: int


def layout(nodes: Sequence[GNode]) -> Layout:
    deps = {n.id: [d for d in n.deps] for n in nodes}
    groups = parallel_groups(deps)
    succ: dict[str, list[str]] = {n.id: [] for n in nodes}
    for n in nodes:
        for d in n.deps:
            if d in succ:
                succ[d].append(n.id)
    index: dict[str, float] = {}
    for col in groups:
        for i, node in enumerate(col):
            index[node] = float(i)
    # two sweeps: each node towards the mean row of its dependencies, then of its dependents
    for neighbours in (deps, succ, deps):
        ordered = groups if neighbours is deps else list(reversed(groups))
        for col in ordered:
            def key(node: str) -> tuple[float, str]:
                near = [index[x] for x in neighbours[node] if x in index]
                return (sum(near) / len(near) if near else index[node], node)
            col.sort(key=key)
            for i, node in enumerate(col):
                index[node] = float(i)
    tallest = max((len(c) for c in groups), default=0)
    pos: dict[str, tuple[float, float]] = {}
    for c, col in enumerate(groups):
        offset = (tallest - len(col)) * (NODE_H + ROW_GAP) / 2  # short columns centred
        for r, node in enumerate(col):
            pos[node] = (MARGIN + c * (NODE_W + COL_GAP), MARGIN + offset + r * (NODE_H + ROW_GAP))
    width = MARGIN * 2 + len(groups) * (NODE_W + COL_GAP) - COL_GAP if groups else MARGIN * 2
    height = MARGIN * 2 + tallest * (NODE_H + ROW_GAP) - ROW_GAP if groups else MARGIN * 2
    return Layout(pos, max(width, 0), max(height, 0), len(groups))


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(nodes: Sequence[GNode], title: str, path: Sequence[str] = ()) -> str:
    """The whole <svg>: one `<g class="node …">` per node, one path per edge; the edges
    between consecutive nodes of `path` (the critical path) are marked."""
    lay = layout(nodes)
    on_path = set(zip(path, path[1:]))
    edges: list[str] = []
    for n in nodes:
        x2, y2 = lay.pos[n.id]
        for d in n.deps:
            if d not in lay.pos:
                continue
            x1, y1 = lay.pos[d]
            sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
            mid = (sx + ex) / 2
            crit = " crit" if (d, n.id) in on_path else ""
            edges.append(f'<path class="edge{crit}" d="M{sx:.0f} {sy:.0f}C{mid:.0f} {sy:.0f} '
                         f'{mid:.0f} {ey:.0f} {ex:.0f} {ey:.0f}"/>')
    shapes: list[str] = []
    for n in nodes:
        x, y = lay.pos[n.id]
        kind = "gate" if n.kind == "gate" else "task"
        classes = f"node {kind} {n.cls}" + (" crit" if n.critical else "")
        if kind == "gate":
            k = 14
            box = (f'<polygon class="box" points="{k},0 {NODE_W - k},0 {NODE_W},{NODE_H / 2:.0f} '
                   f'{NODE_W - k},{NODE_H} {k},{NODE_H} 0,{NODE_H / 2:.0f}"/>')
        else:
            box = f'<rect class="box" width="{NODE_W}" height="{NODE_H}" rx="8"/>'
        crit = " · on the critical path" if n.critical else ""
        tip = f"{n.id}: {n.title} ({n.label}{crit})"
        label = f"{n.icon} {n.label}".strip()
        inner = (f'<title>{esc(tip)}</title>{box}'
                 f'<text class="nid" x="12" y="20">{esc(_short(n.id, 18))}</text>'
                 f'<text class="nst" x="{NODE_W - 10}" y="20" text-anchor="end">{esc(label)}</text>'
                 f'<text class="ntl" x="12" y="40">{esc(_short(n.title, TITLE_CHARS))}</text>')
        if n.critical:
            inner += f'<rect class="critbar" x="0" y="{NODE_H - 4}" width="{NODE_W}" height="4" rx="2"/>'
        if n.href:
            inner = f'<a href="{esc(n.href)}">{inner}</a>'
        shapes.append(f'<g class="{esc(classes)}" data-id="{esc(n.id)}" '
                      f'transform="translate({x:.0f},{y:.0f})">{inner}</g>')
    w, h = max(lay.width, 1), max(lay.height, 1)
    return (f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" role="img" '
            f'viewBox="0 0 {w:.0f} {h:.0f}" data-width="{w:.0f}" data-height="{h:.0f}" '
            f'aria-label="{esc(title)}"><g class="viewport"><g class="edges">{"".join(edges)}</g>'
            f'<g class="nodes">{"".join(shapes)}</g></g></svg>')
