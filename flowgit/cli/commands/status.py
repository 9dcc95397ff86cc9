"""Read-only views: status, next, events, graph. They never write (except the cache)."""
from __future__ import annotations

import json
from typing import Any, Callable, Iterator, Mapping

from flowgit.cli.app import App
from flowgit.clock import wall_now
from flowgit.core.events import canonical, format_time
from flowgit.core.fold import PlanState
from flowgit.core.index import explicit_executors, plan_column
from flowgit.core.model import Task
from flowgit.core.planstate import VIEW_FIELDS, Views, column
from flowgit.core.lifecycle import held_by, is_link_hold
from flowgit.errors import NotFound, NothingToDo, UsageError
from flowgit.ids import check_id
from flowgit.store.planpin import gate_hash
from flowgit.store.repo import FlowRepo, iter_events_all

BAR_WIDTH = 30


def _rows(state: PlanState) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Each task's id and view fields (core/planstate.VIEW_FIELDS), without building views."""
    if isinstance(state.tasks, Views):
        rows = state.tasks.rows
        for task_id in state.tasks.ids:
            yield task_id, rows[task_id][:len(VIEW_FIELDS)]
        return
    for task_id, view in state.tasks.items():
        yield task_id, tuple(getattr(view, name) for name in VIEW_FIELDS)


# what status says that comes from the evaluated rows alone (with the plan and the executors
# config): kept as encoded JSON beside the rows it was made from (`status PLAN --json`)
DERIVED = ("progress", "counts", "ready", "stalled", "stall_chains", "interrupted", "checkpoints",
           "unknown_refs", "unreadable", "tasks")


def status_dict(repo: FlowRepo, plan_id: str, state: PlanState, now: float,
                derived: bool = True, encoded: bool = False) -> dict[str, Any]:
    """The status of one plan (`derived=False`: without the DERIVED keys; `encoded`: its
    "tasks" as JSON text)."""
    loaded = repo.load_plan(plan_id)
    approvals = [{"reviewer": a.reviewer, "plan_hash": a.plan_hash, "at": a.at} for a in state.approvals]
    from flowgit.core.rules import Facts, is_stale

    cfg = repo.config
    reviewed = cfg.approvals_required > 0 or bool(state.approvals)  # else nothing was approved
    from flowgit.store import configpin, planpin  # format 2: what execution follows (ADR 0011)

    stale = reviewed and is_stale(state, Facts(loaded.hash, cfg.approvals_required, cfg.auto_approve,
                                               cfg.reset_on_change, moved=planpin.moved(repo, plan_id)))
    parts = _derived(repo, plan_id, state, encoded) if derived else {}
    out: dict[str, Any] = {"plan": plan_id, "title": loaded.plan.title, "phase": state.phase}
    for key in DERIVED[:7]:
        if derived:
            out[key] = parts[key]
    out.update({"approvals": approvals, "approval_stale": bool(stale), "parent": loaded.plan.parent})
    for key in DERIVED[7:9]:
        if derived:
            out[key] = parts[key]
    out.update({"plan_source": loaded.display or repo.rel(loaded.path),
                "plan_differs": planpin.divergence(repo, plan_id, loaded.hash, loaded.where),
                "config_differs": configpin.divergence(repo)})
    if derived:
        out["tasks"] = parts["tasks"]
    return out


