"""Authoring: plan new/list/show, task add, adr new. Each change is one commit."""
from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any, Callable, Sequence, cast

from flowgit import git
from flowgit.cli.app import App
from flowgit.core.index import lazy_rows
from flowgit.core.events import PLAN_LOG, make_event
from flowgit.core.fold import phase_of
from flowgit.core.commands import plan_commands, task_commands
from flowgit.core.model import PATH_RULE, path_problem
from flowgit.errors import AlreadyExists, FlowError, IllegalTransition, InvalidFile, NotFound, UsageError
from flowgit.formats import yamlio
from flowgit.ids import check_id
from flowgit.ops import trust
from flowgit.store import plancatch, plansplice
from flowgit.store.planedit import adr_ids, check_plan_text, committed_text
from flowgit.store.repo import actor_for
from flowgit.store.writing import commit_message

PLAN_KEY_ORDER = ("id", "title", "goal", "description", "parent", "tags", "executor", "adrs",
                  "scope", "retry", "tasks", "checkpoints", "milestones", "risks")


def _trust_written(app: App, record: Callable[[], None]) -> None:
    """Record what a person wrote as trusted; the write itself stands if that fails."""
    try:
        record()
    except FlowError as exc:
        app.out.warn(f"written, but not recorded as trusted: {exc.message}")


def _ordered(data: dict[str, Any]) -> dict[str, Any]:
    keys = [k for k in PLAN_KEY_ORDER if k in data] + [k for k in data if k not in PLAN_KEY_ORDER]
    return {k: data[k] for k in keys}


def plan_new(app: App, plan_id: str, title: str | None, goal: str | None, source: Path | None,
             parent: str | None) -> int:
    repo = app.repo
    repo.require_init()
    check_id(plan_id, "plan id")
    if parent:
        check_id(parent, "parent plan id")
    path = repo.plan_file(plan_id)
    display = repo.rel(path)
    if path.exists():
        raise AlreadyExists(f"plan {plan_id} already exists ({display}): pick another name or edit it")
    twins = [p for p in repo.plan_ids() if p.casefold() == plan_id.casefold()]
    if twins:
        raise AlreadyExists(f"plan {twins[0]} already exists and {plan_id} differs from it only by case "
                            "(on macOS and Windows they would be one directory): pick another name")
    if source is None:
        data: dict[str, Any] = {"id": plan_id, "title": title or plan_id, "goal": goal or "", "tasks": []}
        if parent:
            data["parent"] = parent
        text = yamlio.dump_new(_ordered(data))
    else:
        text = _from_file(source, plan_id, title, goal, parent, app.out.warn)
    plan = check_plan_text(repo, text, display, plan_id)
    actor = actor_for(repo, None)
    with repo.writing(plan_id) as w:
        if path.exists():
            raise AlreadyExists(f"plan {plan_id} already exists ({display})")
        ev = make_event("plan.created", plan_id, None, actor, 1,
                        {"title": plan.title, "tasks": len(plan.tasks), "parent": plan.parent}, w.now)
        w.append(PLAN_LOG, [ev])
        w.replace(path, text.encode())
        w.message = commit_message(plan_id, None, "created", actor)
    sha = w.sha
    _trust_written(app, lambda: trust.written(repo, plan_commands(plan), [plan_id], "plan new"))
    app.out.result({"plan": plan_id, "path": display, "tasks": len(plan.tasks), "commit": sha},
                   f"created plan {plan_id} with {len(plan.tasks)} task(s): {display}")
    return 0


