"""What a reviewer reads: a checkpoint's review (changes, validations, notes) and the semantic
comparison of two snapshots of `.flow/`. Shared by the CLI and the board."""
from __future__ import annotations

from typing import Any

from flowgit import git
from flowgit.clock import wall_now
from flowgit.core.events import PLAN_LOG, canonical
from flowgit.core.fold import PlanState
from flowgit.formats import commanddiff
from flowgit.formats.plandiff import diff_adrs, diff_plan
from flowgit.store.files import line_of
from flowgit.store.repo import FlowRepo
from flowgit.store.snapshot import Snapshot


def upstream(repo: FlowRepo, plan_id: str, cp_id: str) -> list[str]:
    """The tasks a checkpoint waits on, directly or through others, in plan order."""
    plan = repo.load_plan(plan_id).plan
    deps = {t.id: t.depends_on for t in plan.tasks}
    deps.update({c.id: c.after for c in plan.checkpoints})
    seen: list[str] = []
    stack = list(deps.get(cp_id, ()))
    while stack:
        node = stack.pop()
        if node in seen or node not in deps:
            continue
        seen.append(node)
        stack.extend(deps[node])
    return [t.id for t in plan.tasks if t.id in seen]


def recorded_validations(repo: FlowRepo, plan_id: str, cp_id: str) -> dict[str, dict[str, Any]]:
    """The results of the checkpoint's validations recorded since it was last reached."""
    entered = None
    validations: dict[str, dict[str, Any]] = {}
    for ev in canonical(repo.plan_events(plan_id)):
        if ev.type == "plan.phase" and ev.data.get("checkpoint") == cp_id:
            entered = ev.clock
            validations = {}
        elif ev.type == "checkpoint.validation" and ev.data.get("checkpoint") == cp_id and entered is not None:
            validations[ev.data["name"]] = {k: ev.data.get(k) for k in ("name", "argv", "exit_code", "duration", "output_tail")}
    return validations


def checkpoint_review(repo: FlowRepo, plan_id: str, cp_id: str, state: PlanState) -> dict[str, Any]:
    """What a reviewer needs: changes since execution began, validation results, notes."""
    base = state.base_commit
    files: list[dict[str, Any]] = []
    if base is not None and not git.is_full_id(base):  # from the log: it must never reach git as is
        line = None
        if repo.state_store is None:
            line = line_of(repo.log_file(plan_id, PLAN_LOG), "base_commit", base)
        git.check_full_id(base, repo.log_display(plan_id, PLAN_LOG) + (f":{line}" if line else ""), "base_commit")
    # a commit this clone does not have (a shallow clone, a rewritten history, a forged line):
    # the changes are unknown, never "0 files"
    missing = bool(base) and git.resolve_commit(repo.root, str(base), "base_commit") is None
    if base and not missing and git.head(repo.root):
        stats = git.diff_numstat(repo.root, base, "HEAD", exclude=".flow")
        files = [{"path": s.path, "added": s.added, "removed": s.removed} for s in stats]
    validations = recorded_validations(repo, plan_id, cp_id)
    notes = []
    for tid in upstream(repo, plan_id, cp_id):
        view = state.tasks.get(tid)
        if view and view.record.note:
            notes.append({"task": tid, "note": view.record.note, "state": view.state})
    return {"checkpoint": cp_id, "state": state.checkpoints[cp_id].state, "base_commit": base,
            "base_commit_missing": missing,
            "changes": {"files": files, "added": sum(f["added"] for f in files),
                        "removed": sum(f["removed"] for f in files)},
            "validations": list(validations.values()), "not_run": not_run(repo, plan_id, cp_id, validations),
            "notes": notes}


def not_run(repo: FlowRepo, plan_id: str, cp_id: str, recorded: dict[str, Any]) -> list[dict[str, Any]]:
    """The checkpoint's validations with no result since it was reached, and the command that
    runs them (`trusted`: whether this clone would run them; if not, why)."""
    from flowgit.ops import trust
    from flowgit.ops.phases import validation_command, validations_for

    plan = repo.load_plan(plan_id).plan
    out = []
    for v in validations_for(repo, plan, cp_id):
        if v.name in recorded:
            continue
        why = trust.why_untrusted(repo, validation_command(plan, cp_id, v), plan_id)
        out.append({"name": v.name, "argv": list(v.argv), "trusted": why is None,
                    "run_with": f"flowgit checkpoint {plan_id} {cp_id} --validate",
                    **({"reason": why} if why else {})})
    return out