def status_json(repo: FlowRepo, plan_id: str, state: PlanState, now: float) -> str:
    """`status PLAN --json`, encoded: the DERIVED part kept, encoded, by the evaluated rows it
    was made from (store/evalcache.py: `evaluated_as`), the plan's digest and the executors
    config, so a plan nobody moved is answered without building a row (issue 17)."""
    gen = repo.evaluated_as.get(plan_id)
    config = repo.config
    key = [gen, repo.load_plan(plan_id).hash, config.default_executor] \
        if gen is not None and not config.run.select else None
    name = f"{plan_id}@status"
    entry = repo.cache.entry(name) if key is not None else {}
    kept = entry.get("parts") if entry.get("key") == key else None
    if isinstance(kept, dict) and all(isinstance(kept.get(k), str) for k in DERIVED):
        parts: dict[str, str] = kept
        data = status_dict(repo, plan_id, state, now, derived=False)
    else:
        data = status_dict(repo, plan_id, state, now, encoded=True)
        parts = {k: data[k] if k == "tasks" else json.dumps(data[k], ensure_ascii=False) for k in DERIVED}
        if key is not None:
            entry.clear()
            entry.update({"key": key, "parts": parts})
            repo.cache.changed(name)
    import os

    mark = "\0" + os.urandom(8).hex()  # no text of the plan can hold it: the encoder escapes NUL
    skeleton = json.dumps({k: mark + k if k in DERIVED else data[k] for k in _ORDER}, ensure_ascii=False)
    pieces, rest = [], skeleton
    for k in _ORDER:
        if k in DERIVED:
            before, _, rest = rest.partition(json.dumps(mark + k))
            pieces += [before, parts[k]]
    pieces.append(rest)
    return "".join(pieces)


def _derived(repo: FlowRepo, plan_id: str, state: PlanState, encoded: bool = False) -> dict[str, Any]:
    """What status says from the evaluated rows (DERIVED); `encoded`: "tasks" as its JSON text,
    written from pieces encoded once per distinct head (state, worker, attempts, executor)
    instead of a dict per task for the encoder (issue 17: 50,000 dicts)."""
    from flowgit.runner.executors import choose  # which executor `run` would give each task

    loaded = repo.load_plan(plan_id)
    plan = loaded.plan
    config = repo.config
    select = bool(config.run.select)
    # the executor `run` would give each task: without `executors.select` rules, its own
    # executor decides, so the tasks need not be built to know it
    named = explicit_executors(plan) if not select else None
    executors: Mapping[str, str | None] = (
        dict(zip(plan_column(plan, "id"), plan_column(plan, "executor"))) if named is None else named)
    choices: dict[Any, tuple[str, str]] = {}

    def choice_of(task_id: str) -> tuple[str, str] | None:
        if named is None and task_id not in executors:
            return None
        facts: Any = executors.get(task_id)
        choice = choices.get(facts) if not select else None
        if choice is None:
            task = plan.task(task_id) if named is None else Task(id=task_id, title="", executor=facts)
            assert task is not None
            choice = choices[facts] = choose(config, plan, task, None)
        return choice

    def full_row(task_id: str, row: tuple[Any, ...]) -> dict[str, Any]:
        now_in, worker, attempts, lease_until, retry_at, interrupted, waiting_on, blocked_by, held = row[:9]
        out = _task_row(task_id, now_in, worker, attempts, choice_of(task_id))
        if lease_until:
            out["lease_until"] = format_time(lease_until)
        if retry_at:
            out["retry_at"] = format_time(retry_at)
        if interrupted:
            out["interrupted"] = True
        if waiting_on:
            out["waiting_on"] = list(waiting_on)
        if now_in in ("pending", "blocked") and blocked_by:
            out["blocked_by"] = list(blocked_by)
        if now_in in ("failed", "retry_wait"):
            error = state.tasks[task_id].record.last_error
            if error:
                out["error"] = error
        if held:
            out["unreadable"] = held
        return out

    tasks: Any
    if encoded and isinstance(state.tasks, Views) and not select:
        tasks = _encoded_rows(state.tasks, choice_of, full_row,
                              {t for t, e in executors.items() if e is not None})
    else:
        tasks = [full_row(task_id, row) for task_id, row in _rows(state)]
        if encoded:
            tasks = json.dumps(tasks, ensure_ascii=False)
    return {
        "progress": state.progress, "counts": state.counts, "ready": state.ready, "stalled": state.stalled,
        "stall_chains": state.stall_chains() if state.stalled else [],
        "interrupted": state.interrupted,
        "checkpoints": [{"id": c.id, "state": c.state} for c in state.checkpoints.values()],
        "unknown_refs": state.unknown_refs, "unreadable": state.unreadable, "tasks": tasks,
    }


