"""`flowgit mcp`: the CLI's operations as an MCP server over stdio.

Every tool runs the command the CLI runs, in this process through the `main` it is handed
(same lock, rules and errors), with `--json`, and sends its JSON object once, as text: no
output schema and no structured copy (Claude Code reads only the text, and the copy doubled
every result). A flowgit error becomes a tool error carrying its slug and exit code. Specs,
ADRs and `prime` are resources; the pipeline's steps are prompts (mcp_prompts.py)."""
from __future__ import annotations

import importlib
import io
import json
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, Sequence

from flowgit.cli import mcp_prompts

# the CLI's `main(argv, out=, err=)`, handed in by the CLI so this module never imports it
Invoke = Callable[..., int]
ToolFn = Callable[..., str]

# mcp 2.x and 1.x name the same things differently: (module, attribute), newest first
_SERVER_CLASS = (("mcp.server.mcpserver", "MCPServer"), ("mcp.server.fastmcp", "FastMCP"))
_TOOL_CLASS = (("mcp.server.mcpserver.tools", "Tool"), ("mcp.server.fastmcp.tools", "Tool"))
_TOOL_ERROR = (("mcp.server.mcpserver.exceptions", "ToolError"),
               ("mcp.server.fastmcp.exceptions", "ToolError"))
_RESOURCE_ERROR = (("mcp.server.mcpserver.exceptions", "ResourceError"),
                   ("mcp.server.fastmcp.exceptions", "ResourceError"))

INSTRUCTIONS = (
    "flowgit: plans, tasks and their history in git. Call prime first (or read flowgit://prime). "
    "Loop: claim with context=true -> work -> done with a note; fail if stuck. Never edit .flow/ "
    "by hand. Approvals are people's: show the command, do not approve.")

# prime names CLI commands; through MCP each is the tool of the same name
PRIME_NOTE = ("(Through MCP each `flowgit X` below is the tool X: claim with context=true, task_show, "
              "heartbeat, done, fail, release, status; plan_new takes a plan's text.)\n\n")


class _Server(Protocol):
    """The part of the SDK's server (MCPServer in 2.x, FastMCP in 1.x) used here."""

    def resource(self, uri: str, *, name: str | None = None, description: str | None = None,
                 mime_type: str | None = None) -> Callable[[Callable[..., str]], Callable[..., str]]: ...

    def prompt(self, name: str | None = None, title: str | None = None,
               description: str | None = None) -> Callable[[Callable[..., str]], Callable[..., str]]: ...

    def run(self, transport: str) -> None: ...


def _first_of(candidates: tuple[tuple[str, str], ...]) -> Any:
    """The first (module, attribute) that imports; ImportError if none does."""
    for module, attr in candidates:
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"none of {', '.join(f'{m}.{a}' for m, a in candidates)} is available")


def _error_class(candidates: tuple[tuple[str, str], ...]) -> type[Exception]:
    try:
        cls: type[Exception] = _first_of(candidates)
    except ImportError:
        return RuntimeError
    return cls


def _tool_error_class() -> type[Exception]:
    return _error_class(_TOOL_ERROR)


def tool_error(message: str) -> Exception:
    """The SDK's ToolError, whose message reaches the client (other exceptions are masked)."""
    return _tool_error_class()(message)


def resource_error(message: str) -> Exception:
    return _error_class(_RESOURCE_ERROR)(message)


