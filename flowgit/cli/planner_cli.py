"""The click commands of `explore`, `plan draft` and `spec answer` (docs/planning.md), added to
the command line when one of them is named (cli/main.py); each callback only unpacks its options."""
from __future__ import annotations

import click

from flowgit.cli.app import App
from flowgit.cli.options import command, trust_flag

_ROUNDS = click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True,
                       help="Runs of the agent while what it writes is invalid.")


def register(cli: click.Group) -> None:
    """`explore` and `spec`, when cli/main.py is asked for one of them."""
    @command(cli, "explore")
    @click.argument("plan_id", metavar="PLAN")
    @click.option("--goal", help="What the change achieves (needed for a new plan).")
    @click.option("--executor", required=True, help="The agent: claude, codex, gemini or one in config.")
    @_ROUNDS
    @trust_flag
    def explore_cmd(app: App, plan_id: str, goal: str | None, executor: str, rounds: int, trust_now: bool) -> int:
        """An agent asks the open questions and drafts an ADR (options, pros and cons, a recommendation)."""
        from flowgit.cli.commands import planner
        return planner.explore(app, plan_id, goal, executor, rounds, trust_now)

    @cli.group("spec")
    def spec_group() -> None:
        """A plan's requirements and questions."""

    @command(spec_group, "answer")
    @click.argument("plan_id", metavar="PLAN")
    @click.argument("question_id", metavar="QID")
    @click.argument("text")
    def spec_answer(app: App, plan_id: str, question_id: str, text: str) -> int:
        """Answer an open question of the plan's spec (spec.yaml) and commit it."""
        from flowgit.cli.commands import planner
        return planner.spec_answer(app, plan_id, question_id, text)


def register_plan(plan_group: click.Group) -> None:
    """`plan draft`, into the `plan` group (cli/authoring_cli.py)."""
    @command(plan_group, "draft")
    @click.argument("plan_id", metavar="PLAN")
    @click.option("--goal", help="What the change achieves (needed for a new plan).")
    @click.option("--executor", required=True, help="The agent: claude, codex, gemini or one in config.")
    @_ROUNDS
    @click.option("--revise", is_flag=True, help="Hand the reviewers' reject and request-changes comments back.")
    @trust_flag
    def plan_draft(app: App, plan_id: str, goal: str | None, executor: str, rounds: int, revise: bool,
                   trust_now: bool) -> int:
        """A planner agent writes the plan; flowgit validates it, looping on errors, and commits a draft."""
        from flowgit.cli.commands import planner
        return planner.plan_draft(app, plan_id, goal, executor, rounds, revise, trust_now)
