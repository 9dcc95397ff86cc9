"""The board's pages: each reads the repository through the store (as `status` does) and
returns one HTML document. Nothing here writes to the repository."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from flowgit import git, git_state
from flowgit.board import svg
from flowgit.board.html import (
    STATE_ICON,
    STATE_LABEL,
    GATE_LABEL,
    countdown,
    esc,
    link,
    page,
    phase_pill,
    plan_tabs,
    state_pill,
    when,
)
from flowgit.clock import wall_now
from flowgit.core.events import Event, canonical
from flowgit.core.fold import PlanState, TaskView
from flowgit.core.model import Plan, Task
from flowgit.errors import FlowError, NotFound
from flowgit.formats.yamlio import MAX_YAML_BYTES
from flowgit.ids import is_valid_id
from flowgit.store.repo import FlowRepo, iter_events_all

BLOB = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
TIMELINE_LIMIT = 400
LOG_TAIL = 64 * 1024

COLUMNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("waiting", "Waiting", ("pending",)),
    ("ready", "Ready", ("ready",)),
    ("running", "Claimed / in progress", ("claimed", "in_progress", "review")),
    ("retry", "Retry wait", ("retry_wait",)),
    ("done", "Done", ("done",)),
    ("stopped", "Failed / blocked / skipped", ("failed", "blocked", "skipped")),
)


@dataclass
class Ctx:
    """One request's view of the repository: a fresh FlowRepo, one `now`."""

    repo: FlowRepo
    version: str
    now: float = field(default_factory=wall_now)
    deadlines: Callable[[str, Sequence[float]], None] = lambda plan, ds: None
    commits: Callable[[FlowRepo, str], Mapping[str, str]] = lambda repo, plan: {}

    def state(self, plan_id: str) -> PlanState:
        """The plan's state now; its lease ends and retry times go to the live tag, which
        changes when one passes (an expired lease changes a state with no write)."""
        state = self.repo.state(plan_id, self.now)
        due = [v.lease_until for v in state.tasks.values() if v.lease_until is not None]
        due += [v.retry_at for v in state.tasks.values() if v.retry_at is not None]
        self.deadlines(plan_id, due)
        return state


def _deps(plan: Plan) -> dict[str, tuple[str, ...]]:
    deps = {t.id: t.depends_on for t in plan.tasks}
    deps.update({c.id: c.after for c in plan.checkpoints})
    return deps


def _stale(repo: FlowRepo, plan_id: str, state: PlanState) -> bool:
    from flowgit.core.rules import Facts, is_stale

    cfg = repo.config
    if not (cfg.approvals_required > 0 or state.approvals):
        return False
    from flowgit.store.planpin import moved  # format 2: the recorded plan against the default branch's

    return is_stale(state, Facts(repo.load_plan(plan_id).hash, cfg.approvals_required,
                                 cfg.auto_approve, cfg.reset_on_change, moved=moved(repo, plan_id)))


def _progress(pct: int, label: str) -> str:
    return (f'<div class="progress"><progress max="100" value="{pct}" aria-label="{esc(label)}">'
            f'{pct}%</progress><span class="pct">{pct}%</span></div>')


# ----- plans ---------------------------------------------------------------------------------

def plans_page(ctx: Ctx) -> str:
    repo = ctx.repo
    repo.require_init()
    rows: list[str] = []
    ids = repo.plan_ids()
    for pid in ids:
        try:
            loaded = repo.load_plan(pid)
            state = ctx.state(pid)
        except FlowError as exc:
            rows.append(f'<tr class="broken"><th scope="row">{link(f"/plan/{pid}", pid, "pid")}</th>'
                        f'<td colspan="6" class="error">{esc(exc.message)}</td></tr>')
            continue
        plan = loaded.plan
        counts = state.counts
        total = len(state.tasks)
        finished = counts["done"] + counts["skipped"]
        waits = sorted({ref.partition("/")[0] for ref in state.external})
        flags = []
        if state.stalled:
            flags.append('<span class="flag warn">stalled</span>')
        if _stale(repo, pid, state):
            flags.append('<span class="flag warn">approval stale</span>')
        parent = link(f"/plan/{plan.parent}", plan.parent) if plan.parent and is_valid_id(plan.parent) \
            else esc(plan.parent or "—")
        wait_html = ", ".join(link(f"/plan/{w}", w) if w in ids else esc(w) for w in waits) or "—"
        rows.append(
            f'<tr data-plan="{esc(pid)}"><th scope="row">{link(f"/plan/{pid}", pid, "pid")}'
            f'<div class="ptitle">{esc(plan.title)}</div></th>'
            f'<td>{phase_pill(state.phase)} {"".join(flags)}</td>'
            f'<td class="wide">{_progress(state.progress, f"{pid} progress")}</td>'
            f'<td class="num"><span class="big">{finished}</span>/{total}</td>'
            f'<td class="counts">{_count_chips(counts)}</td>'
            f'<td>{parent}</td><td>{wait_html}</td></tr>')
    if not ids:
        body = ('<section class="empty"><h1>No plans yet</h1><p>Create one with '
                '<code>flowgit plan new NAME</code>; it shows here at once.</p></section>')
    else:
        body = ('<h1>Plans</h1><div class="tablewrap"><table class="plans"><thead><tr>'
                '<th scope="col">Plan</th><th scope="col">Phase</th><th scope="col">Progress</th>'
                '<th scope="col" class="num">Finished</th><th scope="col">Tasks by state</th>'
                '<th scope="col">Parent</th><th scope="col">Waits on</th></tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table></div>')
    left_out = repo.left_out_plans()
    if left_out:
        body += "".join(f'<p class="note">.flow/plans/{esc(name)} {esc(why)}</p>'
                        for name, why in left_out.items())
    return page("Plans", body, version=ctx.version)