def run(invoke: Invoke, repo: Path, args: list[str], as_json: bool) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    # --json first, as the global option: after the command, a `--` would make it an argument
    code = invoke(["--repo", str(repo), *(["--json"] if as_json else []), *args], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def call(invoke: Invoke, repo: Path, *args: str) -> dict[str, Any]:
    """The command's JSON object; a ToolError `[slug, exit N] message` when it fails."""
    code, stdout, stderr = run(invoke, repo, list(args), as_json=True)
    text = stdout.strip()
    try:
        data = json.loads(text.splitlines()[-1]) if text else {}
    except ValueError:
        data = {"output": text}
    # what the CLI says on stderr (an unreadable line that holds a task, say) reaches the agent
    said = [x[len("warning: "):] for x in stderr.splitlines() if x.startswith("warning: ")]
    if code != 0:
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else (stderr.strip() or text)
        slug = error.get("code") if isinstance(error, dict) else "error"
        also = "".join(f" (warning: {w})" for w in said if w not in str(message))
        raise tool_error(f"[{slug}, exit {code}] {message}{also}")
    result = data if isinstance(data, dict) else {"result": data}
    if said:
        kept = result.get("warnings")
        result["warnings"] = list(dict.fromkeys([*(kept if isinstance(kept, list) else []), *said]))
    return result


def text_of(data: dict[str, Any]) -> str:
    """One result, once: compact JSON text."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def call_text(invoke: Invoke, repo: Path, *args: str) -> str:
    """The command's text output (what a person sees); a ToolError when it fails."""
    code, stdout, stderr = run(invoke, repo, list(args), as_json=False)
    if code != 0:
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        message = lines[-1].removeprefix("flowgit: error: ") if lines else stdout.strip()
        raise tool_error(f"[exit {code}] {message}")
    return stdout


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An input schema without what pydantic adds for people: titles, and `anyOf [T, null]`
    with `default: null` for an optional argument (one left out is None anyway)."""
    props: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        options = prop.get("anyOf")
        if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
            kept = next(o for o in options if o != {"type": "null"})
            prop = {**{k: v for k, v in prop.items() if k != "anyOf"}, **kept}
        if "default" in prop and (prop["default"] is None or prop["default"] is False):
            del prop["default"]  # left out, it is None or False anyway
        props[name] = prop
    out: dict[str, Any] = {"type": "object", "properties": props}
    if schema.get("required"):
        out["required"] = schema["required"]
    return out


def _opt(flag: str, value: Any) -> list[str]:
    if value is None or value is False or value == "" or value == []:  # not `in`: 0 == False
        return []
    return [flag] if value is True else [flag, str(value)]


def _many(flag: str, values: Sequence[str] | None) -> list[str]:
    return [a for v in values or [] for a in (flag, v)]


def arg(value: str, what: str) -> str:
    """A positional argument; one that starts with '-' would be read as an option."""
    if value.startswith("-"):
        raise tool_error(f"[usage, exit 2] invalid {what} {value!r}: it cannot start with '-'")
    return value


def _maybe(value: str | None, what: str) -> list[str]:
    return [arg(value, what)] if value else []


FailMode = Literal["fail", "retry", "skip", "skip-dependents"]
TaskField = Literal["description", "depends_on", "files", "acceptance", "priority", "estimate"]
_FAIL_FLAGS: dict[str, list[str]] = {"fail": [], "retry": ["--retry"], "skip": ["--skip"],
                                     "skip-dependents": ["--skip-dependents"]}


def tools(repo: Path, invoke: Invoke) -> list[ToolFn]:
    """The tool functions, each running one CLI command and returning its result as text."""

    def cli(*args: str) -> str:
        return text_of(call(invoke, repo, *args))

    def status(plan: str | None = None) -> str:
        """Phase, progress, counts, ready tasks and tasks of a plan (or of every plan)."""
        return cli("status", *_maybe(plan, "plan id"))

    def next(plan: str | None = None) -> str:  # noqa: A001 - the CLI's name
        """The task claim would take; changes nothing."""
        return cli("next", *_maybe(plan, "plan id"))

    def prime(worker: str | None = None) -> str:
        """Read first: how to work here now (plans, what is ready, what you hold, the rules)."""
        return PRIME_NOTE + call_text(invoke, repo, "prime", *_opt("--worker", worker))

    def claim(worker: str, target: str | None = None, lease_seconds: float | None = None,
              context: bool = False) -> str:
        """Claim the best ready task of a plan, or the one named (PLAN/TASK); context: as task_show."""
        return cli("claim", *_maybe(target, "task reference"), "--worker", worker, *_opt("--lease", lease_seconds),
                   *_opt("--context", context))

    def task_show(task: str, format: Literal["json", "markdown", "text"] = "json") -> str:  # noqa: A002
        """A task with all it needs: goal, acceptance, files, dependencies' notes, spec, ADRs, prompt."""
        if format == "json":
            return cli("task", "show", arg(task, "task reference"))
        return call_text(invoke, repo, "task", "show", arg(task, "task reference"), "--format", format)

    def start(task: str, worker: str) -> str:
        """Mark a claimed task in progress."""
        return cli("start", arg(task, "task reference"), "--worker", worker)

    def heartbeat(task: str, worker: str) -> str:
        """Extend the lease of a task you hold."""
        return cli("heartbeat", arg(task, "task reference"), "--worker", worker)

    def release(task: str, worker: str) -> str:
        """Give a task you hold back, ready for others."""
        return cli("release", arg(task, "task reference"), "--worker", worker)

    def done(task: str, worker: str, note: str | None = None, files_modified: list[str] | None = None) -> str:
        """Record a task you hold as done; the note reaches the review and dependent tasks."""
        return cli("done", arg(task, "task reference"), "--worker", worker, *_opt("--note", note),
                   *_many("--files-modified", files_modified))

    def fail(task: str, worker: str, error: str, mode: FailMode = "fail") -> str:
        """Record a failure: final, retried by the retry policy, or skipped."""
        if mode not in _FAIL_FLAGS:  # the schema says so; a client may not check
            raise tool_error("[usage, exit 2] mode must be fail, retry, skip or skip-dependents")
        return cli("fail", arg(task, "task reference"), "--worker", worker, "--error", error, *_FAIL_FLAGS[mode])

    def retry(task: str, worker: str | None = None) -> str:
        """Make a failed task (or the failed tasks blocking one) ready again, fresh attempts."""
        return cli("retry", arg(task, "task reference"), *_opt("--worker", worker))

    def events(plan: str, task: str | None = None) -> str:
        """The events of a plan or of one task, in order."""
        return cli("events", arg(plan, "plan id"), *_maybe(task, "task id"))

    def graph(plan: str, format: Literal["mermaid", "dot", "gantt", "ascii"] = "mermaid") -> str:  # noqa: A002
        """The task graph, critical path and parallel groups."""
        return cli("graph", arg(plan, "plan id"), "--format", format)

    def diff(rev_a: str | None = None, rev_b: str | None = None, plan: str | None = None) -> str:
        """Semantic plan diff between two revisions (default: merge-base .. working tree)."""
        revs = [arg(r, "revision") for r in (rev_a, rev_b) if r]
        return cli("diff", *revs, *_opt("--plan", plan), "--format", "json")

    def plan_show(plan: str, rev: str | None = None) -> str:
        """A plan's definition, now or at a git revision."""
        return cli("plan", "show", arg(plan, "plan id"), *_opt("--rev", rev))

    def plan_new(plan: str, title: str | None = None, goal: str | None = None, text: str | None = None,
                 markdown: bool = False) -> str:
        """Create a draft plan: empty, or from text (plan YAML; Markdown if markdown=true)."""
        if text is None:
            return cli("plan", "new", arg(plan, "plan id"), *_opt("--title", title), *_opt("--goal", goal))
        with tempfile.TemporaryDirectory(prefix="flowgit-mcp-") as tmp:
            source = Path(tmp) / ("plan.md" if markdown else "plan.yaml")
            source.write_text(text, encoding="utf-8")
            try:
                return cli("plan", "new", arg(plan, "plan id"), *_opt("--title", title), *_opt("--goal", goal),
                           "--from", str(source))
            except Exception as exc:  # the file is ours: its path means nothing to the client
                raise tool_error(str(exc).replace(str(source), "text")) from None

    def explore(plan: str, executor: str, goal: str | None = None, rounds: int | None = None) -> str:
        """An explorer agent (a trusted executor) writes open questions and an ADR draft."""
        return cli("explore", arg(plan, "plan id"), "--executor", executor, *_opt("--goal", goal),
                   *_opt("--rounds", rounds))

    def spec_answer(plan: str, question: str, text: str) -> str:
        """Record the person's answer to an open question of the plan's spec."""
        return cli("spec", "answer", arg(plan, "plan id"), arg(question, "question id"), "--", text)

    def plan_draft(plan: str, executor: str, goal: str | None = None, rounds: int | None = None,
                   revise: bool = False) -> str:
        """A planner agent writes the plan, checked and rerun on errors; revise: with reviewers' comments."""
        return cli("plan", "draft", arg(plan, "plan id"), "--executor", executor, *_opt("--goal", goal),
                   *_opt("--rounds", rounds), *_opt("--revise", revise))

    def task_add(plan: str, task: str, title: str, depends_on: list[str] | None = None,
                 files: list[str] | None = None, acceptance: list[str] | None = None,
                 priority: Literal["high", "medium", "low"] | None = None) -> str:
        """Add a task to a plan."""
        return cli("task", "add", arg(plan, "plan id"), arg(task, "task id"), "--title", title,
                   *_opt("--priority", priority), *_many("--dep", depends_on), *_many("--file", files),
                   *_many("--accept", acceptance))

    def task_edit(task: str, title: str | None = None, description: str | None = None,
                  depends_on: list[str] | None = None, files: list[str] | None = None,
                  acceptance: list[str] | None = None, priority: Literal["high", "medium", "low"] | None = None,
                  clear: list[TaskField] | None = None) -> str:
        """Change a task's fields in plan.yaml (a list given replaces the task's; clear removes fields)."""
        return cli("task", "edit", arg(task, "task reference"), *_opt("--title", title),
                   *_opt("--description", description), *_many("--dep", depends_on), *_many("--file", files),
                   *_many("--accept", acceptance), *_opt("--priority", priority), *_many("--clear", clear))

    def task_remove(task: str, force: bool = False) -> str:
        """Remove a task no other task waits on (force: also one that has events)."""
        return cli("task", "remove", arg(task, "task reference"), *_opt("--force", force))

    def submit(plan: str) -> str:
        """Validate a draft plan and send it to review (or to execute when none is needed)."""
        return cli("submit", arg(plan, "plan id"))

    def approve(plan: str, reviewer: str, comment: str | None = None) -> str:
        """Approve a plan in review; refused unless config approvals.agents names the reviewer."""
        return cli("approve", arg(plan, "plan id"), "--reviewer", reviewer, *_opt("--comment", comment))

    def checkpoint(plan: str, checkpoint: str | None = None, request_changes: list[str] | None = None,
                   approve: bool = False, reviewer: str | None = None, comment: str | None = None) -> str:
        """A checkpoint's review. With a reviewer: request_changes (a task each), or approve
        (refused unless approvals.agents names the reviewer)."""
        return cli("checkpoint", arg(plan, "plan id"), *_maybe(checkpoint, "checkpoint id"),
                   *_many("--request-changes", request_changes), *_opt("--approve", approve),
                   *_opt("--reviewer", reviewer), *_opt("--comment", comment))

    def finish(plan: str) -> str:
        """Run the final validations (trusted ones only), write the CHANGELOG entry, complete."""
        return cli("finish", arg(plan, "plan id"))

    def signal(plan: str, name: str, data: Any = None) -> str:
        """Send a signal to a plan with any JSON data; the watcher runs its configured action."""
        payload = [] if data is None else ["--data", json.dumps(data)]
        return cli("signal", arg(plan, "plan id"), arg(name, "signal name"), *payload)

    return [prime, status, next, claim, task_show, start, heartbeat, release, done, fail, retry, events, graph,
            diff, plan_show, plan_new, explore, spec_answer, plan_draft, task_add, task_edit, task_remove, submit,
            approve, checkpoint, finish, signal]


_ADR_ID = re.compile(r"^ADR-\d{1,6}$")


def read_spec(repo: Path, plan: str) -> str:
    """A plan's spec.yaml (requirements and questions), as written."""
    from flowgit.errors import FlowError
    from flowgit.store.repo import FlowRepo

    try:
        flow = FlowRepo(repo)
        path = flow.spec_file(plan)  # the id is checked before it becomes a path
        if not flow.plan_dir(plan).is_dir():
            raise resource_error(f"[not_found, exit 1] no plan {plan!r}: see the status tool")
        if not path.is_file():
            raise resource_error(f"[not_found, exit 1] plan {plan} has no spec.yaml")
        return path.read_text(encoding="utf-8")
    except FlowError as exc:
        raise resource_error(f"[{exc.code}, exit {int(exc.exit_code)}] {exc.message}") from None


def _adr_paths(repo: Path) -> list[Path]:
    from flowgit.store.repo import FlowRepo

    flow = FlowRepo(repo)
    folder = flow.safe("adrs")
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.glob("ADR-*.yaml")) if p.is_file() and not p.is_symlink()]


