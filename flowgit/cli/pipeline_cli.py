"""The click callbacks of the pipeline (`submit`, `approve`, `reject`, `checkpoint`, `finish`,
`halt`, `resume`, `advance`, `watch`). Each only unpacks its options and calls cli/commands/."""
from __future__ import annotations

import click

from flowgit.cli.app import App
from flowgit.cli.options import Family, ActorName, Seconds, command, trust_flag

_here = Family()
register = _here.register  # called by cli/main.py when one of these commands is named


@command(_here, "submit")
@click.argument("plan_id", metavar="PLAN")
def submit_cmd(app: App, plan_id: str) -> int:
    """Validate a draft plan and send it to review (draft -> plan_review)."""
    from flowgit.cli.commands import pipeline
    return pipeline.submit(app, plan_id)


@command(_here, "approve")
@click.argument("plan_id", metavar="PLAN")
@click.option("--reviewer", type=ActorName(), required=True, help="Who approves.")
@click.option("--comment", help="Why.")
def approve_cmd(app: App, plan_id: str, reviewer: str, comment: str | None) -> int:
    """Approve a plan in review (records the reviewer and the plan file's hash)."""
    from flowgit.cli.commands import pipeline
    return pipeline.approve(app, plan_id, reviewer, comment)


@command(_here, "reject")
@click.argument("plan_id", metavar="PLAN")
@click.option("--reviewer", type=ActorName(), required=True, help="Who rejects.")
@click.option("--comment", required=True, help="What to change.")
def reject_cmd(app: App, plan_id: str, reviewer: str, comment: str) -> int:
    """Send a plan in review back to draft."""
    from flowgit.cli.commands import pipeline
    return pipeline.reject(app, plan_id, reviewer, comment)


@command(_here, "checkpoint")
@click.argument("plan_id", metavar="PLAN")
@click.argument("rest", nargs=-1, metavar="[CP] [TEXT]...")
@click.option("--approve", "do_approve", is_flag=True, help="Approve the checkpoint; execution continues.")
@click.option("--request-changes", "changes", multiple=True, metavar="TEXT...",
              help="Add one task per TEXT and return to execute.")
@click.option("--reviewer", type=ActorName(), help="Who decides.")
@click.option("--comment", help="Why.")
@click.option("--force", is_flag=True, help="With --approve: approve although a validation failed.")
@click.option("--validate", is_flag=True,
              help="Run the checkpoint's validations that have not passed yet, and record them.")
@trust_flag
def checkpoint_cmd(app: App, plan_id: str, rest: tuple[str, ...], do_approve: bool,
                   changes: tuple[str, ...], reviewer: str | None, comment: str | None,
                   force: bool, validate: bool, trust_now: bool) -> int:
    """Show a checkpoint's review (changes, validations, notes), or decide it.

    The review only reads: it runs nothing. `--request-changes A B C` adds three tasks: words
    after the first that are not a checkpoint id are further change requests."""
    from flowgit.cli.commands import pipeline
    return pipeline.checkpoint(app, plan_id, list(rest), do_approve, list(changes), reviewer, comment,
                               force, validate, trust_now)


@command(_here, "finish")
@click.argument("plan_id", metavar="PLAN")
@trust_flag
def finish_cmd(app: App, plan_id: str, trust_now: bool) -> int:
    """Run the final validations, write the CHANGELOG entry, and complete the plan."""
    from flowgit.cli.commands import pipeline
    return pipeline.finish(app, plan_id, trust_now)


@command(_here, "halt")
@click.argument("plan_id", metavar="PLAN")
@click.option("--reason", required=True, help="Why the plan stops.")
def halt_cmd(app: App, plan_id: str, reason: str) -> int:
    """Stop a plan in any active phase (claims are refused until `resume`)."""
    from flowgit.cli.commands import pipeline
    return pipeline.halt(app, plan_id, reason)


@command(_here, "resume")
@click.argument("plan_id", metavar="PLAN")
def resume_cmd(app: App, plan_id: str) -> int:
    """Return a halted plan to the phase it was in."""
    from flowgit.cli.commands import pipeline
    return pipeline.resume(app, plan_id)


@command(_here, "advance")
@click.argument("plan_id", required=False, metavar="[PLAN]")
@trust_flag
def advance_cmd(app: App, plan_id: str | None, trust_now: bool) -> int:
    """Apply the phase rules once (a second run does nothing)."""
    from flowgit.cli.commands import pipeline
    return pipeline.advance(app, plan_id, trust_now)


@command(_here, "watch")
@click.option("--run", "workers", type=click.IntRange(min=0), default=0,
              help="Also dispatch ready tasks to N executors.")
@click.option("--poll", is_flag=True, help="Poll instead of inotify (network filesystems).")
@click.option("--interval", type=Seconds(), default=None, help="Seconds between rescans.")
@trust_flag
def watch_cmd(app: App, workers: int, poll: bool, interval: float | None, trust_now: bool) -> int:
    """Apply the phase rules whenever .flow/ or the branch changes, until stopped.

    Only commands this clone trusts run (validations, schedules, waits, signal actions and,
    with --run, executors); the others are logged once and wait (see `flowgit trust`)."""
    from flowgit.watcher.observer import watch
    if trust_now:
        from flowgit.ops import trust
        trust.for_this_run(app.repo)
    return watch(app.repo, app.out.info, workers=workers, poll=poll, interval=interval)
