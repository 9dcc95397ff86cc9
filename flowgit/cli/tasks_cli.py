"""The click callbacks of working on tasks (`status`, `next`, `events`, `graph`, `claim`, `start`,
`heartbeat`, `release`, `retry`, `done`, `fail`): what agents run hundreds of times, loaded
without the other families (ADR 0007). Each only unpacks its options and calls cli/hot.py,
which reads a plain command line of these without click and runs the same functions."""
from __future__ import annotations

import click

from flowgit.cli import hot
from flowgit.cli.app import App
from flowgit.cli.options import Family, WORKER, Seconds, command

_here = Family()
register = _here.register  # called by cli/main.py when one of these commands is named


@command(_here, "status")
@click.argument("plan_id", required=False, metavar="[PLAN]")
@click.option("--limit", type=int, help="Text: at most N tasks in each group (default 10).")
@click.option("--all", "everything", is_flag=True, help="Text: list every task.")
def status_cmd(app: App, plan_id: str | None, limit: int | None, everything: bool) -> int:
    """Phase, progress, counts, ready, stalled and tasks."""
    return hot.status(app, plan_id, limit, everything)


@command(_here, "next")
@click.argument("plan_id", required=False, metavar="[PLAN]")
def next_cmd(app: App, plan_id: str | None) -> int:
    """The task `claim` would take; changes nothing."""
    return hot.next_task(app, plan_id)


@command(_here, "events")
@click.argument("plan_id", metavar="PLAN")
@click.argument("task_id", required=False, metavar="[TASK]")
@click.option("--from-git", is_flag=True, help="Replay the full history from git (before compaction).")
def events_cmd(app: App, plan_id: str, task_id: str | None, from_git: bool) -> int:
    """The events of a plan or one task, in order."""
    return hot.events(app, plan_id, task_id, from_git)


@command(_here, "graph")
@click.argument("plan_id", metavar="PLAN")
@click.option("--format", "fmt", default="ascii", type=click.Choice(["mermaid", "dot", "gantt", "ascii"]))
def graph_cmd(app: App, plan_id: str, fmt: str) -> int:
    """The task graph, with the critical path, parallel groups and an execution order."""
    from flowgit.cli.commands import status
    return status.graph(app, plan_id, fmt)


@command(_here, "claim")
@click.argument("target", required=False, metavar="[PLAN | TASKREF]")
@WORKER
@click.option("--lease", type=Seconds(), help="Lease in seconds (default: config lease_seconds).")
@click.option("--sync", "sync_", is_flag=True, help="Count the claim only once it is pushed to the remote.")
@click.option("--context", is_flag=True, help="Also print the task's context (as `task show`).")
def claim_cmd(app: App, target: str | None, worker: str | None, lease: float | None, sync_: bool,
              context: bool) -> int:
    """Take the best ready task (or the one named)."""
    return hot.claim(app, target, worker, lease, sync_, context)


def _simple(name: str, doc: str) -> None:
    @command(_here, name, help=doc)
    @click.argument("ref", metavar="TASKREF")
    @WORKER
    def cmd(app: App, ref: str, worker: str | None) -> int:
        return hot.simple(name)(app, ref, worker)


_simple("start", "Mark a claimed task as in progress (extends the lease).")
_simple("heartbeat", "Extend the lease of a task you hold.")
_simple("release", "Give a claimed task back, ready for others.")
_simple("retry", "Make a failed task (or those blocking one) ready again, with fresh attempts.")


@command(_here, "done")
@click.argument("ref", metavar="TASKREF")
@WORKER
@click.option("--note", help="What was done, for the checkpoint review and dependents.")
@click.option("--files-modified", "files", multiple=True, help="A file changed (repeatable).")
def done_cmd(app: App, ref: str, worker: str | None, note: str | None, files: tuple[str, ...]) -> int:
    """Record a task you hold as done."""
    return hot.done(app, ref, worker, note, files)


@command(_here, "fail")
@click.argument("ref", metavar="TASKREF")
@WORKER
@click.option("--error", required=True, help="What went wrong.")
@click.option("--retry", is_flag=True, help="Try again later, by the retry policy.")
@click.option("--skip", is_flag=True, help="Skip it; dependents may go on.")
@click.option("--skip-dependents", is_flag=True, help="Skip it and everything that depends on it.")
def fail_cmd(app: App, ref: str, worker: str | None, error: str, retry: bool, skip: bool,
             skip_dependents: bool) -> int:
    """Record a failure: final, retried later, or skipped."""
    return hot.fail(app, ref, worker, error, retry, skip, skip_dependents)
