"""Plans, tasks, checkpoints and policies as small immutable records.

Each record is built by one `from_dict` that rejects unknown keys, so a typo in a plan is an
error rather than a silently ignored field. Full schema checks live in `validate`.
"""
from __future__ import annotations

import math
import shlex
from collections import Counter
from dataclasses import MISSING, dataclass, field, fields
from functools import cached_property
from typing import Any, Mapping, Sequence, TypeVar

from flowgit.core.approvals import approval_rules
from flowgit.core.plaintask import build_tasks
from flowgit.core.paths import OUTSIDE as OUTSIDE
from flowgit.core.paths import PATH_RULE as PATH_RULE
from flowgit.core.paths import path_problem as path_problem
from flowgit.core.runconfig import _DURATION, _UNIT_SECONDS, RunSettings, config_parts, optional, verify_of
from flowgit.core.runconfig import estimate_hours as estimate_hours
from flowgit.core.scripts import NAMES as SCRIPT_NAMES
from flowgit.core.scripts import PLACEHOLDER as PLACEHOLDER
from flowgit.core.scripts import env_hint, script_placeholders
from flowgit.core.storage import COMPACT_THRESHOLD, storage_settings
from flowgit.errors import InvalidFile
from flowgit.ids import REMOTE_RULE, case_twins, id_problem, remote_problem

PRIORITIES = ("high", "medium", "low")
PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2}
STRATEGIES = ("exponential", "fibonacci", "fixed")

_T = TypeVar("_T")
_DEFAULTS: dict[type, dict[str, Any]] = {}


def trusted_instance(cls: type[_T], values: Mapping[str, Any]) -> _T:
    """A frozen dataclass built from values already checked (the cache, the fold), without
    the per-field `object.__setattr__` of its `__init__`: four times faster on hot paths
    that build thousands of records."""
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        defaults = _DEFAULTS[cls] = {f.name: f.default for f in fields(cls)  # type: ignore[arg-type]
                                     if f.default is not MISSING}
    obj = object.__new__(cls)
    obj.__dict__.update(defaults)
    obj.__dict__.update(values)
    return obj


def _fail(where: str, message: str) -> InvalidFile:
    return InvalidFile(f"{where}: {message}")


