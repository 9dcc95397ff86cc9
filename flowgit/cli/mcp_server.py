"""`flowgit mcp`: the CLI's operations as an MCP server over stdio.

Every tool runs the same command the CLI runs (same lock, rules and errors) with `--json`
and returns its JSON object; a flowgit error becomes a tool error carrying its code."""
from __future__ import annotations

import importlib
import io
import json
from pathlib import Path
from typing import Any, Callable, Protocol, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])
# the CLI's `main(argv, out=, err=)`, handed in by the CLI so this module never imports it
Invoke = Callable[..., int]

# mcp 2.x and 1.x name the same things differently: (module, attribute), newest first
_SERVER_CLASS = (("mcp.server.mcpserver", "MCPServer"), ("mcp.server.fastmcp", "FastMCP"))
_TOOL_ERROR = (("mcp.server.mcpserver.exceptions", "ToolError"),
               ("mcp.server.fastmcp.exceptions", "ToolError"))


class _Server(Protocol):
    """The part of the SDK's server (MCPServer in 2.x, FastMCP in 1.x) used here."""

    def tool(self) -> Callable[[_F], _F]: ...

    def run(self, transport: str) -> None: ...


def _first_of(candidates: tuple[tuple[str, str], ...]) -> Any:
    """The first (module, attribute) that imports; ImportError if none does."""
    for module, attr in candidates:
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"none of {', '.join(f'{m}.{a}' for m, a in candidates)} is available")


def tool_error(message: str) -> Exception:
    """The SDK's ToolError, whose message reaches the client (other exceptions are masked)."""
    return _tool_error_class()(message)


def _tool_error_class() -> type[Exception]:
    try:
        cls: type[Exception] = _first_of(_TOOL_ERROR)
    except ImportError:
        return RuntimeError
    return cls


def call(invoke: Invoke, repo: Path, *args: str) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    code = invoke(["--repo", str(repo), *args, "--json"], out=out, err=err)
    text = out.getvalue().strip()
    try:
        data = json.loads(text.splitlines()[-1]) if text else {}
    except ValueError:
        data = {"output": text}
    if code != 0:
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else (err.getvalue().strip() or text)
        slug = error.get("code") if isinstance(error, dict) else "error"
        raise tool_error(f"[{slug}, exit {code}] {message}")
    return data if isinstance(data, dict) else {"result": data}


