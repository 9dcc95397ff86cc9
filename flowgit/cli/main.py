"""The command line: click callbacks only unpack options and call `flowgit.commands`."""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import click

from flowgit import __version__
from flowgit.cli import agent_cli
from flowgit.cli.app import App
from flowgit.cli.options import (CLEAR_FIELD, WORKER, ActorName, Seconds, command, task_fields,
                                 trust_flag)
from flowgit.cli.output import Output
from flowgit.errors import ExitCode, FileSystemError, FlowError, Interrupted, UsageError
from flowgit.store import notices

F = Callable[..., Any]




@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--repo", "repo_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The git work tree (default: found from the current directory).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object.")
@click.version_option(__version__)  # not package_name=: importlib.metadata costs ~10 ms
@click.pass_context
def cli(ctx: click.Context, repo_dir: Path | None, as_json: bool) -> None:
    """flowgit: plans, tasks and their history, in git."""
    app = ctx.ensure_object(App)
    app.repo_dir = repo_dir
    app.out.as_json = app.out.as_json or as_json


# ----- setting up and authoring ---------------------------------------------------------------

@command(cli, "init")
@click.option("--format", "fmt", type=click.Choice(["1", "2"]), envvar="FLOWGIT_INIT_FORMAT",
              default="2", show_default=True,
              help="2: event logs on the state branch flow/state (ADR 0011); 1: in the branch, as before 0.2.")
def init_cmd(app: App, fmt: str) -> int:
    """Create .flow/ from the template, git attributes, merge driver and hooks; one commit."""
    from flowgit.cli.commands import init
    return init.init(app, int(fmt))


@cli.group("plan")
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


@cli.group("task")
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


@cli.group("adr")
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


# explore, plan draft, spec answer: agents that explore and plan (docs/planning.md)
from flowgit.cli import planner_cli  # noqa: E402

planner_cli.register(cli, plan_group)


@command(cli, "validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--staged", is_flag=True, help="Check the staged .flow/ files (pre-commit).")
@click.option("--base", metavar="REV",
              help="Also check that every event at REV (a pull request's base) is still there, unchanged.")
def validate_cmd(app: App, paths: tuple[Path, ...], staged: bool, base: str | None) -> int:
    """Check .flow/ files against the schemas and the plan rules. Runs nothing."""
    from flowgit.cli.commands import validate
    return validate.validate(app, list(paths), staged, base)


# ----- working on tasks -------------------------------------------------------------------------

@command(cli, "status")
@click.argument("plan_id", required=False, metavar="[PLAN]")
@click.option("--limit", type=int, help="Text: at most N tasks in each group (default 10).")
@click.option("--all", "everything", is_flag=True, help="Text: list every task.")
def status_cmd(app: App, plan_id: str | None, limit: int | None, everything: bool) -> int:
    """Phase, progress, counts, ready, stalled and tasks."""
    from flowgit.cli.commands import status
    return status.status(app, plan_id, limit, everything)


@command(cli, "next")
@click.argument("plan_id", required=False, metavar="[PLAN]")
def next_cmd(app: App, plan_id: str | None) -> int:
    """The task `claim` would take; changes nothing."""
    from flowgit.cli.commands import status
    return status.next_task(app, plan_id)


@command(cli, "events")
@click.argument("plan_id", metavar="PLAN")
@click.argument("task_id", required=False, metavar="[TASK]")
@click.option("--from-git", is_flag=True, help="Replay the full history from git (before compaction).")
def events_cmd(app: App, plan_id: str, task_id: str | None, from_git: bool) -> int:
    """The events of a plan or one task, in order."""
    from flowgit.cli.commands import status
    return status.events(app, plan_id, task_id, from_git)


@command(cli, "graph")
@click.argument("plan_id", metavar="PLAN")
@click.option("--format", "fmt", default="ascii", type=click.Choice(["mermaid", "dot", "gantt", "ascii"]))
def graph_cmd(app: App, plan_id: str, fmt: str) -> int:
    """The task graph, with the critical path, parallel groups and an execution order."""
    from flowgit.cli.commands import status
    return status.graph(app, plan_id, fmt)


@command(cli, "claim")
@click.argument("target", required=False, metavar="[PLAN | TASKREF]")
@WORKER
@click.option("--lease", type=Seconds(), help="Lease in seconds (default: config lease_seconds).")
@click.option("--sync", "sync_", is_flag=True, help="Count the claim only once it is pushed to the remote.")
@click.option("--context", is_flag=True, help="Also print the task's context (as `task show`).")
def claim_cmd(app: App, target: str | None, worker: str | None, lease: float | None, sync_: bool,
              context: bool) -> int:
    """Take the best ready task (or the one named)."""
    from flowgit.cli.commands import tasks
    return tasks.claim(app, target, worker, lease, sync_, context)