def _count_chips(counts: Mapping[str, int]) -> str:
    chips = []
    for st in ("ready", "claimed", "in_progress", "retry_wait", "pending", "failed", "blocked",
               "skipped"):
        if counts.get(st):
            chips.append(f'<span class="chip s-{st}" title="{esc(STATE_LABEL[st])}">'
                         f'<span aria-hidden="true">{STATE_ICON[st]}</span> {counts[st]} '
                         f'{esc(STATE_LABEL[st])}</span>')
    return "".join(chips) or '<span class="muted">none open</span>'


# ----- a plan's board ------------------------------------------------------------------------

def _plan_header(ctx: Ctx, plan: Plan, state: PlanState, extra: str = "") -> str:
    counts = state.counts
    total = len(state.tasks)
    finished = counts["done"] + counts["skipped"]
    approvals = ""
    if state.approvals:
        who = ", ".join(f"{a.reviewer}" for a in state.approvals)
        approvals = f'<span class="meta-item">approved by {esc(who)}</span>'
    elif ctx.repo.config.approvals_required:
        approvals = (f'<span class="meta-item">needs {ctx.repo.config.approvals_required} '
                     'approval(s)</span>')
    stale = _stale(ctx.repo, plan.id, state)
    warn = ""
    if stale:
        warn += ('<p class="banner warn" role="alert"><strong>Approval is stale:</strong> the plan '
                 'changed after it was approved.</p>')
    if state.stalled:
        chains = "; ".join(" ← ".join(c) for c in state.stall_chains())
        warn += ('<p class="banner warn" role="alert"><strong>Stalled:</strong> nothing is ready, '
                 f'running or waiting, but work is left. {esc(chains)}</p>')
    goal = f'<p class="goal">{esc(plan.goal)}</p>' if plan.goal else ""
    if stale:
        freshness = ('<span class="meta-item stale" data-stale="true"><span class="flag warn">'
                     'approval stale</span></span>')
    elif state.approvals:
        freshness = '<span class="meta-item stale" data-stale="false">✓ approval current</span>'
    else:
        freshness = ""
    return (f'<header class="planhead"><div class="ph-title"><h1>{esc(plan.title)}</h1>'
            f'<code class="pid">{esc(plan.id)}</code> {phase_pill(state.phase)}</div>{goal}'
            f'<div class="ph-meta">{_progress(state.progress, "progress")}'
            f'<span class="meta-item"><strong>{finished}</strong> of {total} finished</span>'
            f'{approvals}{freshness}{extra}</div>{warn}</header>')