def compare(a: Snapshot, b: Snapshot, plan_id: str | None = None) -> dict[str, Any]:
    """The semantic diff of every plan (or one) and of the ADRs between two snapshots."""
    now = wall_now()
    ids = sorted(set(a.plans) | set(b.plans))
    if plan_id:
        ids = [plan_id] if plan_id in ids else []
    plans = []
    for pid in ids:
        old, new = a.plans.get(pid), b.plans.get(pid)
        result = diff_plan(old.raw if old else None, new.raw if new else None,
                           old_states=old.states(now) if old else {},
                           new_states=new.states(now) if new else {},
                           old_spec=old.spec if old else None, new_spec=new.spec if new else None,
                           plan_id=pid)
        if result.get("changed") or result.get("status") != "unchanged":
            plans.append(result)
    adrs = diff_adrs(a.adrs, b.adrs)
    cmds = commanddiff.compare(a.config, b.config, [
        (pid, a.plans[pid].raw if pid in a.plans else None, b.plans[pid].raw if pid in b.plans else None)
        for pid in ids])
    listed = {p["plan"] for p in plans}
    for pid in ids:  # a plan whose only change is a command is listed too
        found = cmds["plans"][pid]
        if pid not in listed and (found["commands_added"] or found["commands_changed"]):
            plans.append({"plan": pid, "status": "modified", "changed": True})
    for p in plans:
        p.update(cmds["plans"].get(p["plan"], {"commands_added": [], "commands_changed": []}))
    return {"from": a.label, "to": b.label, "plans": plans, "adrs": adrs, "config": cmds["config"],
            "commands_added": cmds["added"], "commands_changed": cmds["changed"]}


def completed_in(repo: FlowRepo, base: str, tip: str, plan_id: str | None) -> list[dict[str, Any]]:
    """Format 2: the tasks whose events name a code commit of `merge-base(base, tip)..tip`
    (what a pull request completed), each with the types of those events."""
    if repo.state_store is None:
        return []
    from flowgit import git_state

    commits = git_state.commits_between(repo.root, git_state.merge_base(repo.root, base, tip), tip)
    found: dict[tuple[str, str], list[str]] = {}
    for pid in [plan_id] if plan_id else repo.plan_ids():
        for task, kinds in coded_events(repo, pid).items():
            for kind, code in kinds:
                if code in commits:
                    found.setdefault((pid, task), []).append(kind)
    return [{"plan": p, "task": t, "events": sorted(set(types))} for (p, t), types in sorted(found.items())]


def coded_events(repo: FlowRepo, plan_id: str) -> dict[str, list[tuple[str, str]]]:
    """Format 2: task -> (type, code commit) of each of its events that names one. Kept by log
    blob in the git dir (a blob never changes): only logs written since are read."""
    from flowgit.core.events import parse_log
    from flowgit.store.kept import kept as kept_store

    store = repo.state_store
    assert store is not None
    kept = kept_store(repo)
    key = f"codes-{plan_id}"
    entry = kept.entry(key)
    was: dict[str, list[Any]] = entry.get("logs") or {}
    listing = {s: b for s, b in store.blobs(plan_id).items() if s != PLAN_LOG}
    now = {s: was[s] for s, b in listing.items() if s in was and was[s][0] == b}
    todo = sorted(s for s in listing if s not in now)
    contents = store.read_many([listing[s] for s in todo])
    for stream in todo:
        read = parse_log(contents.get(listing[stream], b""), store.display(plan_id, stream), plan_id, stream)
        coded = [[ev.type, ev.data["code"]] for ev in read.events if isinstance(ev.data.get("code"), str)]
        if listing[stream] in contents:
            now[stream] = [listing[stream], coded]
    if now.keys() != was.keys() or todo:
        entry["logs"] = now
        kept.changed(key)
        kept.save()
    return {s: [(k, c) for k, c in row[1]] for s, row in now.items() if row[1]}
