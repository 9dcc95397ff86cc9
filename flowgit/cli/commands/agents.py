"""Commands for coding agents: `task show` (a task's whole context), `prime` (how to work here
now) and `setup` (what each agent needs to find flowgit, written inside the repository)."""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowgit.cli.app import App
from flowgit.errors import FlowError, InvalidFile, UsageError
from flowgit.formats import agentfiles
from flowgit.ids import split_ref

# ----- task show ----------------------------------------------------------------------------------


def task_show(app: App, ref: str, fmt: str) -> int:
    from flowgit.ops.context import context_text, task_context

    if fmt == "json":
        app.out.as_json = True  # errors too: one JSON object on stdout
    repo = app.repo
    repo.require_init()
    split_ref(ref)  # a bad id is a usage error before anything is read
    plan_id, task_id = repo.resolve(ref)
    ctx = task_context(repo, plan_id, task_id)
    app.out.result(ctx, lambda: context_text(ctx, markdown=fmt == "markdown"))
    return 0


# ----- prime --------------------------------------------------------------------------------------


def prime(app: App, worker: str | None) -> int:
    from flowgit.errors import NoActor
    from flowgit.ops.prime import bounded, prime_data, prime_text
    from flowgit.store.repo import actor_for

    repo = app.repo
    try:
        actor: str | None = actor_for(repo, worker)
    except NoActor:
        actor = None
    data = prime_data(repo, actor)
    app.out.result(bounded(data), lambda: prime_text(data))
    return 0


# ----- setup --------------------------------------------------------------------------------------

AGENTS = ("claude", "codex", "gemini", "agents")
SERVER = "flowgit"
SERVER_ARGV = ("flowgit", "mcp")
SLASH_COMMANDS = ("flowgit-explore", "flowgit-plan", "flowgit-run", "flowgit-checkpoint",
                  "flowgit-finish")
MCP_LINES = {
    "claude": "- The same operations are tools of the `flowgit` MCP server (`.mcp.json`), and the "
              "slash commands\n  `/flowgit-explore`, `/flowgit-plan`, `/flowgit-run`, "
              "`/flowgit-checkpoint` and `/flowgit-finish` walk the pipeline.",
    "gemini": "- The same operations are tools of the `flowgit` MCP server "
              "(`.gemini/settings.json`).",
    "codex": "- The same operations are tools of the `flowgit` MCP server, once registered "
             "(`flowgit setup codex --user`).",
    "agents": "",
}


@dataclass
class Planned:
    """One file setup would write: where, what it holds now and after, and why."""
    path: Path
    shown: str
    old: str | None
    new: str | None  # None: left as it is
    status: str  # added, updated, unchanged, kept
    what: str


def _template(name: str) -> str:
    from flowgit.resources import folder

    node = folder("agents")
    for part in name.split("/"):
        node = node.joinpath(part)
    return node.read_text(encoding="utf-8")


def block_text(agent: str) -> str:
    """The block setup puts between the markers in AGENTS.md, CLAUDE.md or GEMINI.md."""
    text = _template("block.md").replace("{{MCP}}\n", MCP_LINES[agent] + "\n" if MCP_LINES[agent] else "")
    return text


def codex_snippet() -> str:
    return agentfiles.toml_server(SERVER, SERVER_ARGV[0], list(SERVER_ARGV[1:]))


def _inside(root: Path, path: Path) -> Path:
    """Where writing `path` lands: through a symlink only when it stays inside the repository
    (CLAUDE.md is often a link to AGENTS.md); anywhere else is refused, nothing written."""
    real_root = root.resolve()
    target = path.resolve() if path.is_symlink() else path.parent.resolve() / path.name
    if target != real_root and real_root not in target.parents:
        raise InvalidFile(f"{path.relative_to(root).as_posix()}: leads outside the repository (to {target}): "
                          "flowgit setup writes only inside it; remove the link or write the file by hand")
    return target


def _read(path: Path) -> str | None:
    if not path.exists():
        return None
    if not path.is_file():
        raise InvalidFile(f"{path}: is not a regular file: move it away and run `flowgit setup` again")
    return path.read_text(encoding="utf-8")


def _block(root: Path, rel: str, agent: str) -> Planned:
    target = _inside(root, root / rel)
    old = _read(target)
    new = agentfiles.merge_block(old, block_text(agent), rel)
    status = "unchanged" if new is None else "added" if old is None or agentfiles.BEGIN not in old \
        else "updated"
    return Planned(target, rel, old, new, status, "the flowgit block")