def _card(plan_id: str, task: Task, view: TaskView, now: float, gates: Sequence[str]) -> str:
    href = f"/plan/{plan_id}/task/{task.id}"
    meta = []
    if view.worker:
        meta.append(f'<span class="who" title="worker">{esc(view.worker)}</span>')
    if view.lease_until and view.state in ("claimed", "in_progress"):
        meta.append(countdown(view.lease_until, now, "left on lease"))
    if view.retry_at and view.state == "retry_wait":
        meta.append(f'<span>next attempt {when(view.retry_at)} '
                    f'({countdown(view.retry_at, now, "to go")})</span>')
    if view.attempts > 1 or view.state in ("failed", "retry_wait"):
        meta.append(f'<span>attempt {view.attempts}</span>')
    if view.interrupted:
        meta.append('<span class="flag warn">lease expired</span>')
    if view.state in ("pending", "blocked") and view.blocked_by:
        shown = ", ".join(view.blocked_by[:3]) + (" …" if len(view.blocked_by) > 3 else "")
        meta.append(f'<span class="on">on {esc(shown)}</span>')
    if view.waiting_on and "wait" in view.waiting_on:
        meta.append('<span class="on">waiting on its condition</span>')
    behind = [g for g in gates if g in task.depends_on]
    if behind:
        meta.append(f'<span class="gate-tag">⚑ behind {esc(", ".join(behind))}</span>')
    if view.state in ("done", "skipped") and view.record.note:
        note = " ".join(view.record.note.split())
        meta.append(f'<span class="cnote">{esc(note[:120] + ("…" if len(note) > 120 else ""))}</span>')
    if view.record.last_error and view.state in ("failed", "retry_wait"):
        meta.append(f'<span class="err">{esc(view.record.last_error[:160])}</span>')
    prio = (f'<span class="prio prio-{esc(task.priority)}">{esc(task.priority)}</span>'
            if task.priority != "medium" else "")
    return (f'<li class="card s-{esc(view.state)}" data-id="{esc(task.id)}" '
            f'data-state="{esc(view.state)}">'
            f'<div class="card-top"><a class="tid" href="{esc(href)}">{esc(task.id)}</a>{prio}'
            f'{state_pill(view.state)}</div>'
            f'<a class="title" href="{esc(href)}">{esc(task.title)}</a>'
            + (f'<div class="meta">{"".join(meta)}</div>' if meta else "") + '</li>')


def board_page(ctx: Ctx, plan_id: str) -> str:
    repo = ctx.repo
    plan = repo.load_plan(plan_id).plan
    state = ctx.state(plan_id)
    now = ctx.now
    gate_ids = [c.id for c in plan.checkpoints]
    gates = []
    for cp in plan.checkpoints:
        cv = state.checkpoints[cp.id]
        gated = [t.id for t in plan.tasks if cp.id in t.depends_on]
        review = (f' {link(f"/plan/{plan_id}/review?checkpoint={cp.id}", "review")}'
                  if cv.state in ("reached", "approved") else "")
        gates.append(
            f'<li class="gate s-{esc(cv.state)}" data-id="{esc(cp.id)}" data-state="{esc(cv.state)}">'
            f'<span class="gate-icon" aria-hidden="true">⚑</span><div><div class="card-top">'
            f'<code class="tid">{esc(cp.id)}</code>{state_pill(cv.state, gate=True)}</div>'
            f'<div class="title">{esc(cp.title)}</div><div class="meta">after '
            f'{esc(", ".join(cp.after) or "—")}' + (f' · opens {esc(", ".join(gated[:4]))}'
                                                    + (" …" if len(gated) > 4 else "")
                                                    if gated else "")
            + f'{review}</div></div></li>')
    gate_html = (f'<section class="gates" aria-label="Checkpoints"><h2>Gates</h2>'
                 f'<ol>{"".join(gates)}</ol></section>') if gates else ""
    tasks = {t.id: t for t in plan.tasks}
    cols = []
    for key, title, states in COLUMNS:
        views = [v for v in state.tasks.values() if v.state in states]
        if key == "ready":  # claim order: critical path first, then priority
            rank = {t: i for i, t in enumerate(state.order)}
            views.sort(key=lambda v: rank.get(v.id, len(rank)))
        cards = "".join(_card(plan_id, tasks[v.id], v, now, gate_ids) for v in views)
        empty = '' if views else '<li class="none">nothing here</li>'
        cols.append(
            f'<section class="col c-{key}" data-column="{key}" aria-labelledby="h-{key}">'
            f'<h2 id="h-{key}"><span>{esc(title)}</span> <span class="count" '
            f'data-count="{len(views)}">{len(views)}</span></h2>'
            f'<ol class="cards">{cards}{empty}</ol></section>')
    filt = ('<label class="filter">Filter <input type="search" id="card-filter" '
            'placeholder="id, title or worker" autocomplete="off"></label>')
    body = (_plan_header(ctx, plan, state, filt) + gate_html +
            f'<div class="columns">{"".join(cols)}</div>')
    return page(f"{plan.title} — board", body,
                crumbs=[("/", "Plans"), ("", plan_id)], tabs=plan_tabs(plan_id, "board"),
                version=ctx.version)


# ----- the graph -----------------------------------------------------------------------------