def _encoded_rows(views: Views, choice_of: Callable[[str], tuple[str, str] | None],
                  full_row: Callable[[str, tuple[Any, ...]], dict[str, Any]], explicit: set[str]) -> str:
    """The tasks' rows as the JSON encoder writes them. A row with only a state, worker,
    attempts, executor and maybe blockers is its id, the head kept for those four (encoded
    once) and its blockers; any other (a lease, a retry, an error, an interruption, a wait, a
    hold, a task naming its executor) is encoded whole. Without `executors.select` rules a task
    that names no executor gets the same one as any other."""
    text = json.encoder.encode_basestring  # what dumps writes a string as (ensure_ascii=False)
    rows = views.rows
    heads: dict[Any, str] = {}
    common: tuple[str, str] | None = None
    out = []
    for task_id in views.ids:
        row = rows[task_id]
        now_in = row[0]
        if row[3] or row[4] or row[5] or row[6] or row[8] or now_in in ("failed", "retry_wait") \
                or task_id in explicit:
            out.append(json.dumps(full_row(task_id, row), ensure_ascii=False))
            continue
        if common is None:
            common = choice_of(task_id)
        key = (now_in, row[1], row[2])
        head = heads.get(key)
        if head is None:
            head = heads[key] = json.dumps(_task_row(task_id, now_in, row[1], row[2], common),
                                           ensure_ascii=False)[len(text(task_id)) + 7:-1]
        if row[7] and (now_in == "pending" or now_in == "blocked"):
            out.append(f'{{"id": {text(task_id)}{head}, "blocked_by": [{", ".join(map(text, row[7]))}]}}')
        else:
            out.append(f'{{"id": {text(task_id)}{head}}}')
    return "[" + ", ".join(out) + "]"


def _task_row(task_id: str, now_in: str, worker: str | None, attempts: int,
              choice: tuple[str, str] | None) -> dict[str, Any]:
    row: dict[str, Any] = {"id": task_id, "state": now_in, "worker": worker, "attempts": attempts}
    if choice is not None:
        row["executor"], row["executor_why"] = choice
    return row


_ORDER = ("plan", "title", "phase", *DERIVED[:7], "approvals", "approval_stale", "parent", *DERIVED[7:9],
          "plan_source", "plan_differs", "config_differs", "tasks")


def _bar(progress: int) -> str:
    filled = BAR_WIDTH * progress // 100
    return "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + f"] {progress}%"


TITLE_WIDTH = 60
DEFAULT_LIMIT = 10
RUNNING = ("claimed", "in_progress")


def _short(title: str) -> str:
    return title if len(title) <= TITLE_WIDTH else title[:TITLE_WIDTH - 3] + "..."


def _extra(row: dict[str, Any]) -> str:
    if row.get("unreadable"):
        where = row["unreadable"]
        return f" ({where} is a symlink)" if is_link_hold(where) else f" (unreadable event at {where})"
    if row.get("worker"):
        return f" ({row['worker']})"
    if row.get("blocked_by"):
        return f" (on {', '.join(row['blocked_by'])})"
    if row.get("retry_at"):
        return f" (retry at {row['retry_at']})"
    if row.get("waiting_on"):
        return " (waiting on " + ", ".join(
            "its wait condition" if w == "wait" else w for w in row["waiting_on"]) + ")"
    if row.get("error"):
        return f" (error: {_short(row['error'])})"
    return ""


def _row(row: dict[str, Any], titles: Mapping[str, str], state: bool = True) -> str:
    head = f"  {row['state']:<12} {row['id']}" if state else f"  {row['id']}"
    title = titles.get(row["id"], "")
    return head + (f"  {_short(title)}" if title else "") + _extra(row)


