"""`task edit` and `task remove`: one task's text in plan.yaml changed or cut in place (the rest
of the file kept byte for byte), checked as `validate` would, and committed through the write
door; never over uncommitted edits of plan.yaml (ADR 0008)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from flowgit.cli.app import App
from flowgit.core.index import lazy_rows
from flowgit.core.commands import task_commands
from flowgit.core.fold import phase_of
from flowgit.core.model import PATH_RULE, path_problem
from flowgit.errors import FlowError, IllegalTransition, InvalidFile, IsCheckpoint, UsageError
from flowgit.ids import is_valid_id, split_ref
from flowgit.ops import trust
from flowgit.store import plancatch, plansplice
from flowgit.store.planedit import (
    check_plan_text,
    committed_text,
    dependents,
    remove_task_text,
)
from flowgit.store.repo import FlowRepo, actor_for
from flowgit.store.writing import commit_message

# --clear FIELD: the optional fields a task can do without
CLEARABLE = ("description", "depends_on", "files", "acceptance", "priority", "estimate", "run")


def _target(repo: FlowRepo, ref: str, command: str) -> tuple[str, str]:
    try:  # the splice reads every row: not a task's bucket of them (64 files to write per version)
        named, _ = split_ref(ref)
        if named is not None:
            if command == "edit" and is_valid_id(named):
                plancatch.catch_up(repo, named)  # changed outside flowgit: check what changed
            lazy_rows(repo.load_plan(named).plan)
    except FlowError:
        pass  # resolve says what is wrong
    plan_id, task_id = repo.resolve(ref)
    plan = repo.load_plan(plan_id).plan
    if plan.task(task_id) is None:
        raise IsCheckpoint(f"{plan_id}/{task_id} is a checkpoint: `flowgit task {command}` changes "
                           f"tasks; edit checkpoints in {repo.rel(repo.plan_file(plan_id))}")
    if phase_of(repo.plan_events(plan_id)).phase == "complete":
        raise IllegalTransition(f"plan {plan_id} is complete, which is final: put new work in a "
                                "new plan (`flowgit plan new NAME --parent ...`)")
    return plan_id, task_id


def changes_of(title: str | None, description: str | None, deps: Sequence[str],
               files: Sequence[str], acceptance: Sequence[str], priority: str | None,
               estimate: str | None, run_cmd: str | None, clear: Sequence[str]) -> dict[str, Any]:
    """The fields to set (None: remove) from the options; UsageError when there is none or
    one field is both set and cleared."""
    if title is not None and not title.strip():
        raise UsageError("--title must not be empty")
    for path in files:  # before YAML: it would fold a NEL (U+0085) in a quoted path into a space
        problem = path_problem(path)
        if problem:
            raise InvalidFile(f"--file: invalid path {path!r} ({problem}): use {PATH_RULE}")
    changes: dict[str, Any] = {}
    for key, value in (("title", title), ("description", description), ("depends_on", list(deps)),
                       ("files", list(files)), ("acceptance", list(acceptance)),
                       ("priority", priority), ("estimate", estimate), ("run", run_cmd)):
        if value is not None and value != []:
            changes[key] = value
    for key in clear:
        if key in changes:
            raise UsageError(f"--clear {key} and a new value for it exclude each other: give one")
        changes[key] = None
    if not changes:
        raise UsageError("nothing to change: give --title, --description, --dep, --file, --accept, "
                         "--priority, --estimate, --run or --clear FIELD")
    return changes


def task_edit(app: App, ref: str, changes: dict[str, Any]) -> int:
    repo = app.repo
    repo.require_init()
    actor = actor_for(repo, None)
    plan_id, task_id = _target(repo, ref, "edit")
    with repo.writing(plan_id) as w:
        plan_id, task_id = _target(repo, ref, "edit")  # read again under the lock
        loaded = repo.load_plan(plan_id)
        display = repo.rel(loaded.path)
        trusted_before = trust.trusted_material(repo, plan_id)
        before = loaded.plan.task(task_id)
        text = committed_text(repo, loaded.path, "task edit")
        result = plansplice.edit_task(repo, loaded, text, display, task_id, changes)
        after = result.plan.task(task_id)
        changed = [k for k in changes if getattr(before, k) != getattr(after, k)]
        if result.text != text and changed:
            plansplice.store_version(repo, result, text)
            w.replace(loaded.path, result.text.encode())
            w.message = commit_message(plan_id, task_id, "edited", actor,
                                       f"Changed: {', '.join(changed)}")
    sha = w.sha
    if sha is not None:
        plansplice.remember(repo, result, loaded.hash, task_id)
        edited = after  # as checked and written: the file need not be parsed again

        def trust_it() -> None:
            trust.written(repo, task_commands(plan_id, edited) if edited else [], [], "task edit")
            trust.keep_plan_trust(repo, plan_id, trusted_before, "task edit")
        _trust_written(app, trust_it)
    ref_text = f"{plan_id}/{task_id}"
    app.out.result({"task": ref_text, "changed": changed if sha else [], "commit": sha},
                   f"edited {ref_text}: {', '.join(changed)}" if sha else f"{ref_text} unchanged")
    return 0


def task_remove(app: App, ref: str, force: bool) -> int:
    repo = app.repo
    repo.require_init()
    actor = actor_for(repo, None)
    plan_id, task_id = _target(repo, ref, "remove")
    with repo.writing(plan_id) as w:
        plan_id, task_id = _target(repo, ref, "remove")
        loaded = repo.load_plan(plan_id)
        display = repo.rel(loaded.path)
        trusted_before = trust.trusted_material(repo, plan_id)
        waiting = dependents(repo, loaded.plan, task_id)
        if waiting:
            shown = ", ".join(waiting[:8]) + (f" and {len(waiting) - 8} more" if len(waiting) > 8 else "")
            how = (f"`flowgit task edit {plan_id}/TASK --dep ...`" if any("checkpoint" not in x for x in waiting)
                   else f"a checkpoint's `after:` in {display}")
            raise IllegalTransition(
                f"cannot remove {plan_id}/{task_id}: {shown} depend{'s' if len(waiting) == 1 else ''} "
                f"on it: remove or edit them first ({how})")
        logged = len(repo.read_log(plan_id, task_id).events)
        if logged and not force:
            raise IllegalTransition(
                f"cannot remove {plan_id}/{task_id}: it has {logged} event(s) (its history): "
                "add --force to remove it anyway (the events are kept)")
        text = committed_text(repo, loaded.path, "task remove")
        new_text = remove_task_text(text, display, task_id)
        check_plan_text(repo, new_text, display, plan_id)
        w.replace(loaded.path, new_text.encode())
        w.message = commit_message(plan_id, task_id, "removed", actor)
    sha = w.sha
    _trust_written(app, lambda: trust.keep_plan_trust(repo, plan_id, trusted_before, "task remove"))
    ref_text = f"{plan_id}/{task_id}"
    app.out.result({"task": ref_text, "removed": True, "events": logged, "commit": sha},
                   f"removed {ref_text}" + (f" (its {logged} event(s) are kept)" if logged else ""))
    return 0


def _trust_written(app: App, record: Callable[[], None]) -> None:
    """Record what a person wrote as trusted; the write itself stands if that fails."""
    try:
        record()
    except FlowError as exc:
        app.out.warn(f"written, but not recorded as trusted: {exc.message}")
