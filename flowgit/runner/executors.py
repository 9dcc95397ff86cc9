"""Executors: named argv templates with placeholders, never a shell string built from task text."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from flowgit.core import commands
from flowgit.core.commands import Command
from flowgit.core.model import PLACEHOLDER, Config, Executor, Plan, Task
from flowgit.core.runconfig import ARG_LIMIT
from flowgit.errors import BadExecutor, NoRun, UnknownExecutor

if TYPE_CHECKING:
    from flowgit.ops.prompt import prompt_text as prompt_text

BUILTIN: dict[str, Executor] = {
    # `shell` runs the task's own `run:` argv (see argv_for).
    "shell": Executor("shell", ("{run}",), {}, 3600.0),
    # The demo executor writes the task's declared files for real (see flowgit.runner.demo_executor).
    "demo": Executor("demo", ("{python}", "-m", "flowgit.demo_executor", "{prompt_file}"), {}, 60.0),
    # Documented templates for command-line coding agents (docs/executors.md).
    "claude": Executor("claude", ("claude", "-p", "{prompt}", "--permission-mode", "acceptEdits"), {}, 3600.0),
    "codex": Executor("codex", ("codex", "exec", "--full-auto", "{prompt}"), {}, 3600.0),
    "gemini": Executor("gemini", ("gemini", "--yolo", "-p", "{prompt}"), {}, 3600.0),
}


def by_name(config: Config, name: str, where: str) -> Executor:
    """The executor called `name` (config first, then the built-ins), or an error naming the known ones."""
    if name in config.executors:
        return config.executors[name]
    if name in BUILTIN:
        return BUILTIN[name]
    known = ", ".join(sorted(set(config.executors) | set(BUILTIN)))
    raise UnknownExecutor(f"{where}: unknown executor {name!r} (known: {known}): "
                    "define it under executors: in .flow/config.yaml")


# The built-in agents as they read a prompt on standard input (one too large for an argument):
# `claude -p` and `codex exec -` read it there; gemini appends its -p text to what stdin holds.
STDIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "claude": ("claude", "-p", "--permission-mode", "acceptEdits"),
    "codex": ("codex", "exec", "--full-auto", "-"),
    "gemini": ("gemini", "--yolo", "-p", "Do the task described above."),
}


def choose(config: Config, plan: Plan, task: Task, override: str | None) -> tuple[str, str]:
    """The executor a task gets and why: --executor, the task's executor:, its plan's, the
    first `executors.select` rule that matches, else default_executor."""
    if override:
        return override, "--executor"
    if task.executor:
        return task.executor, "task executor:"
    if plan.executor:
        return plan.executor, "plan executor:"
    if not config.run.select:
        return config.default_executor, "default_executor"
    facts = (set(task.tags) | set(plan.tags), task.hours, len(task.files), len(plan.tasks))
    for rule in config.run.select:
        if rule.why_not(*facts) is None:
            return rule.executor, rule.reason(*facts)
    return config.default_executor, "default_executor"


def resolve(config: Config, plan: Plan, task: Task, override: str | None) -> Executor:
    name = choose(config, plan, task, override)[0]
    return by_name(config, name, f"task {plan.id}/{task.id}")


# Built-in templates that give the plan's text to a coding agent allowed to edit files.
AGENTS = frozenset({"claude", "codex", "gemini"})


def commands_for(config: Config, plan: Plan, task: Task, override: str | None) -> tuple[list[Command], bool]:
    """What running `task` runs from `.flow/` (the executor's template when config defines it,
    the task's `run:` when the template takes it) and whether the plan's text reaches an
    agent: a built-in agent, or any executor of the config's (it gets the prompt through
    {prompt}, {prompt_file} or FLOWGIT_PROMPT_FILE, and only its author knows what it does)."""
    ex = resolve(config, plan, task, override)
    out = []
    from_config = ex.name in config.executors
    if from_config:
        out.append(commands.executor(ex.name, ex.argv, ex.env))
    if "{run}" in ex.argv and task.run:
        out.append(commands.task_run(plan.id, task.id, task.run))
    if config.run.setup:
        out.append(commands.worktree_setup(config.run.setup))
    check = verify_command(plan, task)
    if check is not None:
        out.append(check)
    return out, from_config or ex.name in AGENTS


def verify_command(plan: Plan, task: Task) -> Command | None:
    """What checks the task's work before it lands: its own `verify:`, else its plan's."""
    if task.verify:
        return commands.task_verify(plan.id, task.id, task.verify)
    if plan.verify:
        return commands.plan_verify(plan.id, plan.verify)
    return None


@dataclass(frozen=True)
class Invocation:
    """How an executor is run: its argv, environment and time limit."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    timeout: float