def graph_nodes(plan_id: str, plan: Plan, state: PlanState) -> tuple[list[svg.GNode], list[str]]:
    from flowgit.core.graph import critical_path

    known = set(plan.node_ids())
    deps = {k: tuple(d for d in v if d in known) for k, v in _deps(plan).items()}
    weights = {t.id: t.hours for t in plan.tasks}
    weights.update({c.id: 0.0 for c in plan.checkpoints})
    path = critical_path(deps, weights)
    crit = set(path)
    nodes = []
    for t in plan.tasks:
        view = state.tasks[t.id]
        nodes.append(svg.GNode(t.id, t.title, deps[t.id], "task", f"s-{view.state}",
                               STATE_LABEL.get(view.state, view.state), STATE_ICON.get(view.state, ""),
                               f"/plan/{plan_id}/task/{t.id}", t.id in crit))
    for c in plan.checkpoints:
        cv = state.checkpoints[c.id]
        nodes.append(svg.GNode(c.id, c.title, deps[c.id], "gate", f"s-{cv.state}",
                               GATE_LABEL.get(cv.state, cv.state), "⚑",
                               f"/plan/{plan_id}/review?checkpoint={c.id}", c.id in crit))
    return nodes, path


def graph_page(ctx: Ctx, plan_id: str) -> str:
    plan = ctx.repo.load_plan(plan_id).plan
    state = ctx.state(plan_id)
    nodes, path = graph_nodes(plan_id, plan, state)
    drawing = svg.render(nodes, f"Task graph of {plan.title}", path)
    hours = sum(t.hours for t in plan.tasks if t.id in set(path))
    legend = "".join(f'<li><span class="swatch s-{s}" aria-hidden="true"></span>'
                     f'{STATE_ICON[s]} {esc(STATE_LABEL[s])}</li>'
                     for s in ("pending", "ready", "claimed", "in_progress", "retry_wait", "done",
                               "failed", "blocked", "skipped"))
    legend += ('<li><span class="swatch crit" aria-hidden="true"></span>critical path '
               '(thick edge, bar under the node)</li>'
               '<li><span class="swatch gate" aria-hidden="true"></span>⚑ checkpoint (gate)</li>')
    controls = ('<div class="zoom" role="toolbar" aria-label="Zoom">'
                '<button type="button" data-zoom="in" title="Zoom in (+)">+</button>'
                '<button type="button" data-zoom="out" title="Zoom out (−)">−</button>'
                '<button type="button" data-zoom="fit" title="Fit the whole graph (0)">Fit</button>'
                '<button type="button" data-zoom="one" title="Actual size (1)">1:1</button>'
                '<span class="hint">drag to pan · wheel or +/− to zoom</span></div>')
    summary = (f'<p class="gsum"><strong>{len(plan.tasks)}</strong> tasks, '
               f'<strong>{len(plan.checkpoints)}</strong> gates in columns of what may run at '
               f'once. Critical path: {esc(" → ".join(path[:12]))}'
               + (" → …" if len(path) > 12 else "") + f' ({len(path)} steps, {hours:g} h)</p>')
    body = (_plan_header(ctx, plan, state) + summary + controls +
            f'<div class="graphwrap" tabindex="0" aria-label="Task graph: drag to pan">{drawing}</div>'
            f'<ul class="legend" aria-label="Legend">{legend}</ul>')
    return page(f"{plan.title} — graph", body, crumbs=[("/", "Plans"), (f"/plan/{plan_id}", plan_id),
                                                       ("", "graph")],
                tabs=plan_tabs(plan_id, "graph"), version=ctx.version)


# ----- timeline and task ---------------------------------------------------------------------

def _event_detail(ev: Event) -> str:
    d = ev.data
    bits = []
    for key in ("to", "reason", "note", "text", "error", "reviewer", "comment", "checkpoint",
                "name", "exit_code", "retry_at", "lease_until", "branch", "path", "prompt"):
        if key in d and d[key] not in (None, "", []):
            value = d[key]
            if key == "prompt" and isinstance(value, str):
                value = value[:12]
            bits.append(f'<span class="kv"><span class="k">{esc(key)}</span> '
                        f'{esc(str(value)[:200])}</span>')
    files = d.get("files_modified")
    if isinstance(files, list) and files:
        bits.append(f'<span class="kv"><span class="k">files</span> {len(files)}</span>')
    return "".join(bits)


def _event_rows(plan_id: str, events: Sequence[Event], commits: Mapping[str, str]) -> str:
    rows = []
    for ev in events:
        commit = ev.data.get("commit") if isinstance(ev.data.get("commit"), str) else commits.get(ev.id)
        task = link(f"/plan/{plan_id}/task/{ev.task}", ev.task) if ev.task and is_valid_id(ev.task) \
            else '<span class="muted">plan</span>'
        rows.append(
            f'<tr data-type="{esc(ev.type)}"><td class="t">{when(ev.timestamp)}</td>'
            f'<td><span class="etype">{esc(ev.type)}</span></td><td>{task}</td>'
            f'<td class="who">{esc(ev.actor)}</td><td class="detail">{_event_detail(ev)}</td>'
            f'<td class="sha">' + (f'<code title="{esc(commit)}">{esc(commit[:10])}</code>'
                                   if commit else '<span class="muted" title="not committed yet">'
                                   '—</span>') + '</td></tr>')
    return "".join(rows)


