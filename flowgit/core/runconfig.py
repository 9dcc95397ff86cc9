"""How `flowgit run` lands work, read from `.flow/config.yaml` (`run:`, `worktree:` and
`executors.select`), and the rules that choose a task's executor. Pure.

    run:
      land: merge          # or branch: keep the task's branch for a pull request
      commit_hooks: false  # commit agent work through the project's own git hooks
      escalate_after: 2    # stop claiming once more than 2 tasks are failed or blocked
      verify_timeout: 600  # seconds for a task's `verify:` command
      prompt_stdin_over: 65536   # bytes: built-in agents read a larger prompt from stdin
    worktree:
      setup: [uv, sync]    # runs in each fresh worktree before the executor (trusted)
      copy: [.env]         # files (ignored ones, say) copied from the main work tree
      timeout: 600
    executors:
      select:              # first match wins; a rule without conditions always matches
        - {executor: gemini, max_plan_tasks: 3}
        - {executor: codex}
"""
from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping

from flowgit.errors import InvalidFile

LANDINGS = frozenset({"merge", "branch"})
# what one argv element may hold on Linux (MAX_ARG_STRLEN): a larger {prompt} cannot be passed
ARG_LIMIT = 131072
MAX_SECONDS = 10 * 365 * 86400.0

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 3600.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def estimate_hours(value: Any) -> float:
    """A task's `estimate` in hours: a number of hours, or 30m, 2h, 1d, 1w (1 when absent)."""
    if value is None:
        return 1.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        return 1.0
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)] / 3600.0


def _fail(where: str, message: str) -> InvalidFile:
    return InvalidFile(f"{where}: {message}")


