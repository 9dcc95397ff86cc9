"""`flowgit plan draft PLAN [--goal TEXT] --executor NAME [--rounds N] [--revise]` (CQ's /plan):
a planner agent writes the plan to `{plan_file}` (YAML or Markdown); flowgit validates it as
`validate` would and runs the agent again with the errors until it is valid, then commits it as
a draft with the rounds as `plan.drafted` events. `--revise` hands the reviewers' comments (a
`reject`, a `checkpoint --request-changes`) back to the planner (docs/planning.md)."""
from __future__ import annotations

from typing import Any, Sequence

from flowgit.core import semantic
from flowgit.core.events import PLAN_LOG, Event, make_event
from flowgit.core.model import Plan
from flowgit.errors import IllegalTransition, InvalidFile, NotFound, UsageError
from flowgit.formats import schemacheck, yamlio
from flowgit.ids import is_valid_id
from flowgit.runner import planprompts
from flowgit.runner.agentloop import read_written, run_rounds
from flowgit.runner.planning import (Say, Start, agent_job, begin, check_unchanged, finish_job,
                                     keep_text_trust, new_plan_text, plan_clock, round_events)
from flowgit.store.planedit import adr_ids, committed_text
from flowgit.store.repo import FlowRepo, actor_for
from flowgit.store.writing import commit_message

DRAFT_PHASES = ("draft",)
REVISE_PHASES = ("draft", "execute", "checkpoint")


def review_comments(events: Sequence[Event]) -> list[str]:
    """The rejections and requested changes since the last valid draft, oldest first."""
    out: list[str] = []
    for ev in events:
        if ev.type == "plan.drafted" and ev.data.get("ok"):
            out = []
        elif ev.type == "plan.rejected":
            out.append(f"rejected by {ev.data.get('reviewer') or ev.actor}: {ev.data.get('comment') or ''}".rstrip(": "))
        elif ev.type == "checkpoint.changes_requested":
            tasks = ", ".join(ev.data.get("tasks") or [])
            comment = ev.data.get("comment") or ""
            out.append(f"checkpoint {ev.data.get('checkpoint')}: changes requested by "
                       f"{ev.data.get('reviewer') or ev.actor}" + (f": {comment}" if comment else "")
                       + (f" (added as tasks {tasks}; give them descriptions, files and acceptance "
                          "criteria)" if tasks else ""))
    return out


def _as_yaml(text: str, plan_id: str, shown: str) -> tuple[str | None, list[str]]:
    """The plan as YAML text: YAML as written, or a Markdown plan (headings and checklists)."""
    data: Any = None
    yaml_error: str | None = None
    try:
        data = yamlio.loads(text, shown)
    except InvalidFile as exc:
        yaml_error = exc.message
    if isinstance(data, dict):
        return text, []
    if text.lstrip().startswith("#") or "- [" in text:
        from flowgit.formats.mdplan import parse_markdown_plan

        try:
            return yamlio.dump_new(dict(parse_markdown_plan(text, plan_id, source=shown))), []
        except ValueError as exc:
            return None, [str(exc)]
    return None, [yaml_error or f"{shown}: expected a plan (a YAML mapping with id, title and tasks, "
                  f"or a Markdown plan), got {type(data).__name__}"]


def check_plan(repo: FlowRepo, start: Start, text: str, shown: str, revise: bool,
               started: Sequence[str]) -> tuple[Plan | None, list[str]]:
    """Every problem `validate` would report (not only the first), and the planner's own rules:
    at least one task, the plan's ADRs kept, started tasks kept, and a revision changes it."""
    data = yamlio.loads(text, shown)
    errors = schemacheck.schema_errors("plan", data, text, shown)
    if errors:
        return None, errors
    try:
        plan = Plan.from_dict(data, shown)
    except InvalidFile as exc:
        return None, [exc.message]
    if plan.id != start.plan_id:
        errors.append(f"{shown}: id: {plan.id!r} is not the plan's id {start.plan_id!r}: make it {start.plan_id}")
    errors += semantic.plan_errors(plan, shown, adr_ids=adr_ids(repo),
                                   other_plan=lambda pid: _other(repo, pid, start.plan_id))
    if not plan.tasks:
        errors.append(f"{shown}: tasks: the plan has no task: list the work, task by task")
    if start.loaded is not None:
        lost = [a for a in start.loaded.plan.adrs if a not in plan.adrs]
        if lost:
            errors.append(f"{shown}: adrs: keep {', '.join(lost)} (the decisions this plan follows)")
        gone = [t for t in started if plan.task(t) is None]
        if gone:
            errors.append(f"{shown}: tasks: keep {', '.join(gone)}: work on them has started")
        if revise and yamlio.loads(start.loaded.path.read_text(encoding="utf-8"), shown) == data:
            errors.append(f"{shown}: the plan is unchanged: revise it for the reviewers' comments")
    return (None if errors else plan), errors


