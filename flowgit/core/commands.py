"""The commands `.flow/` asks flowgit to run, each named by its file and key path.

A command is trusted (or not) on its own: its digest covers the file, the key path, the argv
and (for an executor) its environment, so the same argv under another key, or another argv
under the same key, is another command. Pure: the store records digests, the runner checks
them, `diff` lists what a change adds or changes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from flowgit.core.model import Config, Plan, Task, argv_of
from flowgit.errors import InvalidFile

CONFIG_FILE = ".flow/config.yaml"


def plan_file(plan_id: str) -> str:
    return f".flow/plans/{plan_id}/plan.yaml"


@dataclass(frozen=True)
class Command:
    """A command flowgit would run from .flow/, and where it is written."""

    file: str  # the file under .flow/ that holds it
    key: str  # where in the file: validations[tests], tasks[T-1].run, executors.claude ...
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        body = json.dumps({"file": self.file, "key": self.key, "argv": list(self.argv),
                           "env": dict(sorted(self.env.items()))}, sort_keys=True)
        import hashlib  # trust checks only: `status` imports this module for executors

        return hashlib.sha256(body.encode()).hexdigest()

    @property
    def where(self) -> str:
        return f"{self.file} {self.key}"

    def shown(self, width: int = 120) -> str:
        """The argv as one line a person can read (quoted where it needs it), cut to `width`."""
        import shlex

        text = " ".join(shlex.quote(a) for a in self.argv)
        if self.env:
            text = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items())) + " " + text
        return text if len(text) <= width else text[:width - 3] + "..."

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "key": self.key, "argv": list(self.argv),
                               "hash": self.digest}
        if self.env:
            out["env"] = dict(self.env)
        return out


def _argv(value: Any) -> tuple[str, ...] | None:
    try:
        argv = argv_of(value, "command")
    except InvalidFile:
        return None
    return argv or None


# ----- the commands of one place, shared by the raw and the parsed readers ---------------------

def task_run(plan_id: str, task_id: str, argv: tuple[str, ...]) -> Command:
    return Command(plan_file(plan_id), f"tasks[{task_id}].run", argv)


def task_verify(plan_id: str, task_id: str, argv: tuple[str, ...]) -> Command:
    return Command(plan_file(plan_id), f"tasks[{task_id}].verify", argv)


def plan_verify(plan_id: str, argv: tuple[str, ...]) -> Command:
    return Command(plan_file(plan_id), "verify", argv)


def worktree_setup(argv: tuple[str, ...]) -> Command:
    return Command(CONFIG_FILE, "worktree.setup", argv)


def task_wait(plan_id: str, task_id: str, argv: tuple[str, ...]) -> Command:
    return Command(plan_file(plan_id), f"tasks[{task_id}].wait", argv)


def wait_argv(wait: Any) -> tuple[str, ...] | None:
    """A task's `wait:` condition as argv: `{run: CMD, timeout: S}`, or the command itself."""
    return _argv(wait.get("run") if isinstance(wait, Mapping) else wait)


def checkpoint_validation(plan_id: str, cp_id: str, name: str, argv: tuple[str, ...]) -> Command:
    return Command(plan_file(plan_id), f"checkpoints[{cp_id}].validations[{name}]", argv)


def config_validation(name: str, argv: tuple[str, ...]) -> Command:
    return Command(CONFIG_FILE, f"validations[{name}]", argv)


def executor(name: str, argv: tuple[str, ...], env: Mapping[str, str]) -> Command:
    return Command(CONFIG_FILE, f"executors.{name}", argv, dict(env))


def schedule(sched_id: str, argv: tuple[str, ...]) -> Command:
    return Command(CONFIG_FILE, f"schedules[{sched_id}].run", argv)


def signal(name: str, argv: tuple[str, ...]) -> Command:
    return Command(CONFIG_FILE, f"signals.{name}.run", argv)


# ----- every command of a file ------------------------------------------------------------------

def plan_commands(plan: Plan) -> list[Command]:
    out: list[Command] = []
    for task in plan.tasks:
        out += task_commands(plan.id, task)
    for cp in plan.checkpoints:
        out += [checkpoint_validation(plan.id, cp.id, v.name, v.argv) for v in cp.validations if v.argv]
    if plan.verify:
        out.append(plan_verify(plan.id, plan.verify))
    return out


def task_commands(plan_id: str, task: Task) -> list[Command]:
    out = []
    if task.run:
        out.append(task_run(plan_id, task.id, task.run))
    if task.verify:
        out.append(task_verify(plan_id, task.id, task.verify))
    if task.wait is not None:
        argv = wait_argv(task.wait)
        if argv:
            out.append(task_wait(plan_id, task.id, argv))
    return out