def _from_file(source: Path, plan_id: str, title: str | None, goal: str | None,
               parent: str | None, warn: Callable[[str], None]) -> str:
    display = str(source)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise UsageError(f"{display}: cannot read: {exc.strerror}") from None
    text = yamlio.decode(raw, display)
    if source.suffix.lower() in (".md", ".markdown"):
        from flowgit.formats.mdplan import parse_markdown_plan

        try:
            data = parse_markdown_plan(text, plan_id, source=display)
        except ValueError as exc:
            raise InvalidFile(str(exc)) from None
        if title:
            data["title"] = title
        if goal:
            data["goal"] = goal
        if parent:
            data["parent"] = parent
        return yamlio.dump_new(_ordered(dict(data)))
    doc = yamlio.rt_load(text, display)
    yamlio.loads(text, display)  # refuses aliases
    if not isinstance(doc, dict):
        raise InvalidFile(f"{display}: a plan file must be a mapping with id, title and tasks")
    doc = cast(Any, doc)  # a ruamel CommentedMap: a dict with insert()
    if doc.get("id") not in (None, plan_id):
        warn(f"{display} has id {doc.get('id')!r}: the plan is created as {plan_id!r}, "
                      "the name given on the command line")
    changes = {"id": plan_id, "title": title, "goal": goal, "parent": parent}
    if all(v is None or doc.get(k) == v for k, v in changes.items()):
        return text
    for key, value in changes.items():
        if value is not None:
            if key in doc:
                doc[key] = value
            else:
                doc.insert(1 if key == "id" else len(doc), key, value)
    if "id" not in doc:
        doc.insert(0, "id", plan_id)
    return yamlio.rt_dump(doc, like=text)


def plan_list(app: App, phase: str | None, tag: str | None) -> int:
    repo = app.repo
    rows: list[dict[str, Any]] = []
    app.warn_linked_plans()
    for pid in repo.plan_ids():
        loaded = repo.load_plan(pid)
        state = repo.state(pid)
        if phase and state.phase != phase:
            continue
        if tag and tag not in loaded.plan.tags:
            continue
        rows.append({"plan": pid, "title": loaded.plan.title, "phase": state.phase,
                     "progress": state.progress, "tasks": len(loaded.plan.tasks),
                     "tags": list(loaded.plan.tags), "parent": loaded.plan.parent})

    def text() -> str:
        if not rows:
            return "no plans" + (" match" if phase or tag else ": create one with `flowgit plan new NAME`")
        width = max(len(r["plan"]) for r in rows)
        return "\n".join(
            f"{r['plan']:<{width}}  {r['phase']:<11} {r['progress']:>3}%  {r['tasks']:>4} tasks  {r['title']}"
            + (f"  [{', '.join(r['tags'])}]" if r["tags"] else "")
            for r in rows)
    app.out.result({"plans": rows}, text)
    return 0


def plan_show(app: App, plan_id: str, rev: str | None) -> int:
    repo = app.repo
    check_id(plan_id, "plan id")
    rel = f".flow/plans/{plan_id}/plan.yaml"
    if rev:
        commit = git.resolve_commit(repo.root, rev, "revision for --rev")
        if commit is None:
            raise NotFound(f"unknown revision {rev!r}: give a commit, branch or tag (see `git log`)")
        data = git.show_blob(repo.root, commit, rel)
        if data is None:
            raise NotFound(f"{rel} does not exist at revision {rev!r}: see `flowgit history {plan_id}`")
        text = yamlio.decode(data, f"{rev}:{rel}")
        raw = yamlio.loads(text, f"{rev}:{rel}")
    else:
        loaded = repo.load_plan(plan_id)
        text = loaded.data().decode("utf-8", "replace")  # format 2: the version execution follows
        raw = loaded.raw
    app.out.result({"plan": plan_id, "rev": rev, "definition": raw}, text)
    return 0