def _simple(name: str, doc: str) -> None:
    @command(cli, name, help=doc)
    @click.argument("ref", metavar="TASKREF")
    @WORKER
    def cmd(app: App, ref: str, worker: str | None) -> int:
        from flowgit.cli.commands import tasks
        return tasks.simple(app, name, ref, worker)


_simple("start", "Mark a claimed task as in progress (extends the lease).")
_simple("heartbeat", "Extend the lease of a task you hold.")
_simple("release", "Give a claimed task back, ready for others.")
_simple("retry", "Make a failed task (or those blocking one) ready again, with fresh attempts.")


@command(cli, "done")
@click.argument("ref", metavar="TASKREF")
@WORKER
@click.option("--note", help="What was done, for the checkpoint review and dependents.")
@click.option("--files-modified", "files", multiple=True, help="A file changed (repeatable).")
def done_cmd(app: App, ref: str, worker: str | None, note: str | None, files: tuple[str, ...]) -> int:
    """Record a task you hold as done."""
    from flowgit.cli.commands import tasks
    return tasks.done(app, ref, worker, note, list(files))


@command(cli, "fail")
@click.argument("ref", metavar="TASKREF")
@WORKER
@click.option("--error", required=True, help="What went wrong.")
@click.option("--retry", is_flag=True, help="Try again later, by the retry policy.")
@click.option("--skip", is_flag=True, help="Skip it; dependents may go on.")
@click.option("--skip-dependents", is_flag=True, help="Skip it and everything that depends on it.")
def fail_cmd(app: App, ref: str, worker: str | None, error: str, retry: bool, skip: bool,
             skip_dependents: bool) -> int:
    """Record a failure: final, retried later, or skipped."""
    from flowgit.cli.commands import tasks
    from flowgit.errors import UsageError

    modes = [m for m, on in (("retry", retry), ("skip", skip), ("skip_dependents", skip_dependents)) if on]
    if len(modes) > 1:
        raise UsageError("--retry, --skip and --skip-dependents exclude each other: give one of them")
    return tasks.fail(app, ref, worker, error, modes[0] if modes else "fail")


# ----- the pipeline ------------------------------------------------------------------------------

@command(cli, "submit")
@click.argument("plan_id", metavar="PLAN")
def submit_cmd(app: App, plan_id: str) -> int:
    """Validate a draft plan and send it to review (draft -> plan_review)."""
    from flowgit.cli.commands import pipeline
    return pipeline.submit(app, plan_id)


@command(cli, "approve")
@click.argument("plan_id", metavar="PLAN")
@click.option("--reviewer", type=ActorName(), required=True, help="Who approves.")
@click.option("--comment", help="Why.")
def approve_cmd(app: App, plan_id: str, reviewer: str, comment: str | None) -> int:
    """Approve a plan in review (records the reviewer and the plan file's hash)."""
    from flowgit.cli.commands import pipeline
    return pipeline.approve(app, plan_id, reviewer, comment)


@command(cli, "reject")
@click.argument("plan_id", metavar="PLAN")
@click.option("--reviewer", type=ActorName(), required=True, help="Who rejects.")
@click.option("--comment", required=True, help="What to change.")
def reject_cmd(app: App, plan_id: str, reviewer: str, comment: str) -> int:
    """Send a plan in review back to draft."""
    from flowgit.cli.commands import pipeline
    return pipeline.reject(app, plan_id, reviewer, comment)


@command(cli, "checkpoint")
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


@command(cli, "finish")
@click.argument("plan_id", metavar="PLAN")
@trust_flag
def finish_cmd(app: App, plan_id: str, trust_now: bool) -> int:
    """Run the final validations, write the CHANGELOG entry, and complete the plan."""
    from flowgit.cli.commands import pipeline
    return pipeline.finish(app, plan_id, trust_now)


@command(cli, "halt")
@click.argument("plan_id", metavar="PLAN")
@click.option("--reason", required=True, help="Why the plan stops.")
def halt_cmd(app: App, plan_id: str, reason: str) -> int:
    """Stop a plan in any active phase (claims are refused until `resume`)."""
    from flowgit.cli.commands import pipeline
    return pipeline.halt(app, plan_id, reason)


@command(cli, "resume")
@click.argument("plan_id", metavar="PLAN")
def resume_cmd(app: App, plan_id: str) -> int:
    """Return a halted plan to the phase it was in."""
    from flowgit.cli.commands import pipeline
    return pipeline.resume(app, plan_id)


@command(cli, "advance")
@click.argument("plan_id", required=False, metavar="[PLAN]")
@trust_flag
def advance_cmd(app: App, plan_id: str | None, trust_now: bool) -> int:
    """Apply the phase rules once (a second run does nothing)."""
    from flowgit.cli.commands import pipeline
    return pipeline.advance(app, plan_id, trust_now)


