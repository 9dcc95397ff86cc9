"""The click side of the command line: the table of commands, the root group that imports a
command's family when it is named, and what click's own exceptions mean for `main`. Imported
only when a command line is not one `cli/hot.py` reads itself (ADR 0007)."""
from __future__ import annotations

import importlib
from pathlib import Path

import click

from flowgit import __version__
from flowgit.cli.app import App
from flowgit.errors import ExitCode, Interrupted, UsageError

# Every command: the module of its family (flowgit.cli.<family>_cli, imported when the command
# is named, so `flowgit done` never builds the other forty) and the first paragraph of its help,
# which `flowgit --help` lists without importing any of them (ADR 0007). A command's own
# docstring stays the source: tests/test_startup_imports.py fails when the two differ.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("authoring", "Create .flow/ from the template, git attributes, merge driver and hooks; one commit."),
    "plan": ("authoring", "Create, list and show plans."),
    "task": ("authoring", "Add, show, edit and remove the tasks of a plan."),
    "adr": ("authoring", "Architecture decision records."),
    "validate": ("authoring", "Check .flow/ files against the schemas and the plan rules. Runs nothing."),
    "explore": ("planner", "An agent asks the open questions and drafts an ADR (options, pros and cons, "
                           "a recommendation)."),
    "spec": ("planner", "A plan's requirements and questions."),
    "status": ("tasks", "Phase, progress, counts, ready, stalled and tasks."),
    "next": ("tasks", "The task `claim` would take; changes nothing."),
    "events": ("tasks", "The events of a plan or one task, in order."),
    "graph": ("tasks", "The task graph, with the critical path, parallel groups and an execution order."),
    "claim": ("tasks", "Take the best ready task (or the one named)."),
    "start": ("tasks", "Mark a claimed task as in progress (extends the lease)."),
    "heartbeat": ("tasks", "Extend the lease of a task you hold."),
    "release": ("tasks", "Give a claimed task back, ready for others."),
    "retry": ("tasks", "Make a failed task (or those blocking one) ready again, with fresh attempts."),
    "done": ("tasks", "Record a task you hold as done."),
    "fail": ("tasks", "Record a failure: final, retried later, or skipped."),
    "submit": ("pipeline", "Validate a draft plan and send it to review (draft -> plan_review)."),
    "approve": ("pipeline", "Approve a plan in review (records the reviewer and the plan file's hash)."),
    "reject": ("pipeline", "Send a plan in review back to draft."),
    "checkpoint": ("pipeline", "Show a checkpoint's review (changes, validations, notes), or decide it."),
    "finish": ("pipeline", "Run the final validations, write the CHANGELOG entry, and complete the plan."),
    "halt": ("pipeline", "Stop a plan in any active phase (claims are refused until `resume`)."),
    "resume": ("pipeline", "Return a halted plan to the phase it was in."),
    "advance": ("pipeline", "Apply the phase rules once (a second run does nothing)."),
    "watch": ("pipeline", "Apply the phase rules whenever .flow/ or the branch changes, until stopped."),
    "diff": ("review", "Compare plans semantically between two revisions (default: merge-base .. working "
                       "tree)."),
    "history": ("review", "The plan's versions from git log, each with what changed."),
    "rollback": ("review", "Restore a plan's definition from REV as a new commit; every event is kept."),
    "sync": ("review", "Fetch, merge (event logs through flowgit's merge driver) and push, with bounded "
                       "retries."),
    "hooks": ("review", "Git hooks."),
    "signal": ("review", "Send a signal to a plan; the watcher runs its configured action once."),
    "compact": ("review", "Replace long event logs by a snapshot plus their last N events, in one commit."),
    "migrate": ("review", "Move the event logs onto the state branch (format 2, ADR 0011): two commits."),
    "doctor": ("review", "Find (and with --fix, repair) torn logs, uncommitted events and other "
                         "inconsistencies."),
    "trust": ("review", "Show the commands .flow/ would have flowgit run, then trust them in this clone."),
    "run": ("review", "Run ready tasks with executors, each in its own worktree, merging results back."),
    "mcp": ("review", "Serve the same operations as an MCP server over stdio."),
    "demo": ("review", "Run the built-in webhook example end to end in a fresh repository."),
    "board": ("review", "Serve a read-only, live web page of the plans, their boards, graphs and history."),
    "merge-driver": ("review", ""),  # hidden: git runs it, people do not
    "prime": ("agent", "How to work in this repository now, in at most 8,000 bytes: the plans in play, "
                       "what is ready, what you hold, the loop and the rules. Reads only."),
    "setup": ("agent", "Write what an agent needs to find flowgit, inside the repository: a block between "
                       "markers in CLAUDE.md, GEMINI.md or AGENTS.md, the MCP server registration "
                       "(.mcp.json, .gemini/settings.json; Codex's is user-level: printed, or written "
                       "with --user) and, for Claude Code, slash commands for the pipeline in "
                       ".claude/commands/. Reruns update in place."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when named (click's lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            family = importlib.import_module(f"flowgit.cli.{COMMANDS[cmd_name][0]}_cli")
            family.register(self)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, from the table: `flowgit --help` imports no command."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name)
            if cmd is None:
                if not COMMANDS[name][1]:
                    continue  # hidden
                cmd = click.Command(name, help=COMMANDS[name][1])
            if not cmd.hidden:
                rows.append((name, cmd))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])


@click.group(cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


def click_exit(exc: Exception, app: App) -> int | None:
    """The exit code of one of click's exceptions, its message said; None for any other."""
    if isinstance(exc, click.exceptions.Exit):
        return int(exc.exit_code)
    if isinstance(exc, click.exceptions.Abort):
        app.out.error(Interrupted.code, "aborted")
        return int(ExitCode.INTERRUPTED)
    if isinstance(exc, click.ClickException):
        if app.out.as_json:
            app.out.error(UsageError.code, exc.format_message())
        else:
            exc.show()
        return int(ExitCode.USAGE)
    return None
