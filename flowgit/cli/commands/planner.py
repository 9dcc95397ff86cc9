"""`flowgit explore`, `flowgit plan draft` and `flowgit spec answer`: agents that explore and
plan, and the answers a person gives between them (docs/planning.md)."""
from __future__ import annotations

from typing import Any

from flowgit.cli.app import App


def explore(app: App, plan_id: str, goal: str | None, executor: str, rounds: int,
            trust_now: bool = False) -> int:
    from flowgit.runner.exploring import explore as run_explorer

    r = run_explorer(app.repo, plan_id, goal, executor, rounds, trust_now, app.out.info)
    for line in r["warnings"]:
        app.out.warn(line)

    def text() -> str:
        asked = ", ".join(r["questions"]) or "none"
        return (f"explored {plan_id} in {r['rounds']} round(s): questions {asked} in {r['spec_path']}; "
                f"{r['adr']} proposed in {r['adr_path']}\n"
                + (f"answer them: flowgit spec answer {plan_id} {r['questions'][0]} TEXT; "
                   if r["questions"] else "")
                + f"then: flowgit plan draft {plan_id} --executor {executor}")
    app.out.result(_public(r), text)
    return 0


def plan_draft(app: App, plan_id: str, goal: str | None, executor: str, rounds: int, revise: bool,
               trust_now: bool = False) -> int:
    from flowgit.runner.drafting import draft

    r = draft(app.repo, plan_id, goal, executor, rounds, revise, trust_now, app.out.info)
    for line in r["warnings"]:
        app.out.warn(line)
    verb = "revised" if revise else "drafted"
    next_step = f"review it, then: flowgit submit {plan_id}" if r["phase"] == "draft" else \
        f"phase {r['phase']}: see `flowgit status {plan_id}`"
    app.out.result(_public(r), f"{verb} {plan_id} in {r['rounds']} round(s): {r['tasks']} task(s), "
                               f"{r['checkpoints']} checkpoint(s); {next_step}")
    return 0


def spec_answer(app: App, plan_id: str, question_id: str, text: str) -> int:
    from flowgit.runner.exploring import answer

    r = answer(app.repo, plan_id, question_id, text)
    left = f"; still open: {', '.join(r['open'])}" if r["open"] else "; no question left open"
    app.out.result(r, f"answered {plan_id}/{question_id}" + (" (the previous answer is replaced)"
                                                            if r["replaced"] else "") + left)
    return 0


def _public(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k != "warnings"}