def build(repo: Path, invoke: Invoke) -> Any:
    server_class = _first_of(_SERVER_CLASS)  # ImportError without the mcp package
    server: _Server = server_class("flowgit", instructions=(
        "flowgit: plans, tasks and their history in git. Use status/next to see work, claim to "
        "take a task, heartbeat while working, done or fail when finished."))

    def opt(flag: str, value: Any) -> list[str]:
        if value is None or value is False or value == "" or value == []:  # not `in`: 0 == False
            return []
        return [flag] if value is True else [flag, str(value)]

    def arg(value: str, what: str) -> str:
        """A positional argument; one that starts with '-' would be read as an option."""
        if value.startswith("-"):
            raise tool_error(f"[usage, exit 2] invalid {what} {value!r}: it cannot start with '-'")
        return value

    @server.tool()
    def status(plan: str | None = None) -> dict[str, Any]:
        """Phase, progress, counts, ready tasks, stalled chains and tasks of a plan (or all)."""
        return call(invoke, repo, "status", *([arg(plan, "plan id")] if plan else []))

    @server.tool()
    def next(plan: str | None = None) -> dict[str, Any]:  # noqa: A001 - the CLI's name
        """The task `claim` would take; changes nothing."""
        return call(invoke, repo, "next", *([arg(plan, "plan id")] if plan else []))

    @server.tool()
    def claim(worker: str, target: str | None = None, lease_seconds: float | None = None) -> dict[str, Any]:
        """Claim the best ready task of a plan, or the task named (PLAN/TASK)."""
        return call(invoke, repo, "claim", *([arg(target, "task reference")] if target else []), "--worker", worker,
                    *opt("--lease", lease_seconds))

    @server.tool()
    def start(task: str, worker: str) -> dict[str, Any]:
        """Mark a claimed task in progress."""
        return call(invoke, repo, "start", arg(task, "task reference"), "--worker", worker)

    @server.tool()
    def heartbeat(task: str, worker: str) -> dict[str, Any]:
        """Extend the lease on a task you hold."""
        return call(invoke, repo, "heartbeat", arg(task, "task reference"), "--worker", worker)

    @server.tool()
    def done(task: str, worker: str, note: str | None = None,
             files_modified: list[str] | None = None) -> dict[str, Any]:
        """Record a task you hold as done."""
        args = ["done", arg(task, "task reference"), "--worker", worker, *opt("--note", note)]
        for f in files_modified or []:
            args += ["--files-modified", f]
        return call(invoke, repo, *args)

    @server.tool()
    def fail(task: str, worker: str, error: str, mode: str = "fail") -> dict[str, Any]:
        """Record a failure. mode: fail | retry | skip | skip-dependents."""
        flags = {"fail": [], "retry": ["--retry"], "skip": ["--skip"], "skip-dependents": ["--skip-dependents"]}
        if mode not in flags:
            raise tool_error("mode must be fail, retry, skip or skip-dependents")
        return call(invoke, repo, "fail", arg(task, "task reference"), "--worker", worker, "--error", error,
                    *flags[mode])

    @server.tool()
    def plan_show(plan: str, rev: str | None = None) -> dict[str, Any]:
        """A plan's definition, now or at a git revision."""
        return call(invoke, repo, "plan", "show", arg(plan, "plan id"), *opt("--rev", rev))

    @server.tool()
    def task_add(plan: str, task: str, title: str, depends_on: list[str] | None = None,
                 files: list[str] | None = None, acceptance: list[str] | None = None,
                 priority: str | None = None) -> dict[str, Any]:
        """Add a task to a plan (ready as soon as its dependencies allow)."""
        args = ["task", "add", arg(plan, "plan id"), arg(task, "task id"), "--title", title,
                *opt("--priority", priority)]
        for flag, values in (("--dep", depends_on), ("--file", files), ("--accept", acceptance)):
            for v in values or []:
                args += [flag, v]
        return call(invoke, repo, *args)

    @server.tool()
    def graph(plan: str, format: str = "mermaid") -> dict[str, Any]:  # noqa: A002
        """The task graph (mermaid, dot, gantt or ascii), critical path and parallel groups."""
        return call(invoke, repo, "graph", arg(plan, "plan id"), "--format", format)

    @server.tool()
    def diff(rev_a: str | None = None, rev_b: str | None = None, plan: str | None = None) -> dict[str, Any]:
        """Semantic plan diff between two revisions (default: merge-base .. working tree)."""
        revs = [arg(r, "revision") for r in (rev_a, rev_b) if r]
        return call(invoke, repo, "diff", *revs, *opt("--plan", plan), "--format", "json")

    @server.tool()
    def approve(plan: str, reviewer: str, comment: str | None = None) -> dict[str, Any]:
        """Approve a plan in review."""
        return call(invoke, repo, "approve", arg(plan, "plan id"), "--reviewer", reviewer,
                    *opt("--comment", comment))

    @server.tool()
    def events(plan: str, task: str | None = None) -> dict[str, Any]:
        """The events of a plan or of one task, in order."""
        return call(invoke, repo, "events", arg(plan, "plan id"), *([arg(task, "task id")] if task else []))

    return server


def serve(repo: Path, invoke: Invoke) -> int:
    try:
        server = build(repo, invoke)
    except ImportError:
        from flowgit.errors import MissingExtra

        raise MissingExtra("the MCP server needs the mcp package: pip install 'flowgit[mcp]'") from None
    from flowgit.store.trust import set_channel

    set_channel("mcp")  # what the tools do is an agent's: it writes nothing trusted, approves nothing
    try:
        server.run("stdio")
    finally:
        set_channel(None)
    return 0