def _events_table(plan_id: str, events: Sequence[Event], commits: Mapping[str, str]) -> str:
    return ('<div class="tablewrap"><table class="events"><thead><tr><th scope="col">When</th>'
            '<th scope="col">Event</th><th scope="col">Task</th><th scope="col">Actor</th>'
            '<th scope="col">Details</th><th scope="col">Commit</th></tr></thead>'
            f'<tbody>{_event_rows(plan_id, events, commits)}</tbody></table></div>')


def newest_first(events: Sequence[Event]) -> list[Event]:
    return sorted(canonical(events), key=lambda e: (e.timestamp, e.clock, e.id), reverse=True)


def timeline_page(ctx: Ctx, plan_id: str, task: str | None, actor: str | None) -> str:
    repo = ctx.repo
    plan = repo.load_plan(plan_id).plan
    state = ctx.state(plan_id)
    events = newest_first(list(iter_events_all(repo, plan_id)))
    actors = sorted({e.actor for e in events})
    tasks = list(dict.fromkeys([t.id for t in plan.tasks] + sorted({e.task for e in events if e.task})))
    shown = [e for e in events if (task is None or e.task == task) and (actor is None or e.actor == actor)]
    total = len(shown)
    shown = shown[:TIMELINE_LIMIT]
    commits = ctx.commits(repo, plan_id)

    def options(values: Sequence[str], current: str | None, everyone: str) -> str:
        opts = [f'<option value=""{" selected" if current is None else ""}>{esc(everyone)}</option>']
        opts += [f'<option value="{esc(v)}"{" selected" if v == current else ""}>{esc(v)}</option>'
                 for v in values]
        return "".join(opts)

    form = ('<form class="filters" method="get" role="search" aria-label="Filter events">'
            f'<label>Task <select name="task">{options(tasks, task, "all tasks")}</select></label>'
            f'<label>Actor <select name="actor">{options(actors, actor, "everyone")}</select></label>'
            '<button type="submit">Filter</button>'
            + (f' {link(f"/plan/{plan_id}/timeline", "clear")}' if task or actor else "")
            + '</form>')
    more = (f'<p class="note">Showing the newest {TIMELINE_LIMIT} of {total} events: filter by '
            'task or actor to see older ones.</p>') if total > TIMELINE_LIMIT else \
        f'<p class="note">{total} event(s), newest first.</p>'
    body = _plan_header(ctx, plan, state) + form + more + _events_table(plan_id, shown, commits)
    return page(f"{plan.title} — timeline", body,
                crumbs=[("/", "Plans"), (f"/plan/{plan_id}", plan_id), ("", "timeline")],
                tabs=plan_tabs(plan_id, "timeline"), version=ctx.version)


def _prompt(repo: FlowRepo, events: Sequence[Event]) -> tuple[str | None, str | None]:
    """The prompt `run` gave the task on its latest attempt: (blob id, text)."""
    for ev in reversed(canonical(events)):
        blob = ev.data.get("prompt")
        if ev.type in ("task.claimed", "task.started") and isinstance(blob, str) and BLOB.fullmatch(blob):
            size = git_state.blob_sizes(repo.root, [blob]).get(blob, 0)  # an event names any blob
            if size > MAX_YAML_BYTES:
                return blob, f"(not shown: {size} bytes, above the {MAX_YAML_BYTES} byte limit of a flowgit file)"
            data = git_state.read_blobs(repo.root, [blob], MAX_YAML_BYTES, lambda _: blob).get(blob)
            return blob, None if data is None else data.decode("utf-8", "replace")
    return None, None


def _run_log(repo: FlowRepo, rel: str | None) -> tuple[str | None, str | None]:
    """The tail of the run log a task's events name, read only from inside .flow/."""
    if not rel:
        return None, None
    parts = rel.split("/")
    if parts[0] != ".flow" or len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        return rel, None
    try:
        path = repo.safe(*parts[1:])
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL))
            data = fh.read()
    except (OSError, FlowError):
        return rel, None
    text = data.decode("utf-8", "replace")
    if size > LOG_TAIL:
        text = "…\n" + text.split("\n", 1)[-1]
    return rel, text