def _server(root: Path, rel: str, entry: dict[str, Any], force: bool) -> Planned:
    target = _inside(root, root / rel)
    old = _read(target)
    new, status = agentfiles.merge_server(old, "mcpServers", SERVER, entry, rel, force)
    return Planned(target, rel, old, new, status, f"MCP server {SERVER!r}")


def _slash(root: Path, name: str) -> Planned:
    rel = f".claude/commands/{name}.md"
    target = _inside(root, root / rel)
    old = _read(target)
    text = _template(f"commands/{name}.md")
    if old == text:
        return Planned(target, rel, old, None, "unchanged", f"/{name}")
    if old is not None and agentfiles.GENERATED not in old:
        return Planned(target, rel, old, None, "kept", f"/{name} (yours: it lacks flowgit's first line)")
    return Planned(target, rel, old, text, "added" if old is None else "updated", f"/{name}")


def _codex_user(force: bool) -> Planned:
    home = os.environ.get("CODEX_HOME") or str(Path.home() / ".codex")
    target = Path(home) / "config.toml"
    shown = str(target)
    old = _read(target)
    new, status = agentfiles.merge_toml_table(old, SERVER, codex_snippet(), shown)
    return Planned(target, shown, old, new, status, f"MCP server {SERVER!r}")


def plan_setup(root: Path, agent: str, user: bool, force: bool) -> list[Planned]:
    """Every file `setup AGENT` would write, computed before anything is written."""
    stdio = {"command": SERVER_ARGV[0], "args": list(SERVER_ARGV[1:])}
    if agent == "claude":
        out = [_block(root, "CLAUDE.md", agent),
               _server(root, ".mcp.json", {"type": "stdio", **stdio}, force)]
        out += [_slash(root, name) for name in SLASH_COMMANDS]
    elif agent == "gemini":
        out = [_block(root, "GEMINI.md", agent), _server(root, ".gemini/settings.json", stdio, force)]
    else:
        out = [_block(root, "AGENTS.md", agent)]
        if agent == "codex" and user:
            out.append(_codex_user(force))
    return out


def _diff(p: Planned) -> str:
    lines = difflib.unified_diff((p.old or "").splitlines(keepends=True), (p.new or "").splitlines(keepends=True),
                                 fromfile=f"a/{p.shown}" if p.old is not None else "/dev/null",
                                 tofile=f"b/{p.shown}")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def setup(app: App, agent: str, dry_run: bool, user: bool, force: bool) -> int:
    from flowgit.store.files import write_atomic

    if user and agent != "codex":
        raise UsageError(f"--user writes Codex's user config only (~/.codex/config.toml); {agent} reads "
                         "its settings from the repository: run `flowgit setup " + agent + "`")
    root = app.repo.root
    planned = plan_setup(root, agent, user, force)
    if not dry_run:
        for p in planned:
            if p.new is not None:
                try:
                    write_atomic(p.path, p.new.encode("utf-8"))
                except FlowError as exc:
                    raise InvalidFile(f"{p.shown}: {exc.message}") from None
    verb = {"added": "would add", "updated": "would update"} if dry_run else {}
    files = [{"path": p.shown, "status": p.status, "what": p.what, "written": p.new is not None and not dry_run}
             for p in planned]
    snippet = codex_snippet() if agent == "codex" and not user else None
    result: dict[str, Any] = {"agent": agent, "dry_run": dry_run, "files": files}
    if snippet:
        result["snippet"] = {"path": "~/.codex/config.toml", "text": snippet}

    def text() -> str:
        lines = []
        for p in planned:
            lines.append(f"{verb.get(p.status, p.status)} {p.shown}: {p.what}")
            if dry_run and p.new is not None:
                lines.append(_diff(p).rstrip("\n"))
        if snippet:
            lines += ["", "Codex reads MCP servers from its user config, which setup leaves alone unless "
                      "you pass --user.", "Add this to ~/.codex/config.toml (or run "
                      "`flowgit setup codex --user`):", "", snippet.rstrip("\n")]
        if not dry_run and any(p.new is not None for p in planned):
            inside = [p.shown for p in planned if p.new is not None and not Path(p.shown).is_absolute()]
            if inside:
                lines += ["", f"review and commit them: git add {' '.join(inside)}"]
        return "\n".join(lines)
    app.out.result(result, text)
    return 0


__all__ = ["AGENTS", "block_text", "codex_snippet", "plan_setup", "prime", "setup", "task_show"]