def _blockers(rows: list[dict[str, Any]], state: PlanState | None) -> str:
    """What blocks the blocked tasks: each failed task (or other cause) and how many it holds up."""
    from flowgit.core.lifecycle import failed_behind

    causes: dict[str, int] = {}
    for row in rows:
        if row.get("unreadable"):
            keys = [f"unreadable event at {row['unreadable']}"]
        elif state is not None:
            roots, outside = failed_behind(state, row["id"])
            keys = [f"{r} (failed)" for r in roots] + [f"{o} (another plan)" for o in outside]
        else:
            keys = list(row.get("blocked_by") or [])
        for key in keys or ["?"]:
            causes[key] = causes.get(key, 0) + 1
    ranked = sorted(causes.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} blocks {n}" for k, n in ranked[:5]) + (
        f", and {len(ranked) - 5} more causes" if len(ranked) > 5 else "")


def _grouped(data: dict[str, Any], titles: Mapping[str, str], limit: int,
             state: PlanState | None) -> list[str]:
    """A big plan: the tasks that need someone now (running, ready, failed, waiting to retry),
    at most `limit` of each, and what blocks the blocked ones."""
    by_id = {row["id"]: row for row in data["tasks"]}
    groups: list[tuple[str, list[dict[str, Any]]]] = [
        ("running", [r for r in data["tasks"] if r["state"] in RUNNING]),
        ("ready, best first", [by_id[t] for t in data["ready"] if t in by_id]),
        ("failed", [r for r in data["tasks"] if r["state"] == "failed"]),
        ("waiting to retry", [r for r in data["tasks"] if r["state"] == "retry_wait"]),
    ]
    lines = []
    for name, rows in groups:
        if not rows:
            continue
        lines.append(f"{name} ({len(rows)}):")
        lines += [_row(r, titles, state=name == "running") for r in rows[:limit]]
        if len(rows) > limit:
            lines.append(f"  ... {len(rows) - limit} more")
    blocked = [r for r in data["tasks"] if r["state"] == "blocked"]
    if blocked:
        lines.append(f"blocked ({len(blocked)}): {_blockers(blocked, state)}")
    lines.append(f"{len(data['tasks'])} tasks: `flowgit status {data['plan']} --all` lists every "
                 "one, --limit N shows N of each group")
    return lines


def status_text(data: dict[str, Any], tty: bool = False, titles: Mapping[str, str] | None = None,
                limit: int = DEFAULT_LIMIT, everything: bool = False,
                state: PlanState | None = None) -> str:
    """One plan as text: the summary, then every task with its title (a plan of at most
    `limit` tasks, or `everything`), or for a bigger plan the tasks grouped (see `_grouped`)."""
    titles = titles or {}
    whole = everything or len(data["tasks"]) <= limit
    lines = [f"{data['plan']}: {data['title']}", f"phase: {data['phase']}   {_bar(data['progress'])}"]
    counts = ", ".join(f"{n} {s}" for s, n in data["counts"].items() if n) or "no tasks"
    lines.append(f"tasks: {counts}")
    lines += executors_line(data["tasks"])
    if data["ready"] and whole:
        lines.append(f"ready: {', '.join(data['ready'][:10])}" + (" ..." if len(data["ready"]) > 10 else ""))
    if data["interrupted"]:
        shown = data["interrupted"][:limit] if not everything else data["interrupted"]
        lines.append(f"interrupted (lease expired): {', '.join(shown)}"
                     + (" ..." if len(shown) < len(data["interrupted"]) else ""))
    for cp in data["checkpoints"]:
        if cp["state"] == "reached":
            lines.append(f"checkpoint {cp['id']} reached: review with `flowgit checkpoint {data['plan']} {cp['id']}`")
    if data.get("unknown_refs"):
        lines.append(f"waiting on unknown plans or tasks: {', '.join(data['unknown_refs'])} "
                     "(nothing by that name yet: if it is a typo, `flowgit validate` shows where)")
    for where in data.get("unreadable") or []:
        lines.append(f"held by {held_by(where)}")
    if data["approval_stale"]:
        lines.append("approval is stale: the plan changed after it was approved")
    if data.get("plan_differs"):
        lines.append(data["plan_differs"])
    if data.get("config_differs"):
        lines.append(data["config_differs"])
    if data["stalled"]:
        lines.append("STALLED: nothing is ready, running or waiting, but work is left")
        for chain in data["stall_chains"][:limit if not everything else None]:
            lines.append("  " + " <- ".join(chain))
    if data["counts"].get("failed"):
        lines.append(f"`flowgit retry {data['plan']}/TASK` makes a failed task (or those blocking "
                     "one) ready again")
    if whole:
        lines += [_row(row, titles) for row in data["tasks"]]
    else:
        lines += _grouped(data, titles, limit, state)
    return "\n".join(lines)