def _check_keys(data: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in data:
        if key not in allowed and not (isinstance(key, str) and key.startswith("x-")):
            raise _fail(where, f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


PLACEHOLDERS = SCRIPT_NAMES  # what executors fill in argv
# the executors flowgit ships (flowgit.runner.executors.BUILTIN; a test keeps the two equal)
BUILTIN_EXECUTORS = frozenset({"shell", "demo", "claude", "codex", "gemini"})
MAX_SECONDS = 10 * 365 * 86400.0  # leases, retries, intervals: beyond this a date overflows soon


def _number(value: Any, where: str, *, whole: bool = False, minimum: float = 0.0,
            maximum: float = math.inf) -> Any:
    """A finite number in [minimum, maximum] (a whole one if asked), or a one-line error
    naming `where`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (whole and value != int(value)) or not minimum <= value <= maximum:
        kind = "a whole number" if whole else "a number"
        upto = f" and <= {maximum:g}" if maximum < math.inf else ""
        raise _fail(where, f"expected {kind} >= {minimum:g}{upto}, got {value!r}")
    return int(value) if whole else value  # 1.0 is a whole number, as in JSON Schema


def _seconds(value: Any, where: str, minimum: float = 0.0) -> float:
    return float(_number(value, where, minimum=minimum, maximum=MAX_SECONDS))


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected a mapping, got {type(value).__name__}")
    return value


def _str(value: Any, where: str, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise _fail(where, f"expected text, got {type(value).__name__}")
    return value


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, "expected a list of strings")
    return tuple(value)


def _id(value: Any, where: str) -> str:
    problem = id_problem(value)
    if problem:
        raise _fail(where, f"invalid id {value!r}: {problem}")
    return str(value)


def _paths(value: Any, where: str) -> tuple[str, ...]:
    paths = _strs(value, where)
    for i, path in enumerate(paths):
        problem = path_problem(path)
        if problem:
            raise _fail(f"{where}[{i}]", f"invalid path {path!r} ({problem}): use {PATH_RULE}")
    return paths


def argv_of(value: Any, where: str) -> tuple[str, ...]:
    """A command as an argv list. A string is split like a shell would, but never run by one."""
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise _fail(where, f"cannot split command: {exc}") from None
    return _strs(value, where)


def _estimate(value: Any, where: str) -> Any:
    if isinstance(value, (int, float)):
        _number(value, where)
    return value


def parse_seconds(value: Any, where: str) -> float:
    """'30s', '15m', '1h', '1d', a bare number of seconds, or @hourly/@daily."""
    if isinstance(value, (int, float)):
        return _seconds(value, where)
    text = str(value).strip()
    named = {"@hourly": 3600.0, "@daily": 86400.0, "@weekly": 604800.0}
    if text in named:
        return named[text]
    match = _DURATION.match(text)
    if not match:
        raise _fail(where, f"invalid interval {value!r}: use 30s, 15m, 1h, 1d, @hourly or @daily")
    unit = match.group(2) or "s"
    return _seconds(float(match.group(1)) * _UNIT_SECONDS[unit], where)


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed task is tried again, and how often."""

    strategy: str = "exponential"
    base: float = 1.0
    cap: float = 1800.0
    max_attempts: int = 5

    _KEYS = frozenset({"strategy", "base", "cap", "max_attempts"})

    @classmethod
    def from_dict(cls, data: Any, where: str, default: RetryPolicy | None = None) -> RetryPolicy:
        base = default or cls()
        if data is None:
            return base
        data = _mapping(data, where)
        _check_keys(data, cls._KEYS, where)
        strategy = data.get("strategy", base.strategy)
        if strategy not in STRATEGIES:
            raise _fail(where, f"retry strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        attempts = data.get("max_attempts", base.max_attempts)
        if not isinstance(attempts, int) or attempts < 1:
            raise _fail(where, "max_attempts must be a whole number >= 1")
        return cls(
            strategy=strategy,
            base=_seconds(data.get("base", base.base), f"{where}.base"),
            cap=_seconds(data.get("cap", base.cap), f"{where}.cap"),
            max_attempts=attempts,
        )


@dataclass(frozen=True)
class Validation:
    """A command that checks the work, with its time limit."""

    name: str
    argv: tuple[str, ...]
    timeout: float = 600.0

    @classmethod
    def from_any(cls, data: Any, where: str, index: int) -> Validation:
        if isinstance(data, (str, list)):
            argv = argv_of(data, where)
            return cls(name=argv[0] if argv else f"validation-{index + 1}", argv=argv)
        data = _mapping(data, where)
        _check_keys(data, frozenset({"name", "run", "timeout"}), where)
        argv = argv_of(data.get("run"), f"{where}.run")
        if not argv:
            raise _fail(where, "a validation needs a run: command")
        return cls(
            name=_str(data.get("name"), f"{where}.name", default=argv[0]),
            argv=argv,
            timeout=_seconds(data.get("timeout", 600), f"{where}.timeout"),
        )


@dataclass(frozen=True)
class Task:
    """One task of a plan, as its definition says."""

    id: str
    title: str
    description: str = ""
    depends_on: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    acceptance: tuple[str, ...] = ()
    priority: str = "medium"
    estimate: Any = None
    executor: str | None = None
    run: tuple[str, ...] = ()
    retry: Any = None
    wait: Any = None
    tags: tuple[str, ...] = ()
    adrs: tuple[str, ...] = ()
    verify: tuple[str, ...] = ()  # checks the work before it lands (docs/executors.md)

    _KEYS = frozenset(
        {"id", "title", "description", "depends_on", "files", "acceptance", "priority",
         "estimate", "executor", "run", "retry", "wait", "tags", "adrs", "verify"}
    )

    @property
    def hours(self) -> float:
        return estimate_hours(self.estimate)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Task:
        data = _mapping(data, where)
        _check_keys(data, cls._KEYS, where)
        task_id = _id(data.get("id"), f"{where}.id")
        where = f"{where} (task {task_id})"
        priority = data.get("priority", "medium")
        if priority not in PRIORITIES:
            raise _fail(where, f"priority {priority!r}: use high, medium or low")
        return cls(
            id=task_id,
            title=_str(data.get("title"), f"{where}.title"),
            description=_str(data.get("description"), f"{where}.description", default=""),
            depends_on=_strs(data.get("depends_on"), f"{where}.depends_on"),
            files=_paths(data.get("files"), f"{where}.files"),
            acceptance=_strs(data.get("acceptance"), f"{where}.acceptance"),
            priority=priority,
            estimate=_estimate(data.get("estimate"), f"{where}.estimate"),
            executor=optional(data.get("executor"), str, f"{where}.executor"),
            run=argv_of(data.get("run"), f"{where}.run"),
            retry=data.get("retry"),
            wait=data.get("wait"),
            tags=_strs(data.get("tags"), f"{where}.tags"),
            adrs=_strs(data.get("adrs"), f"{where}.adrs"),
            verify=verify_of(data.get("verify"), f"{where}.verify"),
        )


@dataclass(frozen=True)
class Checkpoint:
    """A review point after some tasks of a plan."""

    id: str
    title: str
    after: tuple[str, ...]
    validations: tuple[Validation, ...] = ()

    _KEYS = frozenset({"id", "title", "after", "validations"})

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Checkpoint:
        data = _mapping(data, where)
        _check_keys(data, cls._KEYS, where)
        cp_id = _id(data.get("id"), f"{where}.id")
        raw = data.get("validations") or []
        if not isinstance(raw, list):
            raise _fail(where, "validations must be a list")
        return cls(
            id=cp_id,
            title=_str(data.get("title"), f"{where}.title", default=cp_id),
            after=_strs(data.get("after"), f"{where}.after"),
            validations=tuple(
                Validation.from_any(v, f"{where}.validations[{i}]", i) for i, v in enumerate(raw)
            ),
        )


@dataclass(frozen=True)
class Plan:
    """A plan's definition: its tasks, checkpoints and settings."""

    id: str
    title: str
    goal: str = ""
    description: str = ""
    parent: str | None = None
    tags: tuple[str, ...] = ()
    executor: str | None = None
    adrs: tuple[str, ...] = ()
    scope: Mapping[str, Any] = field(default_factory=dict)
    retry: Any = None
    tasks: tuple[Task, ...] = ()
    checkpoints: tuple[Checkpoint, ...] = ()
    milestones: tuple[Any, ...] = ()
    risks: tuple[Any, ...] = ()
    verify: tuple[str, ...] = ()

    _KEYS = frozenset(
        {"id", "title", "goal", "description", "parent", "tags", "executor", "adrs", "scope",
         "retry", "tasks", "checkpoints", "milestones", "risks", "verify"}
    )

    @classmethod
    def from_dict(cls, data: Any, where: str, trusted: bool = False,
                  task_values: Sequence[Mapping[str, Any]] | None = None) -> Plan:
        """Build a plan, checking it; `trusted` skips the checks for data that passed them
        before (the derived cache holds only checked plans, and `task_values`, each task's
        fields as built before)."""
        if trusted:
            return cls._from_checked(data, task_values)
        if data is None:
            raise _fail(where, "the plan file is empty: it needs at least id and title")
        data = _mapping(data, where)
        _check_keys(data, cls._KEYS, where)
        plan_id = _id(data.get("id"), f"{where}: id")
        tasks_raw = data.get("tasks", [])  # `tasks:` with nothing is null, not a list: as the schema says
        cps_raw = data.get("checkpoints", [])
        if not isinstance(tasks_raw, list) or not isinstance(cps_raw, list):
            raise _fail(where, "tasks and checkpoints must be lists")
        plan = cls(
            id=plan_id,
            title=_str(data.get("title"), f"{where}: title"),
            goal=_str(data.get("goal"), f"{where}: goal", default=""),
            description=_str(data.get("description"), f"{where}: description", default=""),
            parent=optional(data.get("parent"), str, f"{where}: parent"),
            tags=_strs(data.get("tags"), f"{where}: tags"),
            executor=optional(data.get("executor"), str, f"{where}: executor"),
            adrs=_strs(data.get("adrs"), f"{where}: adrs"),
            scope=dict(optional(data.get("scope"), Mapping, f"{where}: scope", {})),
            retry=data.get("retry"),
            tasks=build_tasks(tasks_raw, where, Task.from_dict, lambda v: trusted_instance(Task, v)),
            checkpoints=tuple(
                Checkpoint.from_dict(c, f"{where}: checkpoints[{i}]") for i, c in enumerate(cps_raw)
            ),
            milestones=tuple(optional(data.get("milestones"), list, f"{where}: milestones", ())),
            risks=tuple(optional(data.get("risks"), list, f"{where}: risks", ())),
            verify=verify_of(data.get("verify"), f"{where}: verify"),
        )
        # Two tasks with one id would fold into one state and hide the other: refuse them here,
        # where every reader (status, claim, validate) passes.
        ids = plan.node_ids()
        if len(set(ids)) != len(ids):
            dup, n = Counter(ids).most_common(1)[0]
            raise _fail(where, f"duplicate id {dup!r} ({n} times): "
                               "give each task and checkpoint its own id")
        if twins := case_twins(ids):
            raise _fail(where, case_twin_message(twins[0], "task or checkpoint ids"))
        return plan

    @classmethod
    def _from_checked(cls, data: Mapping[str, Any],
                      task_values: Sequence[Mapping[str, Any]] | None = None) -> Plan:
        tuple_keys = ("depends_on", "files", "acceptance", "tags", "adrs")
        tasks = [trusted_instance(Task, values) for values in task_values or ()]
        for t in data.get("tasks") or () if task_values is None else ():
            kw = dict(t)
            for k in tuple_keys:
                if k in kw:
                    kw[k] = tuple(kw[k] or ())
            for k in ("run", "verify"):
                kw[k] = argv_of(kw.get(k), k)
            kw.setdefault("description", "")
            if kw["description"] is None:
                kw["description"] = ""
            tasks.append(trusted_instance(Task, {k: v for k, v in kw.items() if k in Task._KEYS}))
        cps = [Checkpoint.from_dict(c, "checkpoint") for c in data.get("checkpoints") or ()]
        return cls(
            id=data["id"], title=data["title"], goal=data.get("goal") or "",
            description=data.get("description") or "", parent=data.get("parent"),
            tags=tuple(data.get("tags") or ()), executor=data.get("executor"),
            adrs=tuple(data.get("adrs") or ()), scope=dict(data.get("scope") or {}),
            retry=data.get("retry"), tasks=tuple(tasks), checkpoints=tuple(cps),
            milestones=tuple(data.get("milestones") or ()), risks=tuple(data.get("risks") or ()),
            verify=argv_of(data.get("verify"), "verify"),
        )

    @cached_property
    def _index(self) -> dict[str, Task]:
        return {t.id: t for t in self.tasks}

    @cached_property
    def has_external_deps(self) -> bool:
        """Whether a task waits on another plan (`OTHER/TASK` or `OTHER`)."""
        local = set(self.node_ids())
        return any(d not in local for t in self.tasks for d in t.depends_on) or \
            any(a not in local for c in self.checkpoints for a in c.after)

    def task(self, task_id: str) -> Task | None:
        return self._index.get(task_id)

    def checkpoint(self, cp_id: str) -> Checkpoint | None:
        for cp in self.checkpoints:
            if cp.id == cp_id:
                return cp
        return None

    def node_ids(self) -> list[str]:
        return [t.id for t in self.tasks] + [c.id for c in self.checkpoints]


@dataclass(frozen=True)
class Executor:
    """A command that runs a task, as config.yaml names it."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 3600.0
    stdin: bool = False  # `stdin: prompt`: the prompt reaches the executor on standard input


@dataclass(frozen=True)
class Config:
    """config.yaml, checked."""

    lease_seconds: float = 900.0
    lock_timeout: float = 30.0
    approvals_required: int = 0
    auto_approve: bool = False
    reset_on_change: bool = False
    approvals_via: str = "events"  # merge: a plan is approved when it reaches approvals_branch
    approvals_branch: str | None = None  # by a merge (default: the default branch)
    approvals_signed: bool = False  # an approval counts only in a commit git verify-commit accepts
    approval_agents: tuple[str, ...] = ()  # agents (by reviewer name) allowed to approve
    retry: RetryPolicy = RetryPolicy()
    sync: str = "none"
    remote: str = "origin"
    executors: Mapping[str, Executor] = field(default_factory=dict)
    default_executor: str = "shell"
    validations: tuple[Validation, ...] = ()
    signals: Mapping[str, Any] = field(default_factory=dict)
    schedules: tuple[Any, ...] = ()
    compact_threshold: int = 0
    compact_keep: int = 100
    debounce_ms: int = 200
    rescan_seconds: float = 30.0
    version: int = 1  # 2: event logs on the state branch `state_branch` (ADR 0011)
    state_branch: str = "flow/state"
    raw: Mapping[str, Any] = field(default_factory=dict)
    run: RunSettings = RunSettings()

    _KEYS = frozenset(
        {"version", "lease_seconds", "lock_timeout", "approvals", "retry", "sync", "remote",
         "executors", "default_executor", "validations", "signals", "schedules", "compact", "watch",
         "state", "requires", "run", "worktree"}
    )

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Config:
        if data is None:
            return cls()
        data = _mapping(data, where)
        _check_keys(data, cls._KEYS, where)
        approvals, compact, watch = config_parts(data, where)  # and the kinds of the keys read below
        executors: dict[str, Executor] = {}
        for name, spec in _mapping(data.get("executors") or {}, f"{where}: executors").items():
            if name == "select":  # the rules that choose an executor (core/runconfig.py)
                continue
            spec = _mapping(spec, f"{where}: executors.{name}")
            _check_keys(spec, frozenset({"argv", "env", "timeout", "stdin"}), f"{where}: executors.{name}")
            if spec.get("stdin", "prompt") != "prompt":
                raise _fail(f"{where}: executors.{name}.stdin", "use `stdin: prompt` or leave it out")
            argv = argv_of(spec.get("argv"), f"{where}: executors.{name}.argv")
            # an unknown {name} stays as written (awk '{print}', sh -c '${f}'); one that looks
            # like a misspelt placeholder is a mistake worth stopping for
            for found in sorted({m for a in argv for m in PLACEHOLDER.findall(a)} - PLACEHOLDERS):
                import difflib  # only here: every command imports this module

                near = difflib.get_close_matches(found, sorted(PLACEHOLDERS), n=1, cutoff=0.8)
                if near:
                    raise _fail(f"{where}: executors.{name}.argv",
                                f"unknown placeholder {{{found}}}: did you mean {{{near[0]}}}?")
            for found in script_placeholders(argv):
                raise _fail(f"{where}: executors.{name}.argv[{found.index}]",
                            f"{{{found.placeholder}}} is inside a script that {found.interpreter} "
                            "runs, so task text would become code: "
                            f"{env_hint(found.placeholder)} (see docs/executors.md)")
            executors[name] = Executor(
                name=name,
                argv=argv,
                env={str(k): str(v) for k, v in (spec.get("env") or {}).items()},
                timeout=_seconds(spec.get("timeout", 3600), f"{where}: executors.{name}.timeout"),
                stdin="stdin" in spec,
            )
        for i, sched in enumerate(data.get("schedules") or ()):
            if isinstance(sched, Mapping) and "every" in sched:  # an interval that can never run
                parse_seconds(sched["every"], f"{where}: schedules[{i}].every")
        version, state_branch = storage_settings(data, where)  # the format, and where state lives
        default = data.get("default_executor", "shell")
        if default not in executors and default not in BUILTIN_EXECUTORS:
            known = ", ".join(sorted(set(executors) | set(BUILTIN_EXECUTORS)))
            raise _fail(f"{where}: default_executor", f"unknown executor {default!r} (known: "
                        f"{known}): define it under executors: or name a known one")
        vals = data.get("validations") or []
        rules = approval_rules(approvals, where, lambda v, w: _number(v, w, whole=True))
        sync = data.get("sync", "none")
        if sync not in ("none", "push"):
            raise _fail(where, f"sync {sync!r}: use none or push")
        remote = data.get("remote", "origin")
        problem = remote_problem(remote)
        if problem:  # it reaches `git fetch`/`git push` and hints: never str() of a list or a number
            raise _fail(f"{where}: remote", f"invalid remote name {remote!r}: {problem}; use {REMOTE_RULE}")
        return cls(
            version=version, state_branch=state_branch,
            lease_seconds=_seconds(data.get("lease_seconds", 900), f"{where}: lease_seconds", 1),
            lock_timeout=_seconds(data.get("lock_timeout", 30), f"{where}: lock_timeout"),
            approvals_required=rules.required,
            auto_approve=bool(approvals.get("auto_approve", False)),
            reset_on_change=bool(approvals.get("reset_on_change", False)),
            approvals_via=rules.via,
            approvals_branch=rules.branch,
            approvals_signed=rules.signed,
            approval_agents=rules.agents,
            retry=RetryPolicy.from_dict(data.get("retry"), f"{where}: retry"),
            sync=sync,
            remote=remote,
            executors=executors,
            default_executor=str(default),
            validations=tuple(
                Validation.from_any(v, f"{where}: validations[{i}]", i) for i, v in enumerate(vals)
            ),
            signals=dict(data.get("signals") or {}),
            schedules=tuple(data.get("schedules") or ()),
            compact_threshold=_number(compact.get("threshold", COMPACT_THRESHOLD[version]),
                                      f"{where}: compact.threshold", whole=True),
            compact_keep=_number(compact.get("keep", 100), f"{where}: compact.keep", whole=True),
            debounce_ms=_number(watch.get("debounce_ms", 200), f"{where}: watch.debounce_ms",
                                whole=True),
            rescan_seconds=_seconds(watch.get("rescan_seconds", 30), f"{where}: watch.rescan_seconds",
                                    0.05),
            raw=dict(data),
            run=RunSettings.from_config(data, where, set(executors) | BUILTIN_EXECUTORS, path_problem),
        )


def case_twin_message(twins: Sequence[str], what: str) -> str:
    return (f"{what} {' and '.join(repr(t) for t in twins)} differ only by case: on macOS and "
            "Windows their files would be one file; rename one of them")


def policy_for(plan: Plan, task: Task | None, config: Config) -> RetryPolicy:
    plan_policy = RetryPolicy.from_dict(plan.retry, f"plan {plan.id}: retry", config.retry)
    if task is None or task.retry is None:
        return plan_policy
    return RetryPolicy.from_dict(task.retry, f"plan {plan.id}: task {task.id}: retry", plan_policy)


def dedupe(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))
