"""The pipeline's steps as MCP prompts (clients show them as slash commands): explore, plan,
run, checkpoint, finish and review. Each is a message for the client's agent naming the tools
to use; the review prompts hold the review itself and the command a person runs to decide,
since approvals are people's (docs/SECURITY.md)."""
from __future__ import annotations

from typing import Any, Callable

Text = Callable[..., str]  # a CLI command's text output
Json = Callable[..., dict[str, Any]]  # a CLI command's JSON object


class Refused(Exception):
    """A command the prompt ran failed: the prompt says so instead (the SDK would mask it)."""

EXAMPLE = """\
id: webhooks
title: Webhook delivery
goal: Deliver each published event to every registered URL
tasks:
  - id: schema
    title: DB schema for endpoints and deliveries
    files: [db/schema.sql]
    acceptance: ["migration applies on an empty database"]
  - id: deliver
    title: Deliver with retry and backoff
    depends_on: [schema]
    files: [internal/deliver.go]
    acceptance: ["a failing URL is retried 5 times"]
checkpoints:
  - id: CP-1
    after: [deliver]
"""


def explore(plan: str, goal: str) -> str:
    return (
        f"Explore before planning `{plan}`. Goal: {goal}\n\n"
        "1. Call the prime tool (the plans in play), then read the code this goal touches.\n"
        "2. Ask me the clarifying questions whose answers change the design, one line each.\n"
        "3. Give 2 or 3 design options, each with pros and cons, and recommend one.\n"
        "Stop there and wait for my answers. Do not write code and do not create the plan yet; "
        f"when we agree, the plan step (`/plan {plan}`) writes it.")


def plan(plan: str, goal: str | None = None) -> str:
    what = f" Goal: {goal}" if goal else ""
    return (
        f"Write the flowgit plan `{plan}`.{what}\n\n"
        "Use what we settled while exploring. Small tasks (an hour or two of work each) with "
        "depends_on where order matters, the files each task changes (tasks that share files run "
        "one after the other), acceptance criteria a reviewer can check, and a checkpoint after "
        "the tasks a person should review before the rest. Ids: letters, digits, '.', '_', '-'.\n\n"
        f"Call the plan_new tool with plan={plan!r} and text= the plan's YAML, shaped like:\n\n"
        f"{EXAMPLE}\n"
        "If it is refused, fix what the error names and call plan_new again. Then show me the "
        "plan and call submit: a plan that needs an approval waits for a person's `flowgit approve`.")


def run(plan: str, worker: str = "agent") -> str:
    return (
        f"Work on the plan `{plan}` as worker `{worker}`, one task at a time:\n\n"
        f"1. claim (target={plan!r}, worker={worker!r}, context=true): the task and everything it "
        "needs (goal, acceptance, files, the notes of the tasks it depends on, requirements).\n"
        "2. Do the work in this repository; stay within the task's files; call heartbeat on long work.\n"
        "3. done with a note saying what changed and anything the next task or the reviewer must "
        "know (and files_modified); or fail with the error (mode=retry if it may pass later).\n"
        "4. Repeat. Stop when claim says nothing is ready (exit 3) and report the plan's status; "
        "at a checkpoint the plan waits for a person's review.\n"
        "Never edit files under .flow/ by hand.")


def finish(plan: str) -> str:
    return (
        f"Finish the plan `{plan}`: call the finish tool. It runs the final validations this clone "
        "trusts, writes the CHANGELOG entry and completes the plan. If it is refused, report what "
        "it names (tasks not done, a checkpoint to approve, a validation that failed or is not "
        "trusted: `flowgit trust` is a person's) and stop.")


def review_text(plan: str, text: Text, data: Json) -> str:
    """What awaits a person's decision on the plan, and the commands that decide it."""
    status = data("status", plan)
    phase = status.get("phase")
    if phase == "plan_review":
        shown = text("plan", "show", plan)
        return (
            f"Show me this review of the plan `{plan}` (phase plan_review) and summarise it: the "
            "tasks, their order, and any risk. Do not approve it yourself.\n\n"
            f"```yaml\n{shown.rstrip()}\n```\n\n"
            "To decide, I run one of these in my terminal:\n\n"
            f"    flowgit approve {plan} --reviewer YOUR_NAME [--comment TEXT]\n"
            f"    flowgit reject {plan} --reviewer YOUR_NAME --comment 'WHAT TO CHANGE'\n")
    if phase == "checkpoint":
        return checkpoint_text(plan, text, data)
    return (f"The plan `{plan}` is in {phase}: nothing awaits a review now "
            f"({status.get('progress', 0)}% done). Tell me so, with its status.")


def checkpoint_text(plan: str, text: Text, data: Json, cp: str | None = None) -> str:
    review = data("checkpoint", plan, *([cp] if cp else []))
    cp_id = review.get("checkpoint", cp or "CP")
    shown = text("checkpoint", plan, *([cp] if cp else []))
    return (
        f"Show me this review of checkpoint {cp_id} of the plan `{plan}` ({review.get('state')}) "
        "and summarise it: what changed, the validations, the notes, anything that looks wrong. "
        "Do not approve it yourself.\n\n"
        f"```\n{shown.rstrip()}\n```\n\n"
        "To decide, I run one of these in my terminal:\n\n"
        f"    flowgit checkpoint {plan} {cp_id} --approve --reviewer YOUR_NAME\n"
        f"    flowgit checkpoint {plan} {cp_id} --request-changes 'WHAT TO FIX' --reviewer YOUR_NAME\n")


def refused(exc: Refused) -> str:
    return f"flowgit refused this: {exc}\nTell me what it says; change nothing."


def register(server: Any, text: Text, data: Json) -> None:
    """The prompts on `server` (the SDK's MCPServer or FastMCP)."""

    def review(plan: str) -> str:
        try:
            return review_text(plan, text, data)
        except Refused as exc:
            return refused(exc)

    def checkpoint(plan: str, checkpoint: str | None = None) -> str:
        try:
            return checkpoint_text(plan, text, data, checkpoint)
        except Refused as exc:
            return refused(exc)

    for fn, description in (
            (explore, "Explore a goal: clarifying questions, design options, a recommendation."),
            (plan, "Write a plan (tasks, dependencies, files, acceptance, a checkpoint) and submit it."),
            (run, "Work through a plan's tasks: claim with context, work, done with a note."),
            (checkpoint, "Show a checkpoint's review and the command a person runs to decide it."),
            (finish, "Finish a plan: final validations, CHANGELOG entry, complete."),
            (review, "Show what awaits review (plan or checkpoint) and the command to decide it.")):
        server.prompt(name=fn.__name__, description=description)(fn)