def executors_line(rows: list[dict[str, Any]]) -> list[str]:
    """Which executor `run` gives the unfinished tasks, and why (grouped)."""
    groups: dict[tuple[str, str], int] = {}
    for row in rows:
        if row.get("executor") and row["state"] not in ("done", "skipped"):
            key = (row["executor"], row["executor_why"])
            groups[key] = groups.get(key, 0) + 1
    if not groups:
        return []
    return ["executors: " + "; ".join(f"{name} for {n} ({why})" for (name, why), n in groups.items())]


def status(app: App, plan_id: str | None, limit: int | None = None, everything: bool = False) -> int:
    repo = app.repo
    now = wall_now()
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    per_group = limit if limit is not None else DEFAULT_LIMIT
    if plan_id is not None:
        check_id(plan_id, "plan id")
        state = repo.state(plan_id, now)
        if app.out.as_json:
            app.out.result_encoded(status_json(repo, plan_id, state, now), lambda: "")
            return 0
        data = status_dict(repo, plan_id, state, now)

        def one_plan() -> str:
            plan = repo.load_plan(plan_id).plan
            titles = {t.id: t.title for t in plan.tasks}
            return status_text(data, app.out.is_tty, titles, per_group, everything, state)
        app.out.result(data, one_plan)
        return 0
    plans = []
    app.warn_linked_plans()
    for pid in repo.plan_ids():
        state = repo.state(pid, now)
        plans.append(status_dict(repo, pid, state, now))
    children: dict[str | None, list[str]] = {}
    for p in plans:
        children.setdefault(p["parent"], []).append(p["plan"])

    def text() -> str:
        if not plans:
            return "no plans yet: create one with `flowgit plan new NAME`"
        by_id = {p["plan"]: p for p in plans}
        out: list[str] = []

        shown: set[str] = set()

        def walk(pid: str, depth: int) -> None:
            if pid in shown:  # a parent cycle (validate reports it): show each plan once
                return
            shown.add(pid)
            p = by_id[pid]
            flag = "  STALLED" if p["stalled"] else ""
            out.append(f"{'  ' * depth}{pid:<{24 - 2 * depth}} {p['phase']:<11} {_bar(p['progress'])}"
                       f"  ready {len(p['ready'])}{flag}  {_short(p['title'])}")
            for child in children.get(pid, []):
                walk(child, depth + 1)
        roots = [p["plan"] for p in plans if p["parent"] not in by_id]
        for pid in roots + [p["plan"] for p in plans]:
            walk(pid, 0)
        return "\n".join(out)
    app.out.result({"plans": plans}, text)
    return 0


def next_task(app: App, plan_id: str | None) -> int:
    from flowgit.core.lifecycle import approval_block  # `status` does not need it
    from flowgit.core.overlap import free_order, waiting_on_files

    repo = app.repo
    now = wall_now()
    pids = [check_id(plan_id, "plan id")] if plan_id else repo.plan_ids()
    waiting = ""
    for pid in pids:
        state = repo.state(pid, now)
        if state.phase in ("complete", "halted", "finish"):
            continue
        blocked = approval_block(pid, state, repo.config, gate_hash(repo, pid, state))
        if blocked:
            waiting = waiting or f": {blocked}"
            continue
        if state.order:
            plan = repo.load_plan(pid).plan
            free = free_order(plan, state)  # as `claim` and `run`: never two tasks on one file
            if not free:
                held = ", ".join(waiting_on_files(plan, state)[:5])
                waiting = waiting or f"; ready but their files are held: {held}"
                continue
            task = free[0]
            title = plan.task(task).title  # type: ignore[union-attr]
            app.out.result({"task": f"{pid}/{task}", "title": title}, f"{pid}/{task}  {title}")
            return 0
    raise NothingToDo("no ready task" + (f" in plan {plan_id}" if plan_id else "") + waiting)