def read_adr(repo: Path, adr: str) -> str:
    """One ADR's file, by its id (ADR-0001)."""
    from flowgit.errors import FlowError

    if not _ADR_ID.match(adr):
        raise resource_error(f"[usage, exit 2] invalid ADR id {adr!r}: it looks like ADR-0001")
    try:
        for path in _adr_paths(repo):
            if path.name.split("-", 2)[:2] == adr.split("-") or path.stem == adr:
                return path.read_text(encoding="utf-8")
    except FlowError as exc:
        raise resource_error(f"[{exc.code}, exit {int(exc.exit_code)}] {exc.message}") from None
    raise resource_error(f"[not_found, exit 1] no {adr} in .flow/adrs/: see flowgit://adrs")


def list_adrs(repo: Path) -> str:
    """Every ADR with its title, status and resource address."""
    from flowgit.errors import FlowError
    from flowgit.formats import yamlio

    lines = []
    try:
        paths = _adr_paths(repo)
    except FlowError as exc:
        raise resource_error(f"[{exc.code}, exit {int(exc.exit_code)}] {exc.message}") from None
    for path in paths:
        adr_id = "-".join(path.name.split("-", 2)[:2]).removesuffix(".yaml")
        try:
            data = yamlio.load_file(path, path.name) or {}
        except FlowError:
            data = {}
        title = data.get("title", "?") if isinstance(data, dict) else "?"
        status = data.get("status", "?") if isinstance(data, dict) else "?"
        lines.append(f"{adr_id} [{status}] {title}: flowgit://adrs/{adr_id}")
    return "\n".join(lines) + "\n" if lines else "no ADRs yet (flowgit adr new TITLE)\n"