def task_page(ctx: Ctx, plan_id: str, task_id: str) -> str:
    repo = ctx.repo
    plan = repo.load_plan(plan_id).plan
    task = plan.task(task_id)
    if task is None:
        if plan.checkpoint(task_id) is not None:
            raise Redirect(f"/plan/{plan_id}/review?checkpoint={task_id}")
        raise NotFound(f"plan {plan_id} has no task {task_id!r}")
    state = ctx.state(plan_id)
    view = state.tasks[task_id]
    rec = view.record
    events = canonical(repo.read_log(plan_id, task_id).events)
    dependents = [t.id for t in plan.tasks if task_id in t.depends_on]
    dependents += [c.id for c in plan.checkpoints if task_id in c.after]

    def ref(node: str) -> str:
        if node in state.tasks:
            return (f'<li>{link(f"/plan/{plan_id}/task/{node}", node)} '
                    f'{state_pill(state.tasks[node].state)}</li>')
        if node in state.checkpoints:
            return (f'<li>{link(f"/plan/{plan_id}/review?checkpoint={node}", node)} '
                    f'{state_pill(state.checkpoints[node].state, gate=True)}</li>')
        ext = state.external.get(node, "unknown")
        return f'<li><code>{esc(node)}</code> <span class="muted">{esc(ext)}</span></li>'

    facts = [("State", state_pill(view.state)), ("Priority", esc(task.priority)),
             ("Attempts", str(view.attempts))]
    if task.estimate is not None:
        facts.append(("Estimate", esc(task.estimate)))
    if view.worker:
        facts.append(("Worker", esc(view.worker)))
    if view.lease_until:
        facts.append(("Lease", countdown(view.lease_until, ctx.now, "left") + " · until " +
                      when(view.lease_until)))
    if view.retry_at:
        facts.append(("Next attempt", when(view.retry_at) + " · " +
                      countdown(view.retry_at, ctx.now, "to go")))
    if rec.last_error:
        facts.append(("Last error", f'<span class="err">{esc(rec.last_error)}</span>'))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    sections = [f'<dl class="facts">{dl}</dl>']
    if task.description:
        sections.append(f'<section><h2>Description</h2><p class="pre">{esc(task.description)}</p></section>')
    if task.acceptance:
        items = "".join(f"<li>{esc(a)}</li>" for a in task.acceptance)
        sections.append(f'<section><h2>Acceptance</h2><ul class="check">{items}</ul></section>')
    rel_html = ""
    if task.depends_on:
        rel_html += f'<div><h3>Depends on</h3><ul class="refs">{"".join(ref(d) for d in task.depends_on)}</ul></div>'
    if dependents:
        rel_html += f'<div><h3>Needed by</h3><ul class="refs">{"".join(ref(d) for d in dependents)}</ul></div>'
    if rel_html:
        sections.append(f'<section class="rels">{rel_html}</section>')
    # files: declared, and changed by the work (the done event's numbers)
    done = next((e for e in reversed(events) if e.type == "task.done"), None)
    changed = list(rec.files_modified)
    stats = ""
    if done is not None and isinstance(done.data.get("lines_added"), int):
        stats = (f' <span class="plus">+{int(done.data["lines_added"])}</span> '
                 f'<span class="minus">−{int(done.data.get("lines_removed") or 0)}</span>')
    files_html = ""
    if changed:
        files_html += (f'<h3>Changed{stats}</h3><ul class="files">'
                       + "".join(f"<li><code>{esc(f)}</code></li>" for f in changed) + "</ul>")
    if task.files:
        files_html += ('<h3>Declared</h3><ul class="files">'
                       + "".join(f"<li><code>{esc(f)}</code></li>" for f in task.files) + "</ul>")
    sections.append('<section><h2>Files</h2>' + (files_html or '<p class="muted">none declared, '
                                                 'none changed yet</p>') + '</section>')
    notes = [(e, str(e.data.get("note") or e.data.get("text") or e.data.get("reason") or ""))
             for e in events if e.type in ("task.note", "task.done", "task.skipped")]
    notes = [(e, n) for e, n in notes if n]
    if notes:
        sections.append('<section><h2>Notes</h2><ul class="notes">' + "".join(
            f'<li><div class="pre">{esc(n)}</div><div class="meta">{esc(e.actor)} · '
            f'{when(e.timestamp)}</div></li>' for e, n in notes) + '</ul></section>')
    blob, prompt = _prompt(repo, events)
    if blob is None:
        sections.append('<section><h2>Prompt</h2><p class="muted">No prompt recorded: `flowgit run` '
                        'records the prompt it gives a task when it claims it.</p></section>')
    elif prompt is None:
        sections.append(f'<section><h2>Prompt</h2><p class="muted">Blob <code>{esc(blob[:12])}</code> '
                        'is not in this clone (git gc prunes it after two weeks, and a clone does '
                        'not carry it).</p></section>')
    else:
        sections.append(f'<section><h2>Prompt <code class="small">{esc(blob[:12])}</code></h2>'
                        f'<pre class="prompt">{esc(prompt)}</pre></section>')
    rel, tail = _run_log(repo, rec.log_path)
    if rel:
        body_log = f'<pre class="log">{esc(tail)}</pre>' if tail is not None else \
            '<p class="muted">not on this machine</p>'
        sections.append(f'<section><h2>Run log <code class="small">{esc(rel)}</code></h2>{body_log}</section>')
    commits = ctx.commits(repo, plan_id)
    sections.append(f'<section><h2>Events</h2>{_events_table(plan_id, list(reversed(events)), commits)}</section>')
    head = (f'<header class="planhead"><div class="ph-title"><h1>{esc(task.title)}</h1>'
            f'<code class="pid">{esc(plan_id)}/{esc(task_id)}</code> {state_pill(view.state)}</div>'
            f'</header>')
    return page(f"{task_id} — {task.title}", head + "".join(sections),
                crumbs=[("/", "Plans"), (f"/plan/{plan_id}", plan_id), ("", task_id)],
                tabs=plan_tabs(plan_id, ""), version=ctx.version)