def _keys(data: Mapping[str, Any], allowed: Collection[str], where: str) -> None:
    for key in data:
        if key not in allowed and not (isinstance(key, str) and key.startswith("x-")):
            raise _fail(where, f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def _map(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected a mapping, got {type(value).__name__}")
    return value


_KINDS: dict[type, str] = {str: "text", list: "a list"}


def optional(value: Any, kind: type, where: str, default: Any = None) -> Any:
    """`value` when it is a `kind` (absent: `default`), else a one-line error naming `where`: a
    teammate's plan can hold a list where text belongs, which must not reach a dict key."""
    if value is None:
        return default
    if not isinstance(value, kind):
        raise _fail(where, f"expected {_KINDS.get(kind, 'a mapping')}, got {type(value).__name__}")
    return value


def config_parts(data: Mapping[str, Any], where: str) -> tuple[Mapping[str, Any], ...]:
    """A config's `approvals`, `compact` and `watch` mappings, once the kind of every key read
    as text, a list or a mapping is checked: a config can arrive by a sync (flow/state), and a
    number where a list belongs must be its one-line refusal, not a traceback in every command."""
    for key, kind in (("default_executor", str), ("validations", list), ("schedules", list),
                      ("signals", Mapping), ("executors", Mapping)):
        optional(data.get(key), kind, f"{where}: {key}")
    for name, spec in (data.get("executors") or {}).items():
        if name != "select" and isinstance(spec, Mapping):
            optional(spec.get("env"), Mapping, f"{where}: executors.{name}.env")
    return tuple(_map(data.get(key) or None, f"{where}: {key}") for key in ("approvals", "compact", "watch"))


def _count(value: Any, where: str, minimum: float = 0, maximum: float = math.inf,
           whole: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (whole and value != int(value)) or not minimum <= value <= maximum:
        kind = "a whole number" if whole else "a number"
        raise _fail(where, f"expected {kind} >= {minimum:g}, got {value!r}")
    return float(value)


def command(value: Any, where: str) -> tuple[str, ...]:
    """A command: a non-empty argv list, or a string split as a shell would (never run by one)."""
    if isinstance(value, str):
        try:
            argv = tuple(shlex.split(value))
        except ValueError as exc:
            raise _fail(where, f"cannot split command: {exc}") from None
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        argv = tuple(value)
    else:
        raise _fail(where, "expected a command: a list of strings (argv) or a string")
    if not argv:
        raise _fail(where, "an empty command: give the program and its arguments")
    return argv


@dataclass(frozen=True)
class SelectRule:
    """One `executors.select` entry: the executor, and conditions that must all hold."""
    index: int
    executor: str
    tags: tuple[str, ...] = ()  # any of them on the task or its plan
    min_estimate: float | None = None  # hours
    max_estimate: float | None = None
    min_files: int | None = None
    max_files: int | None = None
    min_plan_tasks: int | None = None
    max_plan_tasks: int | None = None

    BOUNDS = ("min_estimate", "max_estimate", "min_files", "max_files", "min_plan_tasks",
              "max_plan_tasks")

    @classmethod
    def from_dict(cls, data: Any, where: str, index: int, known: Collection[str]) -> SelectRule:
        if not isinstance(data, Mapping):
            raise _fail(where, "expected a mapping such as {executor: codex, min_plan_tasks: 4}")
        _keys(data, {"executor", "tags", *cls.BOUNDS}, where)
        name = data.get("executor")
        if not isinstance(name, str) or name not in known:
            raise _fail(f"{where}.executor", f"unknown executor {name!r} (known: "
                        f"{', '.join(sorted(known))}): define it under executors: or name a known one")
        tags = data.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _fail(f"{where}.tags", "expected a list of tags")
        bounds: dict[str, Any] = {}
        for key in cls.BOUNDS:
            if data.get(key) is not None:
                value = _count(data[key], f"{where}.{key}", whole=not key.endswith("estimate"))
                bounds[key] = value if key.endswith("estimate") else int(value)
        return cls(index=index, executor=name, tags=tuple(tags), **bounds)

    def why_not(self, tags: Collection[str], hours: float, files: int, plan_tasks: int) -> str | None:
        """None when the rule matches; else the first condition that does not hold."""
        if self.tags and not set(self.tags) & set(tags):
            return f"no tag {' or '.join(self.tags)}"
        checks = (("estimate", hours, self.min_estimate, self.max_estimate),
                  ("files", files, self.min_files, self.max_files),
                  ("plan_tasks", plan_tasks, self.min_plan_tasks, self.max_plan_tasks))
        for name, value, low, high in checks:
            if low is not None and value < low:
                return f"{name} {value:g} < {low:g}"
            if high is not None and value > high:
                return f"{name} {value:g} > {high:g}"
        return None

    def reason(self, tags: Collection[str], hours: float, files: int, plan_tasks: int) -> str:
        """Why the rule matched, in words a person reads in `status`."""
        said = []
        if self.tags:
            said.append(f"tag {', '.join(sorted(set(self.tags) & set(tags)))}")
        values = {"estimate": hours, "files": files, "plan_tasks": plan_tasks}
        for key in self.BOUNDS:
            bound = getattr(self, key)
            if bound is not None:
                what = key.split("_", 1)[1]
                said.append(f"{what} {values[what]:g} {'>=' if key.startswith('min') else '<='} {bound:g}")
        return f"executors.select[{self.index}]" + (f" ({'; '.join(said)})" if said else "")


@dataclass(frozen=True)
class RunSettings:
    """config.yaml's `run:` settings."""

    land: str = "merge"
    commit_hooks: bool = False
    escalate_after: int | None = None
    verify_timeout: float = 600.0
    prompt_stdin_over: int = 65536
    setup: tuple[str, ...] = ()
    copy: tuple[str, ...] = ()
    setup_timeout: float = 600.0
    select: tuple[SelectRule, ...] = ()

    RUN_KEYS = frozenset({"land", "commit_hooks", "escalate_after", "verify_timeout",
                          "prompt_stdin_over"})
    WORKTREE_KEYS = frozenset({"setup", "copy", "timeout"})

    @classmethod
    def from_config(cls, data: Mapping[str, Any], where: str, known: Collection[str],
                    path_problem: Callable[[str], str | None]) -> RunSettings:
        """`run:`, `worktree:` and `executors.select` of a config file (`known`: executor names)."""
        run = _map(data.get("run"), f"{where}: run")
        _keys(run, cls.RUN_KEYS, f"{where}: run")
        land = run.get("land", "merge")
        if not isinstance(land, str) or land not in LANDINGS:
            raise _fail(f"{where}: run.land", f"{land!r}: use merge or branch")
        hooks = run.get("commit_hooks", False)
        if not isinstance(hooks, bool):
            raise _fail(f"{where}: run.commit_hooks", f"expected true or false, got {hooks!r}")
        escalate = run.get("escalate_after")
        if escalate is not None:
            escalate = int(_count(escalate, f"{where}: run.escalate_after"))
        tree = _map(data.get("worktree"), f"{where}: worktree")
        _keys(tree, cls.WORKTREE_KEYS, f"{where}: worktree")
        setup = command(tree["setup"], f"{where}: worktree.setup") if tree.get("setup") is not None else ()
        copy = tree.get("copy") or []
        if not isinstance(copy, list) or not all(isinstance(p, str) for p in copy):
            raise _fail(f"{where}: worktree.copy", "expected a list of paths")
        for i, path in enumerate(copy):
            problem = path_problem(path)
            if problem:
                raise _fail(f"{where}: worktree.copy[{i}]", f"invalid path {path!r} ({problem})")
        executors = _map(data.get("executors"), f"{where}: executors")
        rules = executors.get("select") or []
        if not isinstance(rules, list):
            raise _fail(f"{where}: executors.select", "expected a list of rules, first match wins")
        return cls(
            land=land, commit_hooks=hooks, escalate_after=escalate,
            verify_timeout=_count(run.get("verify_timeout", 600), f"{where}: run.verify_timeout",
                                  minimum=1, maximum=MAX_SECONDS, whole=False),
            prompt_stdin_over=int(_count(run.get("prompt_stdin_over", 65536),
                                         f"{where}: run.prompt_stdin_over", maximum=ARG_LIMIT - 1)),
            setup=setup, copy=tuple(copy),
            setup_timeout=_count(tree.get("timeout", 600), f"{where}: worktree.timeout",
                                 minimum=1, maximum=MAX_SECONDS, whole=False),
            select=tuple(SelectRule.from_dict(r, f"{where}: executors.select[{i}]", i, known)
                         for i, r in enumerate(rules)),
        )


def verify_of(raw: Any, where: str) -> tuple[str, ...]:
    """A plan's or task's `verify:` command (none when absent)."""
    return () if raw is None else command(raw, where)
