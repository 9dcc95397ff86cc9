"""The click callbacks of the agents' commands (`task show`, `prime`, `setup`), added to the
command line when one of them is named (cli/main.py). They only unpack options and
call `cli/commands/agents.py`."""
from __future__ import annotations

import click

from flowgit.cli.app import App
from flowgit.cli.options import WORKER, command


def register_task(task_group: click.Group) -> None:
    """`task show`, into the `task` group (cli/authoring_cli.py)."""
    @command(task_group, "show")
    @click.argument("ref", metavar="TASKREF")
    @click.option("--format", "fmt", default="text", show_default=True,
                  type=click.Choice(["text", "markdown", "json"]))
    def task_show(app: App, ref: str, fmt: str) -> int:
        """A task with everything an agent needs: goal, scope, acceptance, files, its
        dependencies' states and notes, requirements, open questions, ADRs, and the prompt
        `run` gives an executor. Reads only."""
        from flowgit.cli.commands import agents
        return agents.task_show(app, ref, fmt)


def register(cli: click.Group) -> None:
    """`prime` and `setup`, when cli/main.py is asked for one of them."""
    @command(cli, "prime")
    @WORKER
    def prime(app: App, worker: str | None) -> int:
        """How to work in this repository now, in at most 8,000 bytes: the plans in play, what
        is ready, what you hold, the loop and the rules. Reads only."""
        from flowgit.cli.commands import agents
        return agents.prime(app, worker)

    @command(cli, "setup")
    @click.argument("agent", type=click.Choice(["claude", "codex", "gemini", "agents"]))
    @click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
    @click.option("--user", is_flag=True,
                  help="codex: also write the MCP server into ~/.codex/config.toml (outside the repository).")
    @click.option("--force", is_flag=True, help="Replace a flowgit MCP entry that differs from setup's.")
    def setup(app: App, agent: str, dry_run: bool, user: bool, force: bool) -> int:
        """Write what an agent needs to find flowgit, inside the repository: a block between
        markers in CLAUDE.md, GEMINI.md or AGENTS.md, the MCP server registration (.mcp.json,
        .gemini/settings.json; Codex's is user-level: printed, or written with --user) and, for
        Claude Code, slash commands for the pipeline in .claude/commands/. Reruns update in place."""
        from flowgit.cli.commands import agents
        return agents.setup(app, agent, dry_run, user, force)


__all__ = ["register", "register_task"]
