"""An agent that explores (CQ's /pi) and one that plans (/plan), and the answers a person gives
in between (docs/planning.md). The agents write YAML to paths flowgit gives them; flowgit checks
it against the schemas, runs them again with the errors, and commits the valid result through
the write door, one commit with the rounds as events."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from flowgit import git
from flowgit.core import commands as cmds
from flowgit.core.events import Event, make_event
from flowgit.core.fold import phase_of
from flowgit.core.model import Executor
from flowgit.errors import (AlreadyExists, Dirty, FlowError, IllegalTransition, NotFound,
                            PlanEdited, UsageError)
from flowgit.formats import yamlio
from flowgit.ids import check_id
from flowgit.ops import trust
from flowgit.runner.agentloop import AgentJob, Round, cleanup, workdir_for
from flowgit.runner.executors import by_name
from flowgit.store.planedit import adr_ids
from flowgit.store.repo import FlowRepo, LoadedPlan
from flowgit.store.trust import is_agent

Say = Callable[[str], None]


@dataclass
class Start:
    """The plan as the agent found it: what is checked again under the lock before writing."""
    plan_id: str
    goal: str
    loaded: LoadedPlan | None
    phase: str
    text_trusted: bool  # the plan's text was trusted here (or is new): the result's text is too
    spec: dict[str, Any] | None = None
    adrs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.loaded.plan.title if self.loaded else self.plan_id


def plan_clock(repo: FlowRepo, plan_id: str) -> int:
    return max((e.clock for e in repo.plan_events(plan_id)), default=0) + 1


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _refuse_edited(repo: FlowRepo, plan_id: str, command: str) -> None:
    for path in (repo.plan_file(plan_id), repo.spec_file(plan_id)):
        rel = repo.rel(path)
        if path.exists() and git.changed_paths(repo.root, rel):
            raise Dirty(f"{rel} has uncommitted changes: commit or stash them before `flowgit {command}`")


def load_spec(repo: FlowRepo, plan_id: str) -> dict[str, Any] | None:
    path = repo.spec_file(plan_id)
    if not path.exists():
        return None
    data = yamlio.load_file(path, repo.rel(path))
    return data if isinstance(data, dict) else None


def load_adrs(repo: FlowRepo, wanted: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not wanted:
        return out
    known = set(adr_ids(repo))
    for path in sorted(repo.safe("adrs").glob("ADR-*.yaml")):
        adr_id = "-".join(path.name.split("-")[:2])
        if adr_id in wanted and adr_id in known and not path.is_symlink():
            data = yamlio.load_file(path, repo.rel(path))
            out[adr_id] = data if isinstance(data, dict) else {}
    return {a: out[a] for a in wanted if a in out}


def begin(repo: FlowRepo, plan_id: str, goal: str | None, executor_name: str, command: str,
          phases: Sequence[str], trust_now: bool) -> tuple[Start, Executor]:
    """Everything checked before an agent runs: ids, phase, goal, uncommitted edits, and trust
    (the executor's argv, and the plan's text, which becomes its prompt)."""
    repo.require_init()
    check_id(plan_id, "plan id")
    if goal is not None and not goal.strip():
        raise UsageError("--goal is empty: say what the change achieves")
    executor = by_name(repo.config, executor_name, "--executor")
    if "{run}" in executor.argv:
        raise UsageError(f"--executor {executor.name} runs a task's run: command; choose an agent "
                         "executor (claude, codex, gemini, or one defined in .flow/config.yaml)")
    try:
        loaded: LoadedPlan | None = repo.load_plan(plan_id)
    except NotFound:
        loaded = None
    if loaded is None:
        if not goal:
            raise UsageError(f"plan {plan_id} does not exist yet: give its goal with --goal TEXT")
        if trust_now:
            trust.for_this_run(repo, [])
        if executor.name in repo.config.executors:
            trust.require(repo, [cmds.executor(executor.name, executor.argv, executor.env)], plan_id)
        return Start(plan_id, goal, None, "new", True), executor
    phase = phase_of(repo.plan_events(plan_id)).phase
    if phase not in phases:
        raise IllegalTransition(f"plan {plan_id} is in {phase}: `flowgit {command}` works on a plan "
                                f"in {' or '.join(phases)}")
    _refuse_edited(repo, plan_id, command)
    if trust_now:
        trust.for_this_run(repo, [plan_id])
    if executor.name in repo.config.executors:
        trust.require(repo, [cmds.executor(executor.name, executor.argv, executor.env)], plan_id)
    why = trust.why_plan_untrusted(repo, plan_id)
    if why:
        raise trust.Untrusted(f"not running {executor.name} on {why}")
    final_goal = goal or loaded.plan.goal or ""
    if not final_goal.strip():
        raise UsageError(f"plan {plan_id} has no goal: give it with --goal TEXT")
    spec = load_spec(repo, plan_id)
    start = Start(plan_id, final_goal, loaded, phase, True, spec, load_adrs(repo, loaded.plan.adrs))
    return start, executor


def check_unchanged(repo: FlowRepo, start: Start, command: str) -> None:
    """Under the lock: the plan is as the agent found it (nobody edited, moved or created it)."""
    path = repo.plan_file(start.plan_id)
    digest = _file_digest(path)
    if start.loaded is not None and start.loaded.where != "work tree":
        repo.forget(start.plan_id)  # format 2: the version execution follows (ADR 0011)
        digest = repo.load_plan(start.plan_id).hash
    if start.loaded is None:
        if digest is not None:
            raise AlreadyExists(f"plan {start.plan_id} was created while the agent ran: nothing "
                                f"written; run `flowgit {command}` again")
        return
    phase = phase_of(repo.plan_events(start.plan_id)).phase
    if digest != start.loaded.hash or phase != start.phase:
        raise PlanEdited(f"plan {start.plan_id} changed while the agent ran (now in {phase}): "
                         f"nothing written; run `flowgit {command}` again")
    _refuse_edited(repo, start.plan_id, command)


def round_events(repo: FlowRepo, plan_id: str, kind: str, rounds: Sequence[Round], executor: str,
                 actor: str, now: float, clock: int, extra: Mapping[str, Any] | None = None) -> list[Event]:
    return [make_event(kind, plan_id, None, actor, clock + i, {**r.data(executor), **(extra or {})}, now)
            for i, r in enumerate(rounds)]


def new_plan_text(plan_id: str, goal: str, adrs: Sequence[str] = ()) -> str:
    data: dict[str, Any] = {"id": plan_id, "title": plan_id, "goal": goal}
    if adrs:
        data["adrs"] = list(adrs)
    data["tasks"] = []
    return yamlio.dump_new(data)


def keep_text_trust(repo: FlowRepo, start: Start, how: str) -> list[str]:
    """A person ran this agent here on text this clone trusted: the text it wrote (a spec, an
    ADR, a plan) is trusted as this clone's own; the commands in it never are (docs/SECURITY.md).
    Returns a warning when that could not be recorded."""
    if not start.text_trusted or is_agent():
        return []
    try:
        trust.record(repo, [], [start.plan_id], how)
    except FlowError as exc:
        return [f"written, but its text is not recorded as trusted: {exc.message}"]
    return []


def agent_job(repo: FlowRepo, executor: Executor, plan_id: str, what: str,
              names: Sequence[str]) -> AgentJob:
    workdir = workdir_for(repo, what, plan_id)
    files = {name: workdir / f"{name.removesuffix('_file')}.yaml" for name in names}
    return AgentJob(repo, executor, plan_id, what, workdir, files)


def finish_job(job: AgentJob) -> None:
    cleanup(job.workdir)

