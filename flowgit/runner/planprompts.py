"""The prompts of the explorer and the planner agents (`flowgit explore`, `flowgit plan draft`):
what they are given and where they must write. Pure: text in, text out."""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from flowgit.resources import read_text

EXAMPLE_PLAN = """\
id: webhooks
title: Webhook delivery with retry
goal: Deliver each published event to every registered URL
adrs: [ADR-0001]
scope:
  included: [delivery, retries with backoff]
  assumptions: [at most 5 attempts, 2^n seconds apart]
tasks:
  - id: T-WH-01
    title: DB schema for webhooks and deliveries
    files: [internal/store/migrations/0007_webhooks.sql]
    acceptance: ["the migration applies and rolls back"]
  - id: T-WH-02
    title: WebhookStore
    depends_on: [T-WH-01]
    files: [internal/store/webhook_store.go]
    acceptance: ["CRUD and the pending-deliveries query are tested"]
    priority: high
checkpoints:
  - id: CP-WH
    after: [T-WH-02]
"""

EXAMPLE_QUESTIONS = """\
questions:
  - id: Q1
    question: "Delivery ordering: strict (FIFO) or best-effort?"
    options: [strict FIFO, best-effort]
  - id: Q2
    question: "Retry storage: in memory or persistent (SQLite)?"
"""

EXAMPLE_ADR = """\
title: Delivery queue for webhooks
context: Events must reach every registered URL, with up to 5 retries.
options:
  - title: In-process worker pool and a SQLite retry table
    pros: [no new infrastructure]
    cons: [lost on a crash before the queue is flushed]
  - title: A separate worker process and a Redis queue
    pros: [durable, scales out]
    cons: [needs Redis, more moving parts]
decision: "Recommended: the worker pool with SQLite, which fits the current architecture"
"""


def _section(title: str, lines: Sequence[str]) -> list[str]:
    return ["", f"## {title}", "", *lines] if lines else []


def _spec_lines(spec: Mapping[str, Any] | None) -> tuple[list[str], list[str], list[str]]:
    """(answered questions, open questions, requirements) as Markdown list items."""
    answered, open_, reqs = [], [], []
    questions, requirements = ((spec or {}).get(k) for k in ("questions", "requirements"))
    for q in questions if isinstance(questions, list) else []:
        if not isinstance(q, dict):
            continue
        answer = q.get("answer")
        if isinstance(answer, str) and answer.strip():
            answered.append(f"- {q.get('id')}: {q.get('question')}\n  Answer: {answer.strip()}")
        else:
            options = q.get("options") or []
            open_.append(f"- {q.get('id')}: {q.get('question')}"
                         + (f" (options: {'; '.join(str(o) for o in options)})" if options else ""))
    for r in requirements if isinstance(requirements, list) else []:
        if isinstance(r, dict):
            reqs.append(f"- {r.get('id')} ({r.get('kind')}): {r.get('text')}")
    return answered, open_, reqs