@command(cli, "watch")
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


# ----- git-native review and many machines ----------------------------------------------------

@command(cli, "diff")
@click.argument("revs", nargs=-1, metavar="[REV_A [REV_B]]")
@click.option("--plan", "plan_id", help="Only this plan.")
@click.option("--format", "fmt", default="text", type=click.Choice(["text", "markdown", "json"]))
@click.option("--fail-on-commands", is_flag=True,
              help="Exit 1 when the change adds or changes a command flowgit runs (a CI gate).")
def diff_cmd(app: App, revs: tuple[str, ...], plan_id: str | None, fmt: str, fail_on_commands: bool) -> int:
    """Compare plans semantically between two revisions (default: merge-base .. working tree).

    Commands the change adds or changes (task run:, waits, validations, executors, schedules,
    signal actions) are listed first."""
    from flowgit.cli.commands import review
    if len(revs) > 2:
        raise click.UsageError("give at most two revisions")
    return review.diff(app, revs[0] if revs else None, revs[1] if len(revs) > 1 else None, plan_id, fmt,
                       fail_on_commands)


@command(cli, "history")
@click.argument("plan_id", metavar="PLAN")
def history_cmd(app: App, plan_id: str) -> int:
    """The plan's versions from git log, each with what changed."""
    from flowgit.cli.commands import review
    return review.history(app, plan_id)


@command(cli, "rollback")
@click.argument("plan_id", metavar="PLAN")
@click.option("--to", "rev", required=True, help="The revision whose definition to restore.")
def rollback_cmd(app: App, plan_id: str, rev: str) -> int:
    """Restore a plan's definition from REV as a new commit; every event is kept."""
    from flowgit.cli.commands import review
    return review.rollback(app, plan_id, rev)


@command(cli, "sync")
@click.option("--remote", help="The remote (default: config remote, then origin).")
def sync_cmd(app: App, remote: str | None) -> int:
    """Fetch, merge (event logs through flowgit's merge driver) and push, with bounded retries."""
    from flowgit.cli.commands import sync
    return sync.sync(app, remote)


@cli.group("hooks")
def hooks_group() -> None:
    """Git hooks."""


@command(hooks_group, "install")
def hooks_install_cmd(app: App) -> int:
    """Install the pre-commit hook (respects core.hooksPath; never clobbers a hook)."""
    from flowgit.cli.commands import hooks
    return hooks.install(app)


@command(cli, "signal")
@click.argument("plan_id", metavar="PLAN")
@click.argument("name")
@click.option("--data", help="A JSON value passed to the signal's action.")
def signal_cmd(app: App, plan_id: str, name: str, data: str | None) -> int:
    """Send a signal to a plan; the watcher runs its configured action once."""
    from flowgit.cli.commands import compact
    return compact.signal(app, plan_id, name, data)


@command(cli, "compact")
@click.argument("plan_id", metavar="PLAN")
@click.option("--keep", type=int, help="Events to keep after the snapshot (default: config compact.keep).")
def compact_cmd(app: App, plan_id: str, keep: int | None) -> int:
    """Replace long event logs by a snapshot plus their last N events, in one commit."""
    from flowgit.cli.commands import compact
    return compact.compact(app, plan_id, keep)


@command(cli, "migrate")
@click.option("--dry-run", is_flag=True, help="Say what would move, and write nothing.")
def migrate_cmd(app: App, dry_run: bool) -> int:
    """Move the event logs onto the state branch (format 2, ADR 0011): two commits."""
    from flowgit.cli.commands import doctor
    return doctor.migrate(app, dry_run)


@command(cli, "doctor")
@click.option("--fix", is_flag=True, help="Repair what can be repaired.")
def doctor_cmd(app: App, fix: bool) -> int:
    """Find (and with --fix, repair) torn logs, uncommitted events and other inconsistencies."""
    from flowgit.cli.commands import doctor
    return doctor.doctor(app, fix)


@command(cli, "trust")
@click.argument("plan_id", required=False, metavar="[PLAN]")
@click.option("--list", "list_only", is_flag=True, help="Only show what is and is not trusted.")
def trust_cmd(app: App, plan_id: str | None, list_only: bool) -> int:
    """Show the commands .flow/ would have flowgit run, then trust them in this clone.

    Recorded under .git/ (never pushed): each command by its file, key and argv, and each
    plan's text (what agents are given). A command that changes must be trusted again."""
    from flowgit.cli.commands import trust
    return trust.trust_cmd(app, plan_id, list_only)


