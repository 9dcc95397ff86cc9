"""`flowgit explore PLAN --goal TEXT --executor NAME` (CQ's /pi) and `flowgit spec answer`: an
agent writes the questions a person must answer and an ADR draft (options, pros and cons, a
recommendation); flowgit checks both against the spec and ADR schemas, loops on errors, and
commits them as the plan's open questions and a proposed ADR (docs/planning.md)."""
from __future__ import annotations

import re
import unicodedata
from datetime import date
from pathlib import Path
from typing import Any, Mapping, Sequence

from flowgit.core.events import PLAN_LOG, make_event
from flowgit.errors import Dirty, IllegalTransition, InvalidFile, NotFound, UsageError
from flowgit.formats import schemacheck, yamlio
from flowgit.ids import check_id
from flowgit.ops import trust
from flowgit.runner import planprompts
from flowgit.runner.agentloop import read_written, run_rounds
from flowgit.runner.planning import (Say, agent_job, begin, check_unchanged, finish_job,
                                     keep_text_trust, new_plan_text, plan_clock, round_events)
from flowgit.store.planedit import adr_ids, committed_text
from flowgit.store.repo import FlowRepo, actor_for
from flowgit.store.writing import commit_message

ADR_KEYS = ("id", "title", "status", "date", "plans", "context", "options", "decision",
            "consequences", "supersedes", "superseded_by")
PENDING_ADR = "ADR-new"  # stands for the id flowgit gives the draft when it commits it


def slug(title: str) -> str:
    plain = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    out = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")
    return out[:40].strip("-") or "decision"


def _load(path: Path, what: str) -> tuple[Any, str, list[str]]:
    text, err = read_written(path, what)
    if err is not None or text is None:
        return None, "", [err or f"{path}: nothing written"]
    try:
        return yamlio.loads(text, str(path)), text, []
    except InvalidFile as exc:
        return None, text, [exc.message]


def check_questions(path: Path, plan_id: str, spec: Mapping[str, Any] | None,
                    tasks: Sequence[str]) -> tuple[dict[str, Any] | None, list[str]]:
    """The explorer's questions (and requirements), as the spec schema and the spec already
    there allow: new ids, no answers (a person gives them), tasks that exist."""
    data, text, errors = _load(path, "the questions as YAML (questions: [...])")
    if errors:
        return None, errors
    shown = str(path)
    if not isinstance(data, dict):
        return None, [f"{shown}: expected a mapping with `questions:` (and `requirements:`), got "
                      f"{type(data).__name__}"]
    doc = {"plan": plan_id, **data}
    errors = schemacheck.schema_errors("spec", doc, text, shown)
    if doc["plan"] != plan_id:
        errors.append(f"{shown}: plan: {doc['plan']!r} is not {plan_id!r}: leave it out")
    if "questions" not in data:
        errors.append(f"{shown}: questions: missing: list the questions a person must answer "
                      "(an empty list if there are none)")
    for key, what in (("questions", "question"), ("requirements", "requirement")):
        taken = [str(q.get("id")) for q in (spec or {}).get(key) or [] if isinstance(q, dict)]
        seen: set[str] = set()
        for i, item in enumerate(doc.get(key) or []):
            if not isinstance(item, dict):
                continue
            ident = item.get("id")
            if ident in taken:
                errors.append(f"{shown}: {key}[{i}].id: {ident!r} is taken already in spec.yaml "
                              f"(taken: {', '.join(taken)}): pick a new id")
            elif ident in seen:
                errors.append(f"{shown}: {key}[{i}].id: duplicate {what} id {ident!r}")
            seen.add(str(ident))
            if key == "questions" and item.get("answer") not in (None, ""):
                errors.append(f"{shown}: questions[{i}].answer: leave it out: a person answers "
                              f"(`flowgit spec answer {plan_id} {ident} TEXT`)")
            for ref in item.get("tasks") or [] if key == "requirements" else []:
                if ref not in tasks:
                    errors.append(f"{shown}: requirements[{i}].tasks: {ref!r} is not a task of plan "
                                  f"{plan_id}: leave tasks out (the planner links them)")
    return (None if errors else doc), errors