def events(app: App, plan_id: str, task_id: str | None, from_git: bool) -> int:
    repo = app.repo
    plan = repo.load_plan(check_id(plan_id, "plan id")).plan
    if task_id is not None and task_id not in plan.node_ids():
        check_id(task_id, "task id")
        if not repo.has_log(plan_id, task_id):  # a removed task's log still counts
            known = ", ".join(plan.node_ids()[:8]) or "none"
            raise NotFound(f"plan {plan_id} has no task {task_id!r} (tasks: {known}): see `flowgit status {plan_id}`")
    if from_git:
        from flowgit.ops.history import events_from_git

        evs = events_from_git(repo, plan_id, task_id)
    elif task_id is not None:
        evs = list(repo.read_log(plan_id, check_id(task_id, "task id")).events)
    else:
        evs = list(iter_events_all(repo, plan_id))
    evs = canonical(evs)
    rows = [e.to_dict() for e in evs]

    def text() -> str:
        out = []
        for e in evs:
            who = f"{e.plan}/{e.task}" if e.task else e.plan
            data = json.dumps(dict(e.data), ensure_ascii=False) if e.data else ""
            out.append(f"{e.at}  {e.clock:>5}  {e.type:<24} {who:<28} {e.actor}  {data}")
        return "\n".join(out) or "no events"
    app.out.result({"plan": plan_id, "task": task_id, "events": rows}, text)
    return 0


def graph(app: App, plan_id: str, fmt: str) -> int:
    from flowgit.core import graph as g
    from flowgit.core.model import estimate_hours

    repo = app.repo
    state = repo.state(check_id(plan_id, "plan id"))
    plan = repo.load_plan(plan_id).plan
    ids = plan_column(plan, "id")  # the tasks' fields as columns: no task built, no node object
    cps = plan.checkpoints
    known = {*ids, *(c.id for c in cps)}
    estimates = plan_column(plan, "estimate")
    try:  # a plan has a handful of distinct estimates (by type too: 0 and false differ)
        hours = {(type(e), e): estimate_hours(e) for e in set(estimates)}
        weights = [hours[type(e), e] for e in estimates]
    except TypeError:  # an estimate that is a list or a mapping
        weights = [estimate_hours(e) for e in estimates]
    states = dict(zip(state.tasks, column(state.tasks, "state")))
    workers = dict(zip(state.tasks, column(state.tasks, "worker")))
    nodes = g.Columns(
        ids=[*ids, *(c.id for c in cps)],
        titles=[*plan_column(plan, "title"), *(c.title for c in cps)],
        deps=[*(ds if all(d in known for d in ds) else tuple(d for d in ds if d in known)
                for ds in plan_column(plan, "depends_on")),
              *(tuple(a for a in c.after if a in known) for c in cps)],
        kinds=[*("task" for _ in ids), *("checkpoint" for _ in cps)],
        states=[*(states[i] for i in ids), *(state.checkpoints[c.id].state for c in cps)],
        hours=[*weights, *(0.0 for _ in cps)],
        workers=[*(workers[i] for i in ids), *(None for _ in cps)])
    found = g.analyse(nodes, fmt, title=plan.title)
    rendered = found.text
    result = {
        "plan": plan_id, "format": fmt, "graph": rendered,
        "critical_path": found.critical_path,
        "parallel_groups": found.parallel_groups,
        "execution_order": found.execution_order,
    }
    app.out.result(result, rendered)
    return 0