@command(cli, "run")
@click.argument("plan_id", metavar="PLAN")
@click.option("-n", "workers", type=int, default=1, show_default=True, help="Tasks to run at once.")
@click.option("--executor", help="Use this executor for every task.")
@click.option("--verify", "hooks", is_flag=True,
              help="Commit agent work through the project's own git hooks (default: past them).")
@click.option("--land", type=click.Choice(sorted({"merge", "branch"})), default=None,
              help="merge (default): merge each task's branch; branch: keep it for review.")
@trust_flag
def run_cmd(app: App, plan_id: str, workers: int, executor: str | None, hooks: bool,
            land: str | None, trust_now: bool) -> int:
    """Run ready tasks with executors, each in its own worktree, merging results back.

    A task's (or its plan's) `verify:` command checks the work in the worktree first."""
    from flowgit.cli.commands import run
    return run.run(app, plan_id, workers, executor, trust_now, hooks=hooks, land=land)


@command(cli, "mcp")
def mcp_cmd(app: App) -> int:
    """Serve the same operations as an MCP server over stdio."""
    from flowgit.cli.mcp_server import serve
    app.repo.require_init()
    return serve(app.repo.root, main)


@command(cli, "demo")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--board", "with_board", is_flag=True, help="Then leave the board running on the demo.")
@click.option("--port", type=click.IntRange(0, 65535), default=8420, show_default=True,
              help="The board's port (with --board; 0 picks a free one).")
def demo_cmd(app: App, directory: Path | None, with_board: bool, port: int) -> int:
    """Run the built-in webhook example end to end in a fresh repository."""
    from flowgit.cli.commands import demo
    return demo.demo(app, directory, board_port=port if with_board else None)


@command(cli, "board")
@click.option("--port", type=click.IntRange(0, 65535), default=8420, show_default=True,
              help="The port (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; anything but loopback is warned about.")
@click.option("--open", "open_browser", is_flag=True, help="Open the board in a web browser.")
def board_cmd(app: App, port: int, host: str, open_browser: bool) -> int:
    """Serve a read-only, live web page of the plans, their boards, graphs and history."""
    from flowgit.cli.commands import board
    return board.board(app, port, host, open_browser)


agent_cli.register(cli, task_group)  # task show, prime, setup


@cli.command("merge-driver", hidden=True)
@click.argument("paths", nargs=-1)
def merge_driver_cmd(paths: tuple[str, ...]) -> None:
    """git merge driver for .flow/**/*.jsonl (registered by init)."""
    from flowgit.formats.jsonlmerge import merge_driver_main
    raise SystemExit(merge_driver_main(list(paths)))


# What the file system says about a write it refused: the user's to fix, in one line
FILE_SYSTEM_ERRNOS = {errno.EROFS: "make it writable, or work in a clone that is",
                      errno.ENOSPC: "free some space and run the command again",
                      errno.EDQUOT: "free some space (or raise the quota) and run the command again",
                      errno.EACCES: "check who owns it and its permissions",
                      errno.EPERM: "check who owns it and its permissions",
                      errno.EIO: "the disk reported an error",
                      errno.EFBIG: "the file is larger than the file system allows"}


def file_system_message(exc: OSError, app: App) -> str:
    where = str(exc.filename) if exc.filename else ""
    root = app._repo.root if app._repo is not None else None
    if where and root is not None and Path(where).is_relative_to(root):
        where = Path(where).relative_to(root).as_posix()
    what = exc.strerror or os.strerror(exc.errno or 0)
    return f"{where + ': ' if where else ''}{what}: {FILE_SYSTEM_ERRNOS[exc.errno or 0]}"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one flowgit command; `out`/`err` default to the process's streams."""
    args = list(sys.argv[1:] if argv is None else argv)
    app = App(out=Output(as_json="--json" in args, out=out, err=err))
    try:
        with notices.reporting(app.out.warn):
            try:
                rv = cli.main(args=args, prog_name="flowgit", standalone_mode=False, obj=app)
            except FlowError as exc:
                notices.flush(unless=exc.message)  # the error names that line itself
                raise
    except FlowError as exc:
        app.out.error(exc.code, exc.message)
        return int(exc.exit_code)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        app.out.error(Interrupted.code, "aborted")
        return int(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        if app.out.as_json:
            app.out.error(UsageError.code, exc.format_message())
        else:
            exc.show()
        return int(ExitCode.USAGE)
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno not in FILE_SYSTEM_ERRNOS:
            raise  # anything else is a bug: its traceback says where
        app.out.error(FileSystemError.code, file_system_message(exc, app))
        return int(FileSystemError.exit_code)
    finally:
        try:
            app.close()
        except FlowError:
            pass
        if "flowgit.store.trust" in sys.modules:  # --trust lasts one command, also in-process
            sys.modules["flowgit.store.trust"].clear_session()
    return int(rv or 0)


if __name__ == "__main__":
    raise SystemExit(main())