def _adr_lines(adrs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    for adr_id, adr in adrs.items():
        out.append(f"### {adr_id}: {adr.get('title', '')} [{adr.get('status', '?')}]")
        if adr.get("context"):
            out.append(f"Context: {str(adr['context']).strip()}")
        for opt in adr.get("options") or []:
            if isinstance(opt, dict):
                out.append(f"- Option: {opt.get('title')}; pros: {'; '.join(map(str, opt.get('pros') or [])) or '-'}"
                           f"; cons: {'; '.join(map(str, opt.get('cons') or [])) or '-'}")
        if adr.get("decision"):
            out.append(f"Decision: {str(adr['decision']).strip()}")
        out.append("")
    return out[:-1] if out else out


def _errors(errors: Sequence[str], round_no: int) -> list[str]:
    if not errors:
        return []
    return _section(f"Errors in what you wrote in round {round_no - 1} (fix them; this is round {round_no})",
                    [f"- {e}" for e in errors])


def explore_prompt(plan_id: str, title: str, goal: str, spec: Mapping[str, Any] | None,
                   adrs: Mapping[str, Mapping[str, Any]], questions_file: str, adr_file: str,
                   taken_questions: Sequence[str], errors: Sequence[str], round_no: int) -> str:
    answered, open_, reqs = _spec_lines(spec)
    lines = [f"# Explore: {title}", "",
             f"You explore a change before anyone plans it (flowgit plan {plan_id}). Read the code "
             "you need; change no file except the two below. Ask the questions a person must "
             "answer before planning, and lay out the design options with their pros and cons and "
             "your recommendation.", *_section("Goal", [goal.strip()])]
    lines += _section("Questions answered already", answered)
    lines += _section("Questions still open", open_)
    lines += _section("Requirements", reqs)
    lines += _section("Architecture decisions so far", _adr_lines(adrs))
    taken = f" (ids taken already: {', '.join(taken_questions)})" if taken_questions else ""
    lines += _section("What to write", [
        f"1. Your clarifying questions, as YAML, to this file:\n   {questions_file}",
        f"   A mapping with `questions:` (each with a new `id`{taken}, `question` and, if useful, "
        "`options`; no `answer`: a person answers) and, if you can state them, `requirements:` "
        "in EARS form (`id`, `kind`: ubiquitous | event_driven | state_driven | unwanted | "
        "optional, `text`). Example:", "", "```yaml", EXAMPLE_QUESTIONS.rstrip(), "```", "",
        f"2. One architecture decision record draft, as YAML, to this file:\n   {adr_file}",
        "   `title`, `context`, at least two `options` (each `title`, `pros`, `cons`) and "
        "`decision`: the option you recommend and why. flowgit gives it its id and status "
        "`proposed`. Example:", "", "```yaml", EXAMPLE_ADR.rstrip(), "```", "",
        "Ids: letters, digits, '.', '_' or '-', starting with a letter or digit. flowgit checks "
        "both files against its schemas and runs you again with the errors until they are valid."])
    lines += _errors(errors, round_no)
    return "\n".join(lines) + "\n"


def compact_schema() -> str:
    return json.dumps(json.loads(read_text("schemas", "plan.json")), separators=(",", ":"))


def draft_prompt(plan_id: str, title: str, goal: str, spec: Mapping[str, Any] | None,
                 adrs: Mapping[str, Mapping[str, Any]], plan_file: str, has_plan: bool,
                 comments: Sequence[str], errors: Sequence[str], round_no: int) -> str:
    answered, open_, reqs = _spec_lines(spec)
    lines = [f"# Plan: {title}", "",
             f"You write the plan for this change (flowgit plan {plan_id}): tasks small enough for "
             "one agent each, with the dependencies between them, the files each touches, "
             "acceptance criteria, and a checkpoint where a person reviews the work. Change no "
             "file except the plan file below.", *_section("Goal", [goal.strip()])]
    lines += _section("Questions and their answers", answered)
    if open_:
        lines += _section("Questions nobody has answered yet (state what you assume under "
                          "scope.assumptions)", open_)
    lines += _section("Requirements", reqs)
    lines += _section("Architecture decisions", _adr_lines(adrs))
    lines += _section("Changes the reviewers asked for (revise the plan for them)", [f"- {c}" for c in comments])
    where = (f"Edit the plan in this file (it holds the plan as it is now):\n   {plan_file}" if has_plan
             else f"Write the plan to this file:\n   {plan_file}")
    lines += _section("What to write", [
        where,
        f"As YAML (or as Markdown: headings and checklists become tasks). Its `id` is `{plan_id}`. "
        "Keep the `adrs:` it names and the ids of tasks that have started. A task's `run:` and a "
        "checkpoint's `validations` are commands: a person reviews and trusts them before they "
        "run. flowgit validates the file and runs you again with the errors until it is valid.",
        "", "A short example:", "", "```yaml", EXAMPLE_PLAN.rstrip(), "```", "",
        "The plan's JSON schema:", "", "```json", compact_schema(), "```"])
    lines += _errors(errors, round_no)
    return "\n".join(lines) + "\n"