def task_add(app: App, plan_id: str, task_id: str, title: str, description: str | None,
             deps: Sequence[str], files: Sequence[str], acceptance: Sequence[str],
             priority: str | None, estimate: str | None, run_cmd: str | None) -> int:
    repo = app.repo
    check_id(task_id, "task id")
    for path in files:  # before YAML: it would fold a NEL (U+0085) in a quoted path into a space
        problem = path_problem(path)
        if problem:
            raise InvalidFile(f"--file: invalid path {path!r} ({problem}): use {PATH_RULE}")
    actor = actor_for(repo, None)
    with repo.writing(plan_id) as w:
        plancatch.catch_up(repo, plan_id)  # changed outside flowgit: check what changed, not it all
        loaded = repo.load_plan(plan_id)
        trusted_before = trust.trusted_material(repo, plan_id)
        lazy_rows(loaded.plan)  # the splice reads every row: not the per-task buckets (64 files to write)
        if loaded.plan.task(task_id) or loaded.plan.checkpoint(task_id):
            raise AlreadyExists(f"plan {plan_id} already has {task_id!r}: pick another id")
        if phase_of(repo.plan_events(plan_id)).phase == "complete":
            raise IllegalTransition(f"plan {plan_id} is complete, which is final: put new work in "
                                    "a new plan (`flowgit plan new NAME --parent ...`)")
        task: dict[str, Any] = {"id": task_id, "title": title}
        for key, value in (("description", description), ("depends_on", list(deps)),
                           ("files", list(files)), ("acceptance", list(acceptance)),
                           ("priority", priority), ("estimate", estimate), ("run", run_cmd)):
            if value:
                task[key] = value
        text = committed_text(repo, loaded.path, "task add")
        edited = plansplice.add_task(repo, loaded, text, repo.rel(loaded.path), task)
        plansplice.store_version(repo, edited, text)
        w.replace(loaded.path, edited.text.encode())
        w.message = commit_message(plan_id, task_id, "added", actor)
    sha = w.sha
    plansplice.remember(repo, edited, loaded.hash, task_id)
    state = repo.state(plan_id, upto=task_id)
    new_task = edited.plan.task(task_id)

    def trust_it() -> None:
        trust.written(repo, task_commands(plan_id, new_task) if new_task else [], [], "task add")
        trust.keep_plan_trust(repo, plan_id, trusted_before, "task add")
    _trust_written(app, trust_it)
    if state.phase == "finish":  # new work: the rules take the plan back to execute
        app.advance_after(plan_id, actor)
        state = repo.state(plan_id)
    view = state.tasks.get(task_id)
    if view is None:  # format 2: execution follows another version of the plan (ADR 0011)
        where = repo.load_plan(plan_id).display
        app.out.result({"task": f"{plan_id}/{task_id}", "state": None, "commit": sha},
                       f"added {plan_id}/{task_id} on this branch; execution follows {where}, which "
                       "does not have it yet: it runs once the change reaches that version")
        return 0
    app.out.result({"task": f"{plan_id}/{task_id}", "state": view.state, "commit": sha},
                   f"added {plan_id}/{task_id} ({view.state})")
    return 0


def _slug(title: str) -> str:
    import unicodedata

    # "Ünïcode" -> "unicode": letters keep their base, accents and other marks go
    plain = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")
    return slug[:40].strip("-") or "decision"


def adr_new(app: App, title: str, plan_id: str | None, status: str) -> int:
    repo = app.repo
    repo.require_init()
    if not title.strip() or "\n" in title:
        raise UsageError("an ADR needs a one-line title, e.g. `flowgit adr new \"Use SQLite for the cache\"`")
    actor = actor_for(repo, None)
    trusted_before = trust.trusted_material(repo, plan_id) if plan_id else None
    with repo.writing() as w:
        numbers = [int(a.split("-")[1]) for a in adr_ids(repo)]
        adr_id = f"ADR-{(max(numbers) + 1 if numbers else 1):04d}"
        path = repo.safe("adrs", f"{adr_id}-{_slug(title)}.yaml")
        data: dict[str, Any] = {
            "id": adr_id, "title": title, "status": status, "date": date.today().isoformat(),
            "plans": [plan_id] if plan_id else [], "context": "", "options": [],
            "decision": "", "consequences": [], "supersedes": [],
        }
        w.replace(path, yamlio.dump_new(data).encode())
        if plan_id:
            loaded = repo.load_plan(plan_id)
            text = committed_text(repo, loaded.path, "adr new --plan")
            doc = yamlio.rt_load(text, repo.rel(loaded.path))
            adrs = doc.get("adrs")
            if adrs is None:
                doc.insert(len(doc) if "tasks" not in doc else list(doc).index("tasks"), "adrs", [adr_id])
            else:
                adrs.append(adr_id)
            w.replace(loaded.path, yamlio.rt_dump(doc, like=text).encode())
        w.message = commit_message(plan_id or "adr", None, f"{adr_id} created", actor)
    sha = w.sha
    if plan_id:
        repo.forget(plan_id)
        _trust_written(app, lambda: trust.keep_plan_trust(repo, plan_id, trusted_before, "adr new"))
    app.out.result({"adr": adr_id, "path": repo.rel(path), "commit": sha},
                   f"created {adr_id}: {repo.rel(path)}")
    return 0