def _task_href(plan_id: str, task_id: str) -> str:
    return f"/plan/{plan_id}/task/{task_id}"


class Redirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


# ----- review --------------------------------------------------------------------------------

def review_page(ctx: Ctx, plan_id: str, checkpoint: str | None, rev_from: str | None,
                rev_to: str | None) -> str:
    from flowgit.board.markdown import to_html
    from flowgit.formats.plandiff import render_markdown
    from flowgit.ops.review import checkpoint_review, compare
    from flowgit.store.snapshot import Memo, at_rev, work_tree

    repo = ctx.repo
    plan = repo.load_plan(plan_id).plan
    state = ctx.state(plan_id)
    parts = []
    cps = [c.id for c in plan.checkpoints]
    if checkpoint is not None and checkpoint not in cps:
        raise NotFound(f"plan {plan_id} has no checkpoint {checkpoint!r}")
    if checkpoint is None:
        reached = [c.id for c in state.checkpoints.values() if c.state == "reached"]
        checkpoint = reached[0] if reached else (cps[0] if cps else None)
    if checkpoint is not None:
        r = checkpoint_review(repo, plan_id, checkpoint, state)
        current = ' aria-current="page"'
        picker = "".join(
            f'<a href="/plan/{esc(plan_id)}/review?checkpoint={esc(c)}"'
            f'{current if c == checkpoint else ""}>{esc(c)} '
            f'{state_pill(state.checkpoints[c].state, gate=True)}</a>' for c in cps)
        ch = r["changes"]
        files = "".join(f'<tr><td><code>{esc(f["path"])}</code></td><td class="num plus">+{f["added"]}</td>'
                        f'<td class="num minus">−{f["removed"]}</td></tr>' for f in ch["files"])
        vals = []
        for v in r["validations"]:
            ok = v.get("exit_code") == 0
            tail = v.get("output_tail") or ""
            vals.append(f'<li class="{"ok" if ok else "bad"}"><strong>{esc(v.get("name"))}</strong> '
                        + (state_pill("done").replace("done", "passed") if ok
                           else f'<span class="pill s-failed">✕ failed (exit {esc(v.get("exit_code"))})</span>')
                        + f' <span class="muted">in {esc(v.get("duration"))}s</span>'
                        + (f'<pre class="log">{esc(tail)}</pre>' if tail and not ok else "") + '</li>')
        notes = "".join(f'<li><strong>{link(_task_href(plan_id, n["task"]), n["task"])}</strong> '
                        f'<span class="pre">{esc(n["note"])}</span></li>' for n in r["notes"])
        parts.append(
            f'<section class="review"><h2>Checkpoint review</h2><nav class="cppick">{picker}</nav>'
            f'<p>Changes since execution began'
            + (f' at <code>{esc((r["base_commit"] or "")[:10])}</code>' if r["base_commit"] else "")
            + (': unknown: that commit is not in this clone; fetch it, or this review is incomplete</p>'
               if r["base_commit_missing"] else
               f': <strong>{len(ch["files"])}</strong> files, <span class="plus">+{ch["added"]}</span> '
               f'<span class="minus">−{ch["removed"]}</span></p>')
            + (f'<div class="tablewrap"><table class="files"><tbody>{files}</tbody></table></div>' if files else "")
            + '<h3>Validations</h3>' + (f'<ul class="vals">{"".join(vals)}</ul>' if vals
                                        else '<p class="muted">none run yet</p>')
            + '<h3>Notes</h3>' + (f'<ul class="notes">{notes}</ul>' if notes else '<p class="muted">none</p>')
            + '</section>')
    else:
        parts.append('<section class="review"><h2>Checkpoint review</h2><p class="muted">This plan has '
                     'no checkpoints.</p></section>')
    # the plan diff between two versions of plan.yaml, as the pull request comment shows it
    rel = f".flow/plans/{plan_id}/plan.yaml"
    versions = git.file_versions(repo.root, rel)
    choices = {sha: (ts, subject) for sha, ts, subject in versions}
    for name, value in (("from", rev_from), ("to", rev_to)):
        if value is not None and value != "worktree" and value not in choices:
            raise NotFound(f"{value!r} is no version of {rel}: pick one from the list")
    if rev_to is None:
        rev_to = "worktree"
    if rev_from is None:
        rev_from = versions[-1][0] if versions else None

    def select(name: str, current: str | None, with_tree: bool) -> str:
        opts = []
        if with_tree:
            opts.append(f'<option value="worktree"{" selected" if current == "worktree" else ""}>'
                        'the working tree (now)</option>')
        for sha, ts, subject in versions:
            label = f'{sha[:10]} · {time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))} · {subject[:60]}'
            opts.append(f'<option value="{esc(sha)}"{" selected" if sha == current else ""}>'
                        f'{esc(label)}</option>')
        return f'<label>{esc(name)} <select name="{esc(name)}">{"".join(opts)}</select></label>'

    form = ('<form class="filters" method="get">'
            + (f'<input type="hidden" name="checkpoint" value="{esc(checkpoint)}">' if checkpoint else "")
            + select("from", rev_from, False) + select("to", rev_to, True)
            + '<button type="submit">Compare</button></form>')
    if rev_from is None:
        diff_html = '<p class="muted">plan.yaml is not committed yet: nothing to compare.</p>'
    else:
        memo = Memo()
        a = at_rev(repo.root, rev_from, plan_id, memo)
        b = work_tree(repo.root, plan_id, memo) if rev_to == "worktree" else at_rev(repo.root, rev_to, plan_id, memo)
        broken = [ps.invalid for ps in (a.plans.get(plan_id), b.plans.get(plan_id)) if ps and ps.invalid]
        if broken:
            diff_html = f'<p class="banner warn">{esc(broken[0])}: a file that does not parse cannot be compared</p>'
        else:
            result = compare(a, b, plan_id)
            graphs = {p["plan"]: p.get("graph") for p in result["plans"]}
            diff_html = to_html(render_markdown(result), lambda: _diff_graph(result, graphs, plan_id))
    parts.append(f'<section class="plandiff"><h2>Plan diff</h2>{form}<div class="md">{diff_html}</div></section>')
    return page(f"{plan.title} — review", _plan_header(ctx, plan, state) + "".join(parts),
                crumbs=[("/", "Plans"), (f"/plan/{plan_id}", plan_id), ("", "review")],
                tabs=plan_tabs(plan_id, "review"), version=ctx.version)