def argv_for(executor: Executor, values: Mapping[str, str], task: Task, plan_id: str) -> tuple[str, ...]:
    """Fill placeholders element by element. `{run}` as a whole element expands to the task's
    run argv. Values are inserted as data: no element is ever re-split or given to a shell."""
    out: list[str] = []
    for element in executor.argv:
        if element == "{run}":
            if not task.run:
                raise NoRun(f"task {plan_id}/{task.id} has no run: command for the shell executor: "
                                "add `run: [cmd, args...]` or choose another executor")
            out.extend(task.run)
            continue
        out.append(PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), element))
    if not out:
        raise BadExecutor(f"executor {executor.name} has an empty argv")
    return tuple(out)


def agent_argv(executor: Executor, values: Mapping[str, str], what: str) -> tuple[str, ...]:
    """The argv of an agent that works on a plan rather than a task (`explore`, `plan draft`):
    placeholders filled as data, as argv_for does; `{run}` has no task to take it from."""
    if "{run}" in executor.argv:
        raise BadExecutor(f"{what}: executor {executor.name} runs a task's run: command; choose an "
                          "agent executor (claude, codex, gemini, or one defined in .flow/config.yaml)")
    out = tuple(PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), e) for e in executor.argv)
    if not out:
        raise BadExecutor(f"executor {executor.name} has an empty argv")
    return out


def agent_invocation(config: Config, executor: Executor, values: Mapping[str, str],
                     what: str) -> tuple[tuple[str, ...], bytes | None]:
    """`agent_argv` and what goes to standard input, by the rules `invocation` applies to a
    task's agent: a `stdin: prompt` template and a large prompt to a built-in agent read it
    there; a `{prompt}` too large for one argument is refused with the way out."""
    prompt = values.get("prompt", "").encode("utf-8")
    if executor.stdin:
        return agent_argv(executor, values, what), prompt
    if executor.name in AGENTS and executor.name not in config.executors \
            and len(prompt) > config.run.prompt_stdin_over:
        return STDIN_TEMPLATES[executor.name], prompt
    if len(prompt) >= ARG_LIMIT and any("{prompt}" in a for a in executor.argv):
        raise BadExecutor(f"{what}: the prompt is {len(prompt)} bytes, more than one argument can "
                          f"carry ({ARG_LIMIT}): in executors.{executor.name} use {{prompt_file}} or "
                          "`stdin: prompt` instead of {prompt}")
    return agent_argv(executor, values, what), None


def invocation(config: Config, executor: Executor, values: Mapping[str, str], task: Task,
               plan_id: str) -> tuple[tuple[str, ...], bytes | None]:
    """The argv, and what goes to standard input: the prompt for a `stdin: prompt` template,
    and for a built-in agent whose prompt is over `run.prompt_stdin_over` bytes; an argv
    element can hold 128 KiB at most, so a larger `{prompt}` is refused with the way out."""
    prompt = values.get("prompt", "").encode("utf-8")
    if executor.stdin:
        return argv_for(executor, values, task, plan_id), prompt
    builtin = executor.name in AGENTS and executor.name not in config.executors
    if builtin and len(prompt) > config.run.prompt_stdin_over:
        return STDIN_TEMPLATES[executor.name], prompt
    if len(prompt) >= ARG_LIMIT and any("{prompt}" in a for a in executor.argv):
        raise BadExecutor(f"task {plan_id}/{task.id}: the prompt is {len(prompt)} bytes, more than "
                          f"one argument can carry ({ARG_LIMIT}): in executors.{executor.name} use "
                          "{prompt_file} or `stdin: prompt` instead of {prompt}")
    return argv_for(executor, values, task, plan_id), None


def values_for(plan: Plan, task: Task, worktree: Path, prompt_file: Path, prompt: str,
               branch: str, repo_root: Path, attempt: int, python: str) -> dict[str, str]:
    return {"plan": plan.id, "task": task.id, "title": task.title, "worktree": str(worktree),
            "prompt_file": str(prompt_file), "prompt": prompt, "branch": branch,
            "repo": str(repo_root), "attempt": str(attempt), "python": python}


__all__ = ["BUILTIN", "AGENTS", "Invocation", "agent_argv", "agent_invocation", "argv_for", "by_name", "commands_for", "prompt_text",
           "resolve", "values_for"]


def __getattr__(name: str) -> Any:
    """`prompt_text`, imported when asked for: `status` imports this module to say which
    executor each task gets, and needs no prompt (ops/prompt, formats/yamlio)."""
    if name == "prompt_text":
        from flowgit.ops.prompt import prompt_text
        return prompt_text
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