def check_adr(path: Path, plan_id: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The explorer's ADR draft: the ADR schema, with at least two options, their pros and cons,
    and a recommendation in `decision`. flowgit gives it its id, status, date and plan."""
    data, text, errors = _load(path, "the ADR draft as YAML (title, context, options, decision)")
    if errors:
        return None, errors
    shown = str(path)
    if not isinstance(data, dict):
        return None, [f"{shown}: expected a mapping with title, context, options and decision, "
                      f"got {type(data).__name__}"]
    doc = {"id": PENDING_ADR, "status": "proposed", "date": date.today().isoformat(),
           "plans": [plan_id], **{k: v for k, v in data.items() if k != "id"}}
    errors = schemacheck.schema_errors("adr", doc, text, shown)
    if doc.get("status") != "proposed":
        errors.append(f"{shown}: status: leave it out (a draft is proposed; a person accepts it)")
    if doc.get("plans") != [plan_id] and isinstance(doc.get("plans"), list) and plan_id not in doc["plans"]:
        errors.append(f"{shown}: plans: name {plan_id!r} (or leave plans out)")
    options = doc.get("options")
    if not isinstance(options, list) or len(options) < 2:
        errors.append(f"{shown}: options: give at least two options, each with its pros and cons")
    else:
        for i, opt in enumerate(options):
            if isinstance(opt, dict) and not (opt.get("pros") or opt.get("cons")):
                errors.append(f"{shown}: options[{i}]: give its pros and cons")
    if not isinstance(doc.get("decision"), str) or not doc["decision"].strip():
        errors.append(f"{shown}: decision: write the option you recommend and why")
    ordered = {k: doc[k] for k in ADR_KEYS if k in doc}
    ordered.update({k: v for k, v in doc.items() if k not in ordered})
    return (None if errors else ordered), errors


def _spec_text(repo: FlowRepo, plan_id: str, found: Mapping[str, Any]) -> str:
    path = repo.spec_file(plan_id)
    new = {k: list(found.get(k) or []) for k in ("requirements", "questions")}
    if not path.exists():
        return yamlio.dump_new({"plan": plan_id, **{k: v for k, v in new.items() if v or k == "questions"}})
    text = yamlio.read_text(path)
    doc = yamlio.rt_load(text, repo.rel(path))
    if not isinstance(doc, dict):
        raise InvalidFile(f"{repo.rel(path)}: expected a mapping: fix it, then explore again")
    for key, items in new.items():
        if not items:
            continue
        if doc.get(key) is None:
            doc[key] = items
        else:
            doc[key].extend(items)
    return yamlio.rt_dump(doc, like=text)


def explore(repo: FlowRepo, plan_id: str, goal: str | None, executor_name: str, rounds: int,
            trust_now: bool, say: Say) -> dict[str, Any]:
    if rounds < 1:
        raise UsageError("--rounds must be at least 1")
    command = f"explore {plan_id}"
    start, executor = begin(repo, plan_id, goal, executor_name, command, ("draft",), trust_now)
    tasks = [t.id for t in start.loaded.plan.tasks] if start.loaded else []
    taken = [str(q.get("id")) for q in (start.spec or {}).get("questions") or [] if isinstance(q, dict)]
    job = agent_job(repo, executor, plan_id, "explore", ["questions_file", "adr_file"])
    found: dict[str, Any] = {}

    def prompt_for(errors: Sequence[str], n: int) -> str:
        return planprompts.explore_prompt(plan_id, start.title, start.goal, start.spec, start.adrs,
                                          str(job.files["questions_file"]), str(job.files["adr_file"]),
                                          taken, errors, n)

    def check() -> list[str]:
        questions, q_errors = check_questions(job.files["questions_file"], plan_id, start.spec, tasks)
        adr, a_errors = check_adr(job.files["adr_file"], plan_id)
        found.update(questions=questions, adr=adr)
        return q_errors + a_errors

    done = run_rounds(job, rounds, prompt_for, check, say)
    actor = actor_for(repo, None)
    questions, adr = found["questions"], found["adr"]
    with repo.writing(plan_id) as w:
        check_unchanged(repo, start, command)
        numbers = [int(a.split("-")[1]) for a in adr_ids(repo)]
        adr_id = f"ADR-{(max(numbers) + 1 if numbers else 1):04d}"
        adr["id"] = adr_id
        adr_path = repo.safe("adrs", f"{adr_id}-{slug(str(adr['title']))}.yaml")
        w.replace(adr_path, yamlio.dump_new(adr).encode())
        plan_path = repo.plan_file(plan_id)
        clock = plan_clock(repo, plan_id)
        events = []
        if start.loaded is None:
            plan_text = new_plan_text(plan_id, start.goal, [adr_id])
            events.append(make_event("plan.created", plan_id, None, actor, clock,
                                     {"title": plan_id, "tasks": 0, "parent": None}, w.now))
        else:
            text = committed_text(repo, plan_path, command)
            doc = yamlio.rt_load(text, repo.rel(plan_path))
            if doc.get("adrs") is None:
                doc.insert(list(doc).index("tasks") if "tasks" in doc else len(doc), "adrs", [adr_id])
            else:
                doc["adrs"].append(adr_id)
            if goal and goal != start.loaded.plan.goal:
                doc["goal"] = goal
            plan_text = yamlio.rt_dump(doc, like=text)
        w.replace(plan_path, plan_text.encode())
        w.replace(repo.spec_file(plan_id), _spec_text(repo, plan_id, questions).encode())
        extra = {"adr": adr_id, "questions": [q["id"] for q in questions.get("questions") or []]}
        events += round_events(repo, plan_id, "plan.explored", done, executor.name, actor, w.now,
                               clock + len(events), extra)
        w.append(PLAN_LOG, events)
        w.message = commit_message(plan_id, None, "explored", actor)
    warnings = keep_text_trust(repo, start, "explore")
    finish_job(job)
    asked = [q["id"] for q in questions.get("questions") or []]
    return {"plan": plan_id, "created": start.loaded is None, "questions": asked,
            "requirements": [r["id"] for r in questions.get("requirements") or []],
            "adr": adr_id, "adr_path": repo.rel(adr_path), "spec_path": repo.rel(repo.spec_file(plan_id)),
            "rounds": len(done), "executor": executor.name, "commit": w.sha, "warnings": warnings}


def answer(repo: FlowRepo, plan_id: str, question_id: str, text: str) -> dict[str, Any]:
    """`flowgit spec answer PLAN QID TEXT`: a person answers an open question in spec.yaml."""
    repo.require_init()
    check_id(plan_id, "plan id")
    check_id(question_id, "question id")
    if not text.strip():
        raise UsageError("the answer is empty: give the answer as TEXT")
    repo.load_plan(plan_id)
    path = repo.spec_file(plan_id)
    rel = repo.rel(path)
    if not path.exists():
        raise NotFound(f"plan {plan_id} has no spec ({rel}): `flowgit explore {plan_id}` asks "
                       "questions, or write them there")
    actor = actor_for(repo, None)
    trusted_before = trust.trusted_material(repo, plan_id)
    from flowgit.core.fold import phase_of

    with repo.writing(plan_id) as w:
        if phase_of(repo.plan_events(plan_id)).phase == "complete":
            raise IllegalTransition(f"plan {plan_id} is complete, which is final: nothing to answer")
        from flowgit import git

        if git.changed_paths(repo.root, rel):
            raise Dirty(f"{rel} has uncommitted changes: commit them (an answer written there "
                            "counts as well) or stash them first")
        source = yamlio.read_text(path)
        doc = yamlio.rt_load(source, rel)
        questions = doc.get("questions") if isinstance(doc, dict) else None
        match = [q for q in questions or [] if isinstance(q, dict) and q.get("id") == question_id]
        if not match:
            known = ", ".join(str(q.get("id")) for q in questions or [] if isinstance(q, dict)) or "none"
            raise NotFound(f"{rel} has no question {question_id!r} (questions: {known})")
        previous = match[0].get("answer")
        match[0]["answer"] = text
        new = yamlio.rt_dump(doc, like=source)
        errors = schemacheck.schema_errors("spec", yamlio.loads(new, rel), new, rel)
        if errors:
            raise InvalidFile(errors[0])
        w.replace(path, new.encode())
        w.message = commit_message(plan_id, None, f"{question_id} answered", actor)
    if trusted_before is not None:
        trust.keep_plan_trust(repo, plan_id, trusted_before, "spec answer")
    open_left = [str(q.get("id")) for q in questions or [] if isinstance(q, dict)
                 and q.get("id") != question_id and not (q.get("answer") or "").strip()]
    return {"plan": plan_id, "question": question_id, "answer": text,
            "replaced": previous if isinstance(previous, str) and previous.strip() else None,
            "open": open_left, "commit": w.sha}
