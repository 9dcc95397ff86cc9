"""`flowgit validate [PATH]... [--staged]`."""
from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Callable, Mapping

from flowgit import git
from flowgit.cli.app import App
from flowgit.cli.output import shown
from flowgit.core.model import Plan
from flowgit.errors import ExitCode, InvalidFile, NotFound, UsageError
from flowgit.formats import yamlio
from flowgit.formats.validation import ADR_RE, CONFLICT, PLAN_RE, validate_files
from flowgit.store.repo import FLOW, FlowRepo, iter_flow_files


def _collect(repo: FlowRepo, paths: list[Path]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    targets = paths or [repo.flow]
    errors = []
    for target in targets:
        full = target if target.is_absolute() else Path.cwd() / target
        full = Path(os.path.abspath(full))
        try:
            rel = full.relative_to(repo.root).as_posix()
        except ValueError:
            errors.append(f"{target}: outside the repository {repo.root}")
            continue
        if full in repo.flow.parents:  # `flowgit validate .` at the top: all of .flow/
            full, rel = repo.flow, FLOW
        if rel != FLOW and not rel.startswith(FLOW + "/"):
            errors.append(f"{rel}: not under {FLOW}/: validate checks the plans, specs, ADRs, config "
                          f"and event logs there")
            continue
        if os.path.islink(full):
            errors.append(f"{rel}: is a symlink: flowgit never follows symlinks in .flow/")
            continue
        if full.is_dir():
            for path in iter_flow_files(repo):
                if full != repo.flow and full not in path.parents:
                    continue
                if path.is_symlink():
                    errors.append(f"{path.relative_to(repo.root).as_posix()}: is a symlink: flowgit never follows symlinks in .flow/")
                elif path.is_file():
                    files[path.relative_to(repo.root).as_posix()] = path.read_bytes()
        elif full.is_file():
            files[rel] = full.read_bytes()
        else:
            errors.append(f"{rel}: no such file")
    if errors:
        raise InvalidFile(errors[0])
    return files


def _staged(repo: FlowRepo, changes: list[git.StagedChange]) -> dict[str, bytes]:
    added = [c for c in changes if c.status in "ACMRT"]
    links = [c.path for c in added if c.mode == "120000"]
    if links:
        raise InvalidFile(f"{links[0]}: is a symlink: flowgit never follows symlinks in .flow/; "
                          f"unstage it with `git rm --cached -- {shlex.quote(links[0])}`")
    blobs = git.cat_blobs(repo.root, [c.new for c in added])
    missing = [c.path for c in added if c.new not in blobs]
    if missing:
        raise InvalidFile(f"{missing[0]}: its staged content is not in this repository: "
                          f"stage it again with `git add -- {shlex.quote(missing[0])}`")
    return {c.path: blobs[c.new] for c in added}


def _broken_references(repo: FlowRepo, changes: list[git.StagedChange], staged: Mapping[str, Plan],
                       lookup: Callable[[str], Plan | None]) -> list[str]:
    """What the staged change breaks in files it leaves alone: a deleted plan that other plans
    still wait on or name as parent, a task removed from a staged plan that another plan or
    the plan's spec still names, a deleted ADR that a plan still lists."""
    gone = {m.group(1): c.path for c in changes if c.status == "D" and (m := PLAN_RE.match(c.path))}
    gone_adrs = {m.group(1): c.path for c in changes if c.status == "D" and (m := ADR_RE.match(c.path))}
    if not (gone or staged or gone_adrs):
        return []
    tasks = {pid: {t.id for t in plan.tasks} | {c.id for c in plan.checkpoints}
             for pid, plan in staged.items()}
    errors: list[str] = []
    for pid in repo.plan_ids():
        plan = None if pid in gone or pid in staged else lookup(pid)
        if plan is None:
            continue
        local = set(plan.node_ids())
        for t in plan.tasks:
            for dep in t.depends_on:
                other, _, task = dep.partition("/")
                if dep in local:
                    continue
                if other in gone:
                    errors.append(f"{gone[other]}: deleting plan {other} breaks plan {pid} (task {t.id} "
                                  f"depends on {dep!r}): remove that reference first")
                elif task and other in tasks and task not in tasks[other]:
                    errors.append(f".flow/plans/{other}/plan.yaml: {task} is gone, but plan {pid} "
                                  f"task {t.id} depends on {dep!r}: change that dependency too")
        if plan.parent in gone:
            errors.append(f"{gone[plan.parent]}: deleting plan {plan.parent} breaks plan {pid} "
                          f"(its parent is {plan.parent!r}): remove that reference first")
        for adr in [*plan.adrs, *(a for t in plan.tasks for a in t.adrs)]:
            if adr in gone_adrs:
                errors.append(f"{gone_adrs[adr]}: deleting {adr} breaks plan {pid}, which lists it: "
                              "remove it from the plan first")
    for pid in staged:
        spec = repo.spec_file(pid)
        if any(c.path == repo.rel(spec) for c in changes) or not spec.is_file():
            continue  # a staged spec was checked with the plan
        try:
            reqs = yamlio.load_file(spec, repo.rel(spec)).get("requirements") or []
        except (InvalidFile, AttributeError):
            continue
        for req in reqs:
            for ref in (req.get("tasks") or []) if isinstance(req, dict) else []:
                if ref not in tasks[pid]:
                    errors.append(f".flow/plans/{pid}/plan.yaml: {ref} is gone, but {repo.rel(spec)} "
                                  f"requirement {req.get('id')} names it: change the spec too")
    return errors


def _checked_plans(repo: FlowRepo, files: Mapping[str, bytes]) -> dict[str, Plan]:
    """The plan files whose exact content passed the checks of one file before (by digest):
    their plans, as `load_plan` holds them, without parsing them again."""
    from flowgit.store import plansplice

    out = {}
    for rel, data in files.items():
        m = PLAN_RE.match(rel)
        if m and not CONFLICT.search(data):
            plan = plansplice.checked_plan(repo, m.group(1), data)
            if plan is not None:
                out[rel] = plan
    return out


def validate(app: App, paths: list[Path], staged: bool, base: str | None = None) -> int:
    import gc

    gc.disable()  # a big plan parsed and checked: nothing of it is a cycle (issue 17)
    try:
        return _validate(app, paths, staged, base)
    finally:
        gc.enable()


def _validate(app: App, paths: list[Path], staged: bool, base: str | None) -> int:
    repo = app.repo
    if staged and base:
        raise UsageError("give --staged (the pre-commit hook) or --base REV (a pull request), not both")
    if staged:
        from flowgit.store.appendonly import append_only_errors

        changes = git.staged_changes(repo.root, FLOW, git.hook_index_env())
        files = _staged(repo, changes)
        extra = append_only_errors(repo, changes)
    else:
        repo.require_init()
        files = _collect(repo, paths)
        extra = []
        if base:
            from flowgit.store.appendonly import append_only_since

            extra = append_only_since(repo, base)

    def lookup(pid: str) -> Plan | None:
        try:
            return repo.load_plan(pid).plan
        except (NotFound, InvalidFile):
            return None

    from flowgit.store import plansplice
    from flowgit.store.planedit import adr_ids

    plan_dirs = repo.plan_ids() if repo.flow.is_dir() else []
    checked = _checked_plans(repo, files) if repo.flow.is_dir() else {}
    report = validate_files(files, lookup, adr_ids(repo) if repo.flow.is_dir() else [], plan_dirs, checked)
    for rel in report.plans_ok:
        if rel not in checked and (m := PLAN_RE.match(rel)):
            plansplice.record_checked(repo, m.group(1), files[rel])
    errors = extra + report.errors
    if staged:
        errors += _broken_references(repo, changes, report.plans, lookup)
    counted = report.files
    if not staged and not paths and repo.state_store is not None:
        from flowgit.store.statelogs import check_state_logs

        logs, state_errors, state_warnings = check_state_logs(repo)
        counted += logs
        from flowgit.ops.statesync import tree_oddities

        errors += state_errors + tree_oddities(repo)
        report.warnings.extend(state_warnings)
    plansplice.store(repo).save()
    result = {"ok": not errors, "files": counted, "errors": errors}
    if report.warnings:
        result["warnings"] = report.warnings
    for line in report.warnings:
        app.out.warn(line)
    if errors:
        if app.out.as_json:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            app.out.result({"error": {"code": InvalidFile.code, "message": errors[0] + more}, **result})
        else:
            for line in errors:
                app.out.err.write(f"{shown(line)}\n")
            if len(errors) > 1:
                app.out.err.write(f"flowgit: {len(errors)} problems in {report.files} file(s)\n")
        return ExitCode.USER
    app.out.result(result, f"ok: {report.files} file(s) valid")
    return 0
