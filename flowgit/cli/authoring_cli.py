"""The click callbacks of setting up and authoring (`init`, `plan`, `task`, `adr`, `validate`;
`plan draft` and `task show` join their groups from planner_cli and agent_cli). Each only unpacks
its options and calls cli/commands/."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from flowgit.cli.app import App
from flowgit.cli.options import Family, CLEAR_FIELD, command, task_fields

_here = Family()
register = _here.register  # called by cli/main.py when one of these commands is named


@command(_here, "init")
@click.option("--format", "fmt", type=click.Choice(["1", "2"]), envvar="FLOWGIT_INIT_FORMAT",
              default="2", show_default=True,
              help="2: event logs on the state branch flow/state (ADR 0011); 1: in the branch, as before 0.2.")
def init_cmd(app: App, fmt: str) -> int:
    """Create .flow/ from the template, git attributes, merge driver and hooks; one commit."""
    from flowgit.cli.commands import init
    return init.init(app, int(fmt))


@_here.group("plan")
def plan_group() -> None:
    """Create, list and show plans."""


@command(plan_group, "new")
@click.argument("plan_id", metavar="PLAN")
@click.option("--title", help="The plan's title.")
@click.option("--goal", help="What the plan achieves.")
@click.option("--from", "source", type=click.Path(dir_okay=False, path_type=Path),
              help="A plan YAML or a Markdown plan.")
@click.option("--parent", help="Parent plan id.")
def plan_new(app: App, plan_id: str, title: str | None, goal: str | None, source: Path | None,
             parent: str | None) -> int:
    """Create a plan (empty, or from a YAML or Markdown file) and commit it."""
    from flowgit.cli.commands import plans
    return plans.plan_new(app, plan_id, title, goal, source, parent)


@command(plan_group, "list")
@click.option("--phase", type=click.Choice(["draft", "plan_review", "execute", "checkpoint", "finish",
                                            "complete", "halted"]), help="Only plans in this phase.")
@click.option("--tag", help="Only plans with this tag.")
def plan_list(app: App, phase: str | None, tag: str | None) -> int:
    """List plans with their phase and progress."""
    from flowgit.cli.commands import plans
    return plans.plan_list(app, phase, tag)


@command(plan_group, "show")
@click.argument("plan_id", metavar="PLAN")
@click.option("--rev", help="Show the plan as it was at this git revision.")
def plan_show(app: App, plan_id: str, rev: str | None) -> int:
    """Print a plan's definition (now, or at --rev)."""
    from flowgit.cli.commands import plans
    return plans.plan_show(app, plan_id, rev)


@_here.group("task")
def task_group() -> None:
    """Add, show, edit and remove the tasks of a plan."""


@command(task_group, "add")
@click.argument("plan_id", metavar="PLAN")
@click.argument("task_id", metavar="TASK")
@click.option("--title", required=True)
@task_fields
def task_add(app: App, plan_id: str, task_id: str, title: str, description: str | None,
             deps: tuple[str, ...], files: tuple[str, ...], acceptance: tuple[str, ...],
             priority: str | None, estimate: str | None, run_cmd: str | None) -> int:
    """Add a task to a plan (its comments and formatting are kept) and commit it."""
    from flowgit.cli.commands import plans
    return plans.task_add(app, plan_id, task_id, title, description, deps, files, acceptance,
                          priority, estimate, run_cmd)


@command(task_group, "edit")
@click.argument("ref", metavar="TASKREF")
@click.option("--title", default=None)
@task_fields
@CLEAR_FIELD
def task_edit(app: App, ref: str, clear: tuple[str, ...], **fields: Any) -> int:
    """Change a task's fields in place (the rest of plan.yaml is kept); one commit."""
    from flowgit.cli.commands import taskedit
    return taskedit.task_edit(app, ref, taskedit.changes_of(clear=clear, **fields))


@command(task_group, "remove")
@click.argument("ref", metavar="TASKREF")
@click.option("--force", is_flag=True, help="Remove a task that has events (they are kept).")
def task_remove(app: App, ref: str, force: bool) -> int:
    """Remove a task no other task waits on; one commit."""
    from flowgit.cli.commands import taskedit
    return taskedit.task_remove(app, ref, force)


@_here.group("adr")
def adr_group() -> None:
    """Architecture decision records."""


@command(adr_group, "new")
@click.argument("title")
@click.option("--plan", "plan_id", help="The plan this decision belongs to.")
@click.option("--status", default="proposed",
              type=click.Choice(["proposed", "accepted", "superseded", "deprecated"]))
def adr_new(app: App, title: str, plan_id: str | None, status: str) -> int:
    """Create the next ADR-NNNN file and commit it."""
    from flowgit.cli.commands import plans
    return plans.adr_new(app, title, plan_id, status)



from flowgit.cli import agent_cli, planner_cli  # noqa: E402

planner_cli.register_plan(plan_group)  # plan draft
agent_cli.register_task(task_group)  # task show


@command(_here, "validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--staged", is_flag=True, help="Check the staged .flow/ files (pre-commit).")
@click.option("--base", metavar="REV",
              help="Also check that every event at REV (a pull request's base) is still there, unchanged.")
def validate_cmd(app: App, paths: tuple[Path, ...], staged: bool, base: str | None) -> int:
    """Check .flow/ files against the schemas and the plan rules. Runs nothing."""
    from flowgit.cli.commands import validate
    return validate.validate(app, list(paths), staged, base)
