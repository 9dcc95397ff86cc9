"""The click callbacks of git-native review, many machines and long-running servers (`diff`,
`history`, `rollback`, `sync`, `hooks`, `signal`, `compact`, `migrate`, `doctor`, `trust`, `run`,
`mcp`, `demo`, `board`, the hidden `merge-driver`). Each only unpacks its options and calls
cli/commands/."""
from __future__ import annotations

from pathlib import Path

import click

from flowgit.cli.app import App
from flowgit.cli.options import Family, command, trust_flag

_here = Family()
register = _here.register  # called by cli/main.py when one of these commands is named


@command(_here, "diff")
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


@command(_here, "history")
@click.argument("plan_id", metavar="PLAN")
def history_cmd(app: App, plan_id: str) -> int:
    """The plan's versions from git log, each with what changed."""
    from flowgit.cli.commands import review
    return review.history(app, plan_id)


@command(_here, "rollback")
@click.argument("plan_id", metavar="PLAN")
@click.option("--to", "rev", required=True, help="The revision whose definition to restore.")
def rollback_cmd(app: App, plan_id: str, rev: str) -> int:
    """Restore a plan's definition from REV as a new commit; every event is kept."""
    from flowgit.cli.commands import review
    return review.rollback(app, plan_id, rev)


@command(_here, "sync")
@click.option("--remote", help="The remote (default: config remote, then origin).")
@click.option("--allow-unrelated", is_flag=True,
              help="Merge a remote state branch that shares no history with this one (refused otherwise).")
def sync_cmd(app: App, remote: str | None, allow_unrelated: bool) -> int:
    """Fetch, merge (event logs through flowgit's merge driver) and push, with bounded retries."""
    from flowgit.cli.commands import sync
    return sync.sync(app, remote, allow_unrelated)


@_here.group("hooks")
def hooks_group() -> None:
    """Git hooks."""


@command(hooks_group, "install")
def hooks_install_cmd(app: App) -> int:
    """Install the pre-commit hook (respects core.hooksPath; never clobbers a hook)."""
    from flowgit.cli.commands import hooks
    return hooks.install(app)


@command(_here, "signal")
@click.argument("plan_id", metavar="PLAN")
@click.argument("name")
@click.option("--data", help="A JSON value passed to the signal's action.")
def signal_cmd(app: App, plan_id: str, name: str, data: str | None) -> int:
    """Send a signal to a plan; the watcher runs its configured action once."""
    from flowgit.cli.commands import compact
    return compact.signal(app, plan_id, name, data)


@command(_here, "compact")
@click.argument("plan_id", metavar="PLAN")
@click.option("--keep", type=int, help="Events to keep after the snapshot (default: config compact.keep).")
def compact_cmd(app: App, plan_id: str, keep: int | None) -> int:
    """Replace long event logs by a snapshot plus their last N events, in one commit."""
    from flowgit.cli.commands import compact
    return compact.compact(app, plan_id, keep)


@command(_here, "migrate")
@click.option("--dry-run", is_flag=True, help="Say what would move, and write nothing.")
def migrate_cmd(app: App, dry_run: bool) -> int:
    """Move the event logs onto the state branch (format 2, ADR 0011): two commits."""
    from flowgit.cli.commands import doctor
    return doctor.migrate(app, dry_run)


@command(_here, "doctor")
@click.option("--fix", is_flag=True, help="Repair what can be repaired.")
def doctor_cmd(app: App, fix: bool) -> int:
    """Find (and with --fix, repair) torn logs, uncommitted events and other inconsistencies."""
    from flowgit.cli.commands import doctor
    return doctor.doctor(app, fix)


@command(_here, "trust")
@click.argument("plan_id", required=False, metavar="[PLAN]")
@click.option("--list", "list_only", is_flag=True, help="Only show what is and is not trusted.")
def trust_cmd(app: App, plan_id: str | None, list_only: bool) -> int:
    """Show the commands .flow/ would have flowgit run, then trust them in this clone.

    Recorded under .git/ (never pushed): each command by its file, key and argv, and each
    plan's text (what agents are given). A command that changes must be trusted again."""
    from flowgit.cli.commands import trust
    return trust.trust_cmd(app, plan_id, list_only)


@command(_here, "run")
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


@command(_here, "mcp")
def mcp_cmd(app: App) -> int:
    """Serve the same operations as an MCP server over stdio."""
    from flowgit.cli.main import main
    from flowgit.cli.mcp_server import serve
    app.repo.require_init()
    return serve(app.repo.root, main)


@command(_here, "demo")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--board", "with_board", is_flag=True, help="Then leave the board running on the demo.")
@click.option("--port", type=click.IntRange(0, 65535), default=8420, show_default=True,
              help="The board's port (with --board; 0 picks a free one).")
def demo_cmd(app: App, directory: Path | None, with_board: bool, port: int) -> int:
    """Run the built-in webhook example end to end in a fresh repository."""
    from flowgit.cli.commands import demo
    return demo.demo(app, directory, board_port=port if with_board else None)


@command(_here, "board")
@click.option("--port", type=click.IntRange(0, 65535), default=8420, show_default=True,
              help="The port (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; anything but loopback is warned about.")
@click.option("--open", "open_browser", is_flag=True, help="Open the board in a web browser.")
def board_cmd(app: App, port: int, host: str, open_browser: bool) -> int:
    """Serve a read-only, live web page of the plans, their boards, graphs and history."""
    from flowgit.cli.commands import board
    return board.board(app, port, host, open_browser)


@_here.command("merge-driver", hidden=True)
@click.argument("paths", nargs=-1)
def merge_driver_cmd(paths: tuple[str, ...]) -> None:
    """git merge driver for .flow/**/*.jsonl (registered by init)."""
    from flowgit.formats.jsonlmerge import merge_driver_main
    raise SystemExit(merge_driver_main(list(paths)))