CHANGE_LABEL = {"added": ("+", "added"), "removed": ("−", "removed"), "modified": ("~", "modified"),
                "unchanged": ("", "unchanged")}


def _diff_graph(result: Mapping[str, Any], graphs: Mapping[str, Any], plan_id: str) -> str:
    """The comment's Mermaid graph, drawn by flowgit: added, removed and modified styled apart."""
    graph = graphs.get(plan_id)
    if not isinstance(graph, Mapping):
        return ""
    raw = [n for n in graph.get("nodes", []) if isinstance(n, Mapping) and n.get("id") is not None]
    ids = {str(n["id"]) for n in raw}
    nodes = []
    for n in raw:
        change = str(n.get("change") or "unchanged")
        icon, label = CHANGE_LABEL.get(change, ("", change))
        deps = tuple(str(d) for d in (n.get("deps") or []) if str(d) in ids)
        nodes.append(svg.GNode(str(n["id"]), str(n.get("title") or ""), deps,
                               "gate" if n.get("kind") == "checkpoint" else "task",
                               f"c-{change}", label, icon))
    try:
        drawing = svg.render(nodes, "Task graph of the plan diff")
    except ValueError:  # a cycle in an old version: the comment's text says enough
        return ""
    legend = ('<ul class="legend"><li><span class="swatch c-added"></span>+ added</li>'
              '<li><span class="swatch c-removed"></span>− removed (dashed)</li>'
              '<li><span class="swatch c-modified"></span>~ modified</li></ul>')
    return f'<div class="graphwrap small" tabindex="0">{drawing}</div>{legend}'
