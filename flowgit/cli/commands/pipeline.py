"""The pipeline: submit, approve, reject, checkpoint, finish, halt, resume, advance."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, Callable, Sequence

from flowgit import git
from flowgit.cli.app import App
from flowgit.cli.output import shown
from flowgit.core.commands import plan_commands
from flowgit.core.events import PLAN_LOG, Event, make_event
from flowgit.core.fold import PlanState
from flowgit.core.lifecycle import held_by, is_link_hold
from flowgit.core.rules import decide, resume_phase
from flowgit.errors import (
    DirtyChangelog,
    ExitCode,
    FlowError,
    GitBusy,
    IllegalTransition,
    InvalidFile,
    NotFound,
    PlanEdited,
    Stalled,
    UsageError,
    ValidationFailed,
)
from flowgit.ids import check_id
from flowgit.ops import trust
from flowgit.ops.phases import (
    advance_plan,
    entered_checkpoint,
    facts_for,
    plan_clock,
    run_validation,
    validation_command,
    validation_events,
    validations_for,
)
from flowgit.ops.review import checkpoint_review, recorded_validations
from flowgit.store.repo import FlowRepo, actor_for, automatic_actor, plan_hash
from flowgit.store.writing import commit_message

PAST_REVIEW = ("execute", "checkpoint", "finish", "complete")

Build = Callable[[PlanState, int, float], tuple[list[Event], dict[Path, bytes], str]]


def _transact(repo: FlowRepo, plan_id: str, actor: str, build: Build) -> str | None:
    """A plan-level transition: `build` returns the plan events, whole files and event name."""
    with repo.writing(plan_id) as w:
        refuse_held(plan_id, w.state)
        events, files, name = build(w.state, plan_clock(repo, plan_id), w.now)
        w.append(PLAN_LOG, events)
        for path, data in files.items():
            w.replace(path, data)
        w.message = commit_message(plan_id, None, name, actor)
    return w.sha


def refuse_held(plan_id: str, state: PlanState) -> None:
    """An unreadable line in the plan log leaves the phase, the approvals and the checkpoint
    decisions in doubt: nothing about the plan is decided (or validated) until it is fixed."""
    if state.held:
        raise InvalidFile(f"plan {plan_id} is held by {held_by(state.held)}; nothing about the "
                          "plan can be decided until then")


def _finish(app: App, plan_id: str, actor: str, result: dict[str, Any], text: str) -> int:
    moves = app.advance_after(plan_id, actor)
    state = app.repo.state(plan_id)
    result.update({"phase": state.phase, "moves": moves})
    lines = [text] + [f"phase {m['from']} -> {m['to']} ({m['reason']})" for m in moves]
    app.out.result(result, "\n".join(lines))
    return 0


def _phase(d: dict[str, Any], to: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"to": to, "reason": reason, **extra}


def submit(app: App, plan_id: str) -> int:
    from flowgit.store.planedit import check_plan_text

    repo = app.repo
    check_id(plan_id, "plan id")
    actor = actor_for(repo, None)
    loaded = repo.load_plan(plan_id)
    check_plan_text(repo, loaded.path.read_text(encoding="utf-8"), repo.rel(loaded.path), plan_id)

    def build(state: PlanState, clock: int, now: float) -> tuple[list[Event], dict[Path, bytes], str]:
        if state.phase != "draft":
            raise IllegalTransition(f"plan {plan_id} is in {state.phase}, not draft: nothing to submit")
        if not repo.load_plan(plan_id).plan.tasks:
            raise IllegalTransition(f"plan {plan_id} has no tasks: add some with `flowgit task add` first")
        ev = make_event("plan.phase", plan_id, None, actor, clock,
                        {"to": "plan_review", "reason": "submitted", "from": "draft"}, now)
        return [ev], {}, "submitted"

    sha = _transact(repo, plan_id, actor, build)
    return _finish(app, plan_id, actor, {"plan": plan_id, "commit": sha}, f"submitted {plan_id} for review")


def only_people(repo: FlowRepo, what: str, reviewer: str) -> tuple[str, dict[str, str]]:
    """How this approval is made and the git identity making it; an agent's channel is refused
    unless config names the agent (approvals.agents)."""
    from flowgit.store.trust import channel, identity

    how = channel()
    if how != "cli" and reviewer not in repo.config.approval_agents:
        through = "flowgit mcp" if how == "mcp" else "a process that flowgit started (FLOWGIT_AGENT is set)"
        raise trust.AgentRefused(
            f"{what}: refused: an approval through {through} is an agent's, and only people approve "
            f"here; to let this agent approve, list {reviewer!r} under approvals.agents in "
            ".flow/config.yaml")
    return how, identity(repo.root)


def approve(app: App, plan_id: str, reviewer: str, comment: str | None) -> int:
    repo = app.repo
    check_id(plan_id, "plan id")
    actor = actor_for(repo, reviewer)
    how, who = only_people(repo, f"approve {plan_id}", reviewer)
    if repo.config.approvals_via == "merge":
        raise IllegalTransition(
            f"plan {plan_id}: approvals.via is merge: the plan counts as approved when its plan.yaml "
            f"reaches {repo.config.approvals_branch or 'the default branch'} through a merge (the "
            "pull request's review is the approval), not by `flowgit approve`")

    past: list[str] = []

    def build(state: PlanState, clock: int, now: float) -> tuple[list[Event], dict[Path, bytes], str]:
        if state.phase == "draft":
            raise IllegalTransition(f"plan {plan_id} is a draft: run `flowgit submit {plan_id}` first")
        digest = facts_for(repo, plan_id).plan_hash
        change = state.phase in PAST_REVIEW and _approves_a_change(repo, plan_id, state.phase, digest)
        if state.phase in PAST_REVIEW and not change:
            past.append(state.phase)  # approved already, or it needed no approval: nothing to add
            return [], {}, ""
        if state.phase != "plan_review" and state.phase not in PAST_REVIEW:
            raise IllegalTransition(f"plan {plan_id} is in {state.phase}: only a plan in review can be approved")
        if not change and any(a.reviewer == reviewer and a.plan_hash == digest for a in state.approvals):
            return [], {}, ""  # this reviewer already approved this version: nothing to add
        data: dict[str, Any] = {"reviewer": reviewer, "comment": comment or "", "plan_hash": digest,
                                "via": how, "identity": who}
        if change:  # a change under execution is accepted by as many reviewers as the plan was
            count = len({a.reviewer for a in state.approvals if a.plan_hash == digest} | {reviewer})
            data["accepts"] = count >= max(repo.config.approvals_required, 1)
        ev = make_event("plan.approved", plan_id, None, actor, clock, data, now)
        return [ev], {}, "approved"

    sha = _transact(repo, plan_id, actor, build)
    if repo.state_store is not None:
        from flowgit.store import configpin

        if configpin.uncommitted(repo):
            app.out.warn(".flow/config.yaml has uncommitted changes: an approval records the committed "
                         "config, not them; commit it and approve again for execution to follow it")
    if past:
        return _nothing_to_approve(app, plan_id, reviewer, how, who, past[0])
    trusted: list[str] = []
    if how == "cli":  # a person approved here: what the plan runs, and its text, are trusted
        plan = repo.load_plan(plan_id).plan
        new_cmds, _ = trust.record(repo, plan_commands(plan), [plan_id], f"approve {plan_id}")
        trusted = [f"{c.file} {c.key}" for c in new_cmds]
    state = repo.state(plan_id)
    needed = repo.config.approvals_required
    digest = facts_for(repo, plan_id).plan_hash
    if repo.config.approvals_signed and not any(a.reviewer == reviewer and a.plan_hash == digest
                                                for a in state.approvals):
        app.out.warn(f"approvals.signed: this approval does not count: `git verify-commit` does not "
                     f"accept its commit {str(sha)[:10]} (sign commits: commit.gpgsign and "
                     "user.signingkey; list the key in gpg.ssh.allowedSignersFile or gpg's keyring, "
                     "outside the repository)")
    return _finish(app, plan_id, actor,
                   {"plan": plan_id, "reviewer": reviewer, "commit": sha, "via": how,
                    "identity": who, "trusted": trusted, "recorded": sha is not None,
                    "approvals": len(state.approvals), "required": needed},
                   f"{'approved' if sha else 'already approved'} {plan_id} by {reviewer} "
                   f"({len(state.approvals)}/{max(needed, 1)})")


def _approves_a_change(repo: FlowRepo, plan_id: str, phase: str, digest: str) -> bool:
    """Format 2 (ADR 0011): a plan under execution follows its approved version; approving it
    again with another plan.yaml on this branch records that version (checked as `submit`
    checks a plan) for execution to follow."""
    loaded = repo.load_plan(plan_id)
    if loaded.where != "state" or phase in ("complete", "abandoned"):
        return False
    if digest == loaded.hash:  # the same plan: approving records this branch's config if it changed
        from flowgit.store import configpin

        return configpin.work_differs(repo)
    from flowgit.store.planedit import check_plan_text

    rel = repo.plan_edited(plan_id)
    if rel:  # what is recorded is a commit's file, as the phase rules act on (ADR 0008)
        raise PlanEdited(f"{rel} has uncommitted changes: commit them, then approve the version "
                         "execution is to follow")
    check_plan_text(repo, loaded.path.read_text(encoding="utf-8"), repo.rel(loaded.path), plan_id)
    return True


def _nothing_to_approve(app: App, plan_id: str, reviewer: str, how: str, who: dict[str, str],
                       phase: str) -> int:
    """`approve` on a plan past its review (approved, or `approvals.required: 0`): exit 0, no
    event, no commit, nothing trusted, and a line that says so and what the caller may mean."""
    state = app.repo.state(plan_id)
    app.out.result(
        {"plan": plan_id, "reviewer": reviewer, "commit": None, "via": how, "identity": who,
         "trusted": [], "recorded": False, "approvals": len(state.approvals),
         "required": app.repo.config.approvals_required, "phase": state.phase, "moves": []},
        f"nothing to approve: plan {plan_id} is in {phase}, past its review (approved already, or "
        f"approvals.required is 0); nothing recorded. "
        + (f"A checkpoint is approved with `flowgit checkpoint {plan_id} --approve`; "
           if phase == "checkpoint" else "")
        + f"`flowgit trust {plan_id}` trusts its commands here")
    return 0


def reject(app: App, plan_id: str, reviewer: str, comment: str) -> int:
    repo = app.repo
    check_id(plan_id, "plan id")
    actor = actor_for(repo, reviewer)
    if not comment.strip():
        raise UsageError("reject needs --comment saying what to change")

    def build(state: PlanState, clock: int, now: float) -> tuple[list[Event], dict[Path, bytes], str]:
        if state.phase != "plan_review":
            raise IllegalTransition(f"plan {plan_id} is in {state.phase}: only a plan in review can be rejected")
        return [make_event("plan.rejected", plan_id, None, actor, clock,
                           {"reviewer": reviewer, "comment": comment}, now),
                make_event("plan.phase", plan_id, None, actor, clock + 1,
                           {"to": "draft", "reason": f"rejected by {reviewer}", "from": state.phase}, now)], {}, "rejected"

    sha = _transact(repo, plan_id, actor, build)
    app.out.result({"plan": plan_id, "phase": "draft", "commit": sha},
                   f"rejected {plan_id}: back to draft ({comment})")
    return 0


# ----- checkpoints -----------------------------------------------------------------------------

def review_text(r: dict[str, Any]) -> str:
    ch = r["changes"]
    lines = [f"checkpoint {r['checkpoint']} ({r['state']})"]
    if r["base_commit_missing"]:
        lines.append(f"changes since execution began: unknown: the base commit {r['base_commit']} "
                     "is not in this clone; fetch it (`git fetch`, or `git fetch --unshallow` in a "
                     "shallow clone), or this review is incomplete")
    else:
        lines.append(f"changes since execution began: {len(ch['files'])} files, "
                     f"+{ch['added']} -{ch['removed']}")
    lines += [f"  {f['path']}  (+{f['added']} -{f['removed']})" for f in ch["files"][:50]]
    lines.append("validations:" if r["validations"] or r["not_run"] else "validations: none configured")
    for v in r["not_run"]:
        lines.append(f"  {v['name']}: not run yet; run with `{v['run_with']}`"
                     + ("" if v["trusted"] else f" once trusted ({v['reason']})"))
    for v in r["validations"]:
        mark = "ok" if v["exit_code"] == 0 else f"FAILED (exit {v['exit_code']})"
        lines.append(f"  {v['name']}: {mark} in {v['duration']}s")
        if v["exit_code"] != 0 and v["output_tail"]:
            lines += ["    " + x for x in v["output_tail"].strip().splitlines()[-10:]]
    if r["notes"]:
        lines.append("notes:")
        lines += [f"  {n['task']}: {n['note']}" for n in r["notes"]]
    return "\n".join(lines)


def _pick_checkpoint(repo: FlowRepo, plan_id: str, cp_id: str | None, state: PlanState) -> str:
    plan = repo.load_plan(plan_id).plan
    if cp_id is not None:
        check_id(cp_id, "checkpoint id")
        if plan.checkpoint(cp_id) is None:
            raise NotFound(f"plan {plan_id} has no checkpoint {cp_id!r} (has: "
                            f"{', '.join(c.id for c in plan.checkpoints) or 'none'})")
        return cp_id
    reached = [c.id for c in state.checkpoints.values() if c.state == "reached"]
    if reached:
        return reached[0]
    if not plan.checkpoints:
        raise NotFound(f"plan {plan_id} has no checkpoints")
    raise IllegalTransition(f"no checkpoint of {plan_id} is awaiting review ("
                            + ", ".join(f"{c.id}: {c.state}" for c in state.checkpoints.values()) + ")")


def split_checkpoint_args(plan_cps: Sequence[str], rest: Sequence[str],
                          changes: Sequence[str]) -> tuple[str | None, list[str]]:
    """`checkpoint PLAN [CP] --request-changes A B`: click gives A to the option and leaves B
    positional. A checkpoint id is the CP; any other word is one more change request."""
    cp_id = None
    extra: list[str] = []
    for word in rest:
        if cp_id is None and word in plan_cps and not extra:
            cp_id = word
        else:
            extra.append(word)
    if extra and not changes:
        if cp_id is None and len(extra) == 1:
            return extra[0], []  # an unknown checkpoint id: let the caller say so
        raise UsageError(f"unexpected argument(s) {' '.join(extra)!r}: give one checkpoint id")
    return cp_id, [*changes, *extra]


def checkpoint(app: App, plan_id: str, rest: Sequence[str], do_approve: bool,
               changes: Sequence[str], reviewer: str | None, comment: str | None,
               force: bool = False, validate: bool = False, trust_now: bool = False) -> int:
    from flowgit.store.planedit import append_tasks, check_plan_text, committed_text

    repo = app.repo
    check_id(plan_id, "plan id")
    cp_id, changes = split_checkpoint_args(
        [c.id for c in repo.load_plan(plan_id).plan.checkpoints], rest, changes)
    if sum((do_approve, bool(changes), validate)) > 1:
        raise UsageError("give one of --approve, --request-changes or --validate")
    if force and not do_approve:
        raise UsageError("--force goes with --approve (approving despite failed validations)")
    if not do_approve and not changes and not validate:
        # the view only reads: it applies no move and runs no validation (docs/SECURITY.md)
        state = repo.state(plan_id)
        if state.held:  # what the review shows (its base commit, say) may be the unreadable line
            if is_link_hold(state.held):
                refuse_held(plan_id, state)
            repo.read_log(plan_id, PLAN_LOG).check()
        cp = _pick_checkpoint(repo, plan_id, cp_id, state)
        r = checkpoint_review(repo, plan_id, cp, state)
        app.out.result({"plan": plan_id, **r}, review_text(r))
        return 0
    actor = actor_for(repo, reviewer)
    if trust_now:
        trust.for_this_run(repo, [plan_id])
    app.advance_after(plan_id, actor)
    state = repo.state(plan_id)
    refuse_held(plan_id, state)
    cp = _pick_checkpoint(repo, plan_id, cp_id, state)
    if validate:
        return _validate_checkpoint(app, plan_id, cp, actor)
    if reviewer is None:
        raise UsageError("a checkpoint decision needs --reviewer NAME")
    how, who = only_people(repo, f"checkpoint {plan_id}/{cp} --approve", reviewer) if do_approve \
        else (None, {})
    trusted_before = None if do_approve else trust.trusted_material(repo, plan_id)

    def build(state: PlanState, clock: int, now: float) -> tuple[list[Event], dict[Path, bytes], str]:
        if state.checkpoints[cp].state != "reached":
            raise IllegalTransition(f"checkpoint {plan_id}/{cp} is {state.checkpoints[cp].state}, "
                                    "not awaiting review")
        if do_approve:
            recorded = recorded_validations(repo, plan_id, cp)
            failed = [v for v in recorded.values() if v.get("exit_code") != 0]
            if failed and not force:
                raise ValidationFailed(
                    f"checkpoint {plan_id}/{cp}: validation {failed[0]['name']!r} failed (exit "
                    f"{failed[0]['exit_code']}): request changes (`flowgit checkpoint {plan_id} {cp} "
                    "--request-changes TEXT`), or approve anyway with --force")
            not_run = [v.name for v in validations_for(repo, repo.load_plan(plan_id).plan, cp)
                       if v.name not in recorded]
            if not_run and not force:  # never run: an untrusted command was left out
                raise ValidationFailed(
                    f"checkpoint {plan_id}/{cp}: validation {not_run[0]!r} has not run (see "
                    f"`flowgit checkpoint {plan_id} {cp}`): run it with `flowgit checkpoint {plan_id} "
                    f"{cp} --validate` once trusted, or approve anyway with --force")
            failed += [{"name": name} for name in not_run]
            approval: dict[str, Any] = {"checkpoint": cp, "reviewer": reviewer, "comment": comment or "",
                                        "via": how, "identity": who}
            if failed:  # said in the log: approved over these failures
                approval["forced"] = [v["name"] for v in failed]
            return [make_event("checkpoint.approved", plan_id, None, actor, clock, approval, now)], {}, \
                f"checkpoint {cp} approved" + (" despite failed validations" if failed else "")
        loaded = repo.load_plan(plan_id)
        existing = set(loaded.plan.node_ids())
        new_tasks, n = [], 1
        for text in changes:
            while f"{cp}-fix-{n}" in existing:
                n += 1
            tid = f"{cp}-fix-{n}"
            existing.add(tid)
            new_tasks.append({"id": tid, "title": text})
        content = committed_text(repo, loaded.path, "checkpoint --request-changes")
        for t in new_tasks:
            content = append_tasks(content, repo.rel(loaded.path), [t], checkpoint_after=(cp, t["id"]))
        check_plan_text(repo, content, repo.rel(loaded.path), plan_id)
        data = content.encode()
        ev = make_event("checkpoint.changes_requested", plan_id, None, actor, clock,
                        {"checkpoint": cp, "reviewer": reviewer, "comment": comment or "",
                         "tasks": [t["id"] for t in new_tasks], "plan_hash": plan_hash(data)}, now)
        return [ev], {loaded.path: data}, f"checkpoint {cp} changes requested"

    sha = _transact(repo, plan_id, actor, build)
    repo.forget(plan_id)
    if not do_approve:
        trust.keep_plan_trust(repo, plan_id, trusted_before, "checkpoint --request-changes")
    verb = "approved" if do_approve else f"requested {len(changes)} change(s) at"
    return _finish(app, plan_id, actor, {"plan": plan_id, "checkpoint": cp, "commit": sha,
                                         "decision": "approved" if do_approve else "changes_requested"},
                   f"{verb} checkpoint {plan_id}/{cp}")


def _validate_checkpoint(app: App, plan_id: str, cp: str, actor: str) -> int:
    """`checkpoint PLAN CP --validate`: run the validations without a passing result since the
    plan entered this checkpoint (not run yet, or failed), and record their results."""
    repo = app.repo
    state = repo.state(plan_id)
    if state.phase != "checkpoint" or entered_checkpoint(repo.plan_events(plan_id)) != cp:
        raise IllegalTransition(f"checkpoint {plan_id}/{cp} is not under review (plan {plan_id} is in "
                                f"{state.phase}): its validations run when the plan reaches it")
    plan = repo.load_plan(plan_id).plan
    done = {v["name"] for v in checkpoint_review(repo, plan_id, cp, state)["validations"] if v["exit_code"] == 0}
    todo = [v for v in validations_for(repo, plan, cp) if v.name not in done]
    trust.require(repo, [validation_command(plan, cp, v) for v in todo], plan_id)
    results = [run_validation(v, str(repo.root)) for v in todo]

    def build(state: PlanState, clock: int, now: float) -> tuple[list[Event], dict[Path, bytes], str]:
        if state.phase != "checkpoint" or entered_checkpoint(repo.plan_events(plan_id)) != cp:
            raise IllegalTransition(f"checkpoint {plan_id}/{cp} is no longer under review")
        return validation_events(results, plan_id, cp, actor, clock, now), {}, f"checkpoint {cp} validated"

    sha = _transact(repo, plan_id, actor, build) if results else None
    repo.forget(plan_id)
    r = checkpoint_review(repo, plan_id, cp, repo.state(plan_id))
    app.out.result({"plan": plan_id, "commit": sha, "ran": [x.name for x in results], **r},
                   f"ran {len(results)} validation(s)\n" + review_text(r))
    return 0


# ----- finish, halt, resume, advance -----------------------------------------------------------

def changelog_entry(repo: FlowRepo, plan_id: str, state: PlanState) -> str:
    from flowgit.store.planedit import adr_ids

    plan = repo.load_plan(plan_id).plan
    lines = [f"## {plan.title} ({plan_id}) - {date.today().isoformat()}", ""]
    if plan.goal:
        lines += [plan.goal.strip(), ""]
    lines.append("Tasks:")
    for task in plan.tasks:
        view = state.tasks[task.id]
        note = f": {view.record.note}" if view.record.note else ""
        mark = "" if view.state == "done" else f" ({view.state})"
        lines.append(f"- {task.id} {task.title}{mark}{note}")
    adrs = [a for a in plan.adrs if a in adr_ids(repo)]
    if adrs:
        lines += ["", "Decisions: " + ", ".join(adrs)]
    return "\n".join(lines) + "\n"


def _changelog(repo: FlowRepo, entry: str) -> tuple[Path, bytes]:
    path = repo.root / "CHANGELOG.md"
    if path.is_symlink():
        raise FlowError("CHANGELOG.md is a symlink: flowgit will not write through it")
    old = path.read_text(encoding="utf-8") if path.exists() else "# Changelog\n"
    head, sep, rest = old.partition("\n")
    if head.startswith("# "):
        new = f"{head}\n\n{entry}\n{rest.lstrip(chr(10))}"
    else:
        new = f"# Changelog\n\n{entry}\n{old}"
    return path, new.rstrip("\n").encode() + b"\n"


def _changelog_is_clean(repo: FlowRepo) -> None:
    """The entry is committed with the file: the user's own uncommitted edits of CHANGELOG.md
    would go into that commit, so they must be committed (or stashed) first."""
    if git.changed_paths(repo.root, "CHANGELOG.md"):
        raise DirtyChangelog("CHANGELOG.md has uncommitted changes: commit or stash them first, "
                             "then run finish again (its entry is committed with the file)")


def finish(app: App, plan_id: str, trust_now: bool = False) -> int:
    repo = app.repo
    check_id(plan_id, "plan id")
    actor = actor_for(repo, None)
    if trust_now:
        trust.for_this_run(repo, [plan_id])
    state = repo.state(plan_id)
    refuse_held(plan_id, state)
    moves = decide(state, facts_for(repo, plan_id))
    to = moves[0].to if moves else state.phase
    if to != "finish" or state.phase not in ("execute", "finish"):
        left = [t.id for t in state.tasks.values() if t.state not in ("done", "skipped")]
        cps = [c.id for c in state.checkpoints.values() if c.state != "approved"]
        why = (f"tasks not done: {', '.join(left[:8])}" if left else
               f"checkpoints not approved: {', '.join(cps)}" if cps else f"it is {state.phase}")
        raise IllegalTransition(f"plan {plan_id} cannot finish yet ({why})")
    _changelog_is_clean(repo)
    plan = repo.load_plan(plan_id).plan
    # first, before anything is written: the final validations run only if this clone trusts
    # them, and a failed one leaves the plan as it was
    finals = validations_for(repo, plan, None)
    trust.require(repo, [validation_command(plan, None, v) for v in finals], plan_id)
    results = [run_validation(v, str(repo.root)) for v in finals]
    failed = [r for r in results if not r.ok]
    vals = [{"name": r.name, "exit_code": r.exit_code, "duration": r.duration} for r in results]
    if failed:
        result = {"plan": plan_id, "phase": state.phase, "validations": vals, "commit": None}
        if app.out.as_json:
            app.out.result({"error": {"code": ValidationFailed.code, "message": f"final validation {failed[0].name} failed"}, **result})
        else:
            app.out.err.write(f"flowgit: error: plan {plan_id}: final validation {failed[0].name!r} failed "
                              f"(exit {failed[0].exit_code}); fix it and run `flowgit finish {plan_id}` again\n")
            for line in failed[0].output_tail.strip().splitlines()[-10:]:
                app.out.err.write(f"    {line}\n")
        return ExitCode.USER
    if state.phase == "execute":
        advance_plan(repo, plan_id, actor)  # the move into `finish` the watcher would make

    def build(state: PlanState, clock: int, now: float) -> tuple[list[Event], dict[Path, bytes], str]:
        if state.phase != "finish":
            raise IllegalTransition(f"plan {plan_id} is {state.phase}, not finish")
        events = validation_events(results, plan_id, "finish", actor, clock, now)
        path, content = _changelog(repo, changelog_entry(repo, plan_id, state))
        events.append(make_event("plan.phase", plan_id, None, actor, clock + len(events),
                                 {"to": "complete", "reason": "finished", "from": "finish"}, now))
        return events, {path: content}, "complete"

    sha = _transact(repo, plan_id, actor, build)
    app.out.result({"plan": plan_id, "phase": "complete", "validations": vals, "commit": sha,
                    "changelog": "CHANGELOG.md"}, f"plan {plan_id} complete; CHANGELOG.md updated")
    return 0


def halt(app: App, plan_id: str, reason: str) -> int:
    repo = app.repo
    check_id(plan_id, "plan id")
    actor = actor_for(repo, None)

    def build(state: PlanState, clock: int, now: float) -> tuple[list[Event], dict[Path, bytes], str]:
        if state.phase in ("complete", "halted"):
            raise IllegalTransition(f"plan {plan_id} is {state.phase}: it cannot be halted")
        return [make_event("plan.phase", plan_id, None, actor, clock,
                           {"to": "halted", "reason": reason, "from": state.phase}, now)], {}, "halted"

    sha = _transact(repo, plan_id, actor, build)
    app.out.result({"plan": plan_id, "phase": "halted", "commit": sha}, f"halted {plan_id}: {reason}")
    return 0


def resume(app: App, plan_id: str) -> int:
    repo = app.repo
    check_id(plan_id, "plan id")
    actor = actor_for(repo, None)
    target = {}

    def build(state: PlanState, clock: int, now: float) -> tuple[list[Event], dict[Path, bytes], str]:
        if state.phase != "halted":
            raise IllegalTransition(f"plan {plan_id} is {state.phase}, not halted")
        target["to"] = resume_phase(state)
        still = replace(state, phase=target["to"])
        if still.stalled:
            # resuming would only halt again at once: say what keeps it stalled instead
            failed = [t.id for t in state.tasks.values() if t.state == "failed"]
            chains = "; ".join(" <- ".join(c) for c in still.stall_chains())
            raise Stalled(
                f"plan {plan_id} is still stalled: nothing could run"
                + (f" ({', '.join(failed)} failed)" if failed else "")
                + (f"; blocked: {chains}" if chains else "")
                + f": change .flow/plans/{plan_id}/plan.yaml (drop or replace the failed work) "
                  "and resume again")
        return [make_event("plan.phase", plan_id, None, actor, clock,
                           {"to": target["to"], "reason": "resumed", "from": "halted"}, now)], {}, "resumed"

    sha = _transact(repo, plan_id, actor, build)
    return _finish(app, plan_id, actor, {"plan": plan_id, "commit": sha}, f"resumed {plan_id} ({target['to']})")


def advance(app: App, plan_id: str | None, trust_now: bool = False) -> int:
    repo = app.repo
    actor = automatic_actor(repo)
    pids = [check_id(plan_id, "plan id")] if plan_id else repo.plan_ids()
    if trust_now:
        trust.for_this_run(repo, pids)
    moves: list[dict[str, Any]] = []
    broken: list[FlowError] = []
    for pid in pids:
        try:
            moves += advance_plan(repo, pid, actor)
        except GitBusy:
            raise  # a busy git or a lost race concerns every plan: those still stop the run
        except FlowError as exc:
            # one broken plan must not hold every other plan back
            if plan_id or exc.exit_code != ExitCode.USER:
                raise
            broken.append(exc)
    text = "\n".join(f"{m['plan']}: {m['from']} -> {m['to']} ({m['reason']})" for m in moves) or "nothing to do"
    if not broken:
        app.out.result({"moves": moves}, text)
        return 0
    if app.out.as_json:
        app.out.result({"error": {"code": broken[0].code, "message": broken[0].message},
                        "errors": [{"code": e.code, "message": e.message} for e in broken],
                        "moves": moves})
    else:
        if moves:
            app.out.result({"moves": moves}, text)
        for err in broken:
            app.out.err.write(f"flowgit: error: {shown(err.message)}\n")
    return ExitCode.USER