def _resource_text(invoke: Invoke, repo: Path, *args: str) -> str:
    try:
        return call_text(invoke, repo, *args)
    except _tool_error_class() as exc:
        raise resource_error(str(exc)) from None


def build(repo: Path, invoke: Invoke) -> Any:
    server_class = _first_of(_SERVER_CLASS)  # ImportError without the mcp package
    tool_class = _first_of(_TOOL_CLASS)
    registered = []
    for fn in tools(repo, invoke):
        # text only: no output schema, no structured copy of the result
        tool = tool_class.from_function(fn, description=" ".join((fn.__doc__ or "").split()),
                                        structured_output=False)
        tool.parameters = compact_schema(tool.parameters)
        registered.append(tool)
    server: _Server = server_class("flowgit", instructions=INSTRUCTIONS, tools=registered)

    server.resource("flowgit://prime", name="prime", mime_type="text/markdown",
                    description="How to work here now: the plans, what is ready, the loop, the rules.")(
        lambda: PRIME_NOTE + _resource_text(invoke, repo, "prime"))
    server.resource("flowgit://plans/{plan}/spec", name="spec", mime_type="application/yaml",
                    description="A plan's spec.yaml: requirements and open questions.")(
        lambda plan: read_spec(repo, plan))
    server.resource("flowgit://adrs/{adr}", name="adr", mime_type="application/yaml",
                    description="One ADR by id (ADR-0001): context, options, decision.")(
        lambda adr: read_adr(repo, adr))
    server.resource("flowgit://adrs", name="adrs", mime_type="text/plain",
                    description="Every ADR: id, status, title and its address.")(lambda: list_adrs(repo))
    def refusing(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run_it(*args: str) -> Any:
            try:
                return fn(invoke, repo, *args)
            except _tool_error_class() as exc:
                raise mcp_prompts.Refused(str(exc)) from None
        return run_it

    mcp_prompts.register(server, refusing(call_text), refusing(call))
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