def _other(repo: FlowRepo, pid: str, this: str) -> Plan | None:
    if pid == this or not is_valid_id(pid):
        return None
    try:
        return repo.load_plan(pid).plan
    except NotFound:
        return None


def draft(repo: FlowRepo, plan_id: str, goal: str | None, executor_name: str, rounds: int,
          revise: bool, trust_now: bool, say: Say) -> dict[str, Any]:
    if rounds < 1:
        raise UsageError("--rounds must be at least 1")
    command = f"plan draft {plan_id}" + (" --revise" if revise else "")
    start, executor = begin(repo, plan_id, goal, executor_name, command,
                            REVISE_PHASES if revise else DRAFT_PHASES, trust_now)
    comments: list[str] = []
    started: list[str] = []
    if start.loaded is not None:
        if revise:
            comments = review_comments(repo.plan_events(plan_id))
            if not comments:
                raise IllegalTransition(f"plan {plan_id} has no `reject` or `checkpoint --request-changes` "
                                        "comment since its last draft: nothing to revise")
        records = repo.records(plan_id)
        started = sorted(t for t, r in records.items() if r.events)
    elif revise:
        raise UsageError(f"plan {plan_id} does not exist yet: draft it first (without --revise)")
    job = agent_job(repo, executor, plan_id, "plan draft", ["plan_file"])
    plan_file = job.files["plan_file"]
    current = start.loaded.path.read_text(encoding="utf-8") if start.loaded else \
        new_plan_text(plan_id, start.goal)
    plan_file.write_text(current, encoding="utf-8")
    found: dict[str, Any] = {}

    def prompt_for(errors: Sequence[str], n: int) -> str:
        return planprompts.draft_prompt(plan_id, start.title, start.goal, start.spec, start.adrs,
                                        str(plan_file), True, comments, errors, n)

    def check() -> list[str]:
        text, err = read_written(plan_file, "the plan (YAML or Markdown)")
        if err is not None or text is None:
            return [err or "nothing written"]
        shown = str(plan_file)
        yaml_text, errors = _as_yaml(text, plan_id, shown)
        if yaml_text is None:
            return errors
        plan, errors = check_plan(repo, start, yaml_text, shown, revise, started)
        found.update(text=yaml_text, plan=plan)
        return errors

    done = run_rounds(job, rounds, prompt_for, check, say)
    text, plan = found["text"], found["plan"]
    actor = actor_for(repo, None)
    with repo.writing(plan_id) as w:
        check_unchanged(repo, start, command)
        path = repo.plan_file(plan_id)
        clock = plan_clock(repo, plan_id)
        events = []
        if start.loaded is None:
            events.append(make_event("plan.created", plan_id, None, actor, clock,
                                     {"title": plan.title, "tasks": len(plan.tasks), "parent": plan.parent}, w.now))
        else:
            committed_text(repo, path, command)  # refuses the user's uncommitted edits
        w.replace(path, text.encode())
        events += round_events(repo, plan_id, "plan.drafted", done, executor.name, actor, w.now,
                               clock + len(events), {"revise": revise})
        w.append(PLAN_LOG, events)
        w.message = commit_message(plan_id, None, "revised" if revise else "drafted", actor)
    warnings = keep_text_trust(repo, start, "plan draft")
    finish_job(job)
    state = repo.state(plan_id)
    open_questions = [str(q.get("id")) for q in (start.spec or {}).get("questions") or []
                      if isinstance(q, dict) and not (q.get("answer") or "")]
    if open_questions:
        warnings.append(f"questions still open: {', '.join(open_questions)} (the planner assumed "
                        f"answers; `flowgit spec answer {plan_id} QID TEXT`, then --revise)")
    return {"plan": plan_id, "created": start.loaded is None, "phase": state.phase,
            "tasks": len(plan.tasks), "checkpoints": len(plan.checkpoints), "rounds": len(done),
            "round_errors": [len(r.errors) for r in done], "executor": executor.name,
            "revise": revise, "comments": comments, "commit": w.sha, "warnings": warnings}