def config_commands(config: Config) -> list[Command]:
    out = [executor(e.name, e.argv, e.env) for e in config.executors.values() if e.argv]
    out += [config_validation(v.name, v.argv) for v in config.validations if v.argv]
    if config.run.setup:
        out.append(worktree_setup(config.run.setup))
    for sched in config.schedules:
        if isinstance(sched, Mapping):
            argv = _argv(sched.get("run"))
            if argv:
                out.append(schedule(str(sched.get("id")), argv))
    for name, action in config.signals.items():
        if isinstance(action, Mapping) and "run" in action:
            argv = _argv(action.get("run"))
            if argv:
                out.append(signal(str(name), argv))
    return out


def raw_plan_commands(plan_id: str, raw: Mapping[str, Any] | None) -> list[Command]:
    """The commands of a plan file as written (a plan `diff` compares, valid or not)."""
    if not isinstance(raw, Mapping):
        return []
    out: list[Command] = []
    for t in raw.get("tasks") or ():
        if not isinstance(t, Mapping):
            continue
        tid = str(t.get("id"))
        argv = _argv(t.get("run"))
        if argv:
            out.append(task_run(plan_id, tid, argv))
        argv = _argv(t.get("verify"))
        if argv:
            out.append(task_verify(plan_id, tid, argv))
        if t.get("wait") is not None:
            argv = wait_argv(t.get("wait"))
            if argv:
                out.append(task_wait(plan_id, tid, argv))
    for c in raw.get("checkpoints") or ():
        if not isinstance(c, Mapping) or not isinstance(c.get("validations"), list):
            continue
        for i, v in enumerate(c["validations"]):
            name, argv = _validation(v, i)
            if argv:
                out.append(checkpoint_validation(plan_id, str(c.get("id")), name, argv))
    argv = _argv(raw.get("verify"))
    if argv:
        out.append(plan_verify(plan_id, argv))
    return out


def raw_config_commands(raw: Mapping[str, Any] | None) -> list[Command]:
    if not isinstance(raw, Mapping):
        return []
    out: list[Command] = []
    executors = raw.get("executors")
    for name, spec in (executors.items() if isinstance(executors, Mapping) else ()):
        if isinstance(spec, Mapping):
            argv = _argv(spec.get("argv"))
            raw_env = spec.get("env")
            env: Mapping[Any, Any] = raw_env if isinstance(raw_env, Mapping) else {}
            if argv:
                out.append(executor(str(name), argv, {str(k): str(v) for k, v in env.items()}))
    vals = raw.get("validations")
    for i, v in enumerate(vals if isinstance(vals, list) else ()):
        name, argv = _validation(v, i)
        if argv:
            out.append(config_validation(name, argv))
    tree = raw.get("worktree")
    argv = _argv(tree.get("setup")) if isinstance(tree, Mapping) else None
    if argv:
        out.append(worktree_setup(argv))
    scheds = raw.get("schedules")
    for sched in scheds if isinstance(scheds, list) else ():
        if isinstance(sched, Mapping):
            argv = _argv(sched.get("run"))
            if argv:
                out.append(schedule(str(sched.get("id")), argv))
    signals = raw.get("signals")
    for name, action in (signals.items() if isinstance(signals, Mapping) else ()):
        if isinstance(action, Mapping) and "run" in action:
            argv = _argv(action.get("run"))
            if argv:
                out.append(signal(str(name), argv))
    return out


def _validation(value: Any, index: int) -> tuple[str, tuple[str, ...] | None]:
    """As `Validation.from_any` names it: its name, else its program, else its position."""
    if isinstance(value, Mapping):
        argv = _argv(value.get("run"))
        name = value.get("name")
        return (str(name) if isinstance(name, str) else (argv[0] if argv else f"validation-{index + 1}")), argv
    argv = _argv(value)
    return (argv[0] if argv else f"validation-{index + 1}"), argv


def changes(old: Iterable[Command], new: Iterable[Command]) -> tuple[list[Command], list[Command]]:
    """What a change adds (a key that had no command) and changes (a key whose command is
    another now), in the new file's order."""
    before = {(c.file, c.key): c.digest for c in old}
    added, changed = [], []
    for cmd in new:
        digest = before.get((cmd.file, cmd.key))
        if digest is None:
            added.append(cmd)
        elif digest != cmd.digest:
            changed.append(cmd)
    return added, changed
