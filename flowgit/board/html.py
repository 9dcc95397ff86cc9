"""HTML building blocks. Every value that came from `.flow/`, git or a request goes through
`esc` (or `attr`) before it is part of a page: there is no other way in."""
from __future__ import annotations

import html
import time
from typing import Iterable

STATE_LABEL = {
    "pending": "waiting", "ready": "ready", "claimed": "claimed", "in_progress": "in progress",
    "retry_wait": "retry wait", "done": "done", "failed": "failed", "skipped": "skipped",
    "blocked": "blocked", "review": "in review",
}
GATE_LABEL = {"pending": "gate closed", "reached": "awaiting review", "approved": "approved",
              "blocked": "blocked"}
# a glyph beside each label, so that a state reads without colour and at a glance
STATE_ICON = {
    "pending": "◌", "ready": "●", "claimed": "▶", "in_progress": "▶", "retry_wait": "↻",
    "done": "✓", "failed": "✕", "skipped": "⤼", "blocked": "⊘", "review": "⇄",
    "reached": "⚑", "approved": "✓",
}
PHASE_LABEL = {"plan_review": "plan review"}


def esc(value: object) -> str:
    """Text content: every value from outside is escaped, quotes included."""
    return html.escape("" if value is None else str(value), quote=True)


def state_pill(state: str, gate: bool = False) -> str:
    label = (GATE_LABEL if gate else STATE_LABEL).get(state, state)
    icon = STATE_ICON.get(state, "•")
    return (f'<span class="pill s-{esc(state)}"><span aria-hidden="true">{icon}</span> '
            f'{esc(label)}</span>')


def phase_pill(phase: str) -> str:
    return f'<span class="phase p-{esc(phase)}">{esc(PHASE_LABEL.get(phase, phase))}</span>'


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def when(ts: float | None) -> str:
    """A <time> readable as UTC; the page's script shows it in the reader's local time."""
    if ts is None:
        return ""
    return (f'<time datetime="{iso(ts)}" data-ts="{ts:.3f}">'
            f'{esc(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)))}</time>')


def span(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def countdown(until: float, now: float, suffix: str) -> str:
    """Time left until `until`, kept current by the page's script (data-until)."""
    return (f'<time class="countdown" datetime="{iso(until)}" data-until="{until:.3f}" '
            f'data-suffix="{esc(suffix)}">{esc(span(until - now))} {esc(suffix)}</time>')


def link(href: str, text: str, cls: str = "") -> str:
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<a href="{esc(href)}"{klass}>{esc(text)}</a>'


def page(title: str, body: str, crumbs: Iterable[tuple[str, str]] = (), tabs: str = "",
         version: str = "") -> str:
    trail = "".join(f'<span class="sep" aria-hidden="true">/</span>{link(href, text)}' if href
                    else f'<span class="sep" aria-hidden="true">/</span><span>{esc(text)}</span>'
                    for href, text in crumbs)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)} · flowgit board</title>'
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/board.css">'
        '<script src="/static/board.js" defer></script></head>'
        f'<body data-version="{esc(version)}">'
        '<header class="top"><a class="brand" href="/"><span class="logo" aria-hidden="true">'
        '◆</span> flowgit board</a>'
        f'<nav class="crumbs" aria-label="Breadcrumb">{trail}</nav>'
        '<span id="live" class="live" role="status" aria-live="polite" title="follows the '
        'repository without reloading">live</span></header>'
        f'<main id="main">{tabs}{body}</main></body></html>\n'
    )


def plan_tabs(plan_id: str, current: str) -> str:
    base = f"/plan/{plan_id}"
    items = [("board", base, "Board"), ("graph", f"{base}/graph", "Graph"),
             ("timeline", f"{base}/timeline", "Timeline"), ("review", f"{base}/review", "Review")]
    out = []
    for key, href, text in items:
        cur = ' aria-current="page"' if key == current else ""
        out.append(f'<a href="{esc(href)}"{cur}>{esc(text)}</a>')
    return f'<nav class="tabs" aria-label="Plan views">{"".join(out)}</nav>'
