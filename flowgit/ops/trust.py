"""Which commands from `.flow/` may run in this clone, and recording trust (docs/SECURITY.md).

A command runs only if this clone trusts it: `flowgit trust`, an approval made here, writing
it here through flowgit as a person, or `--trust` for one run. Nothing that arrives through
git (a merge, a pull, an approval line in a log) makes a command runnable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from flowgit.core import commands as cmds
from flowgit.core.commands import Command
from flowgit.errors import FlowError
from flowgit.store.repo import FlowRepo
from flowgit.store.trust import TrustStore, identity, is_agent, plan_material, trust_for_session


class Untrusted(FlowError):
    """A command (or a plan's prompt) this clone has not trusted. (Its own slug belongs in
    errors.CODES; until then the generic one.)"""


class AgentRefused(FlowError):
    """An agent tried what only a person may do here (approve, trust)."""


_stores: dict[Path, TrustStore] = {}


def store(repo: FlowRepo) -> TrustStore:
    """The clone's store (one per process and clone: it rereads the file when it changes)."""
    common = repo.dirs.common_dir
    if common not in _stores:
        _stores[common] = TrustStore(common)
    return _stores[common]


def config_commands(repo: FlowRepo) -> list[Command]:
    return cmds.config_commands(repo.config)


def plan_commands(repo: FlowRepo, plan_id: str) -> list[Command]:
    return cmds.plan_commands(repo.load_plan(plan_id).plan)


def every_command(repo: FlowRepo, plan_ids: Sequence[str] | None = None) -> list[Command]:
    out = config_commands(repo)
    for pid in repo.plan_ids() if plan_ids is None else plan_ids:
        out += plan_commands(repo, pid)
    return out


def material(repo: FlowRepo, plan_id: str) -> tuple[str, list[str]]:
    loaded = repo.load_plan(plan_id)
    plan = loaded.plan
    from flowgit.core.index import plan_column

    adrs = list(plan.adrs) + [a for named in plan_column(plan, "adrs") for a in named]  # no task built
    followed = loaded.data() if loaded.where != "work tree" else None
    return plan_material(repo.flow, plan_id, adrs, followed)


def fix_hint(plan_id: str | None) -> str:
    target = f" {plan_id}" if plan_id else ""
    return f"review it, then run `flowgit trust{target}` (or pass --trust to trust it for this run)"


def why_untrusted(repo: FlowRepo, cmd: Command, plan_id: str | None = None) -> str | None:
    """None if the command may run; else one line naming it and how to trust it."""
    st = store(repo)
    if st.trusted(cmd):
        return None
    state = "changed since it was trusted" if st.was_trusted(cmd) else "is not trusted"
    return f"{cmd.where} ({cmd.shown(80)}) {state} in this clone: {fix_hint(plan_id)}"


def why_plan_untrusted(repo: FlowRepo, plan_id: str) -> str | None:
    """An agent's prompt is built from the plan: None if this clone trusts its text as it is."""
    digest, files = material(repo, plan_id)
    st = store(repo)
    if st.plan_trusted(plan_id, digest):
        return None
    state = "changed since it was trusted" if st.plan_was_trusted(plan_id) else "is not trusted"
    return (f"plan {plan_id} ({', '.join(files)}) {state} in this clone, and its text becomes an "
            f"agent's prompt: {fix_hint(plan_id)}")


def require(repo: FlowRepo, commands: Iterable[Command], plan_id: str | None = None) -> None:
    for cmd in commands:
        why = why_untrusted(repo, cmd, plan_id)
        if why:
            raise Untrusted(f"not running {why}")


def untrusted(repo: FlowRepo, plan_ids: Sequence[str] | None = None) -> list[Command]:
    st = store(repo)
    return [c for c in every_command(repo, plan_ids) if not st.trusted(c)]


def record(repo: FlowRepo, commands: Iterable[Command], plans: Sequence[str], how: str,
           material_of: dict[str, str] | None = None) -> tuple[list[Command], list[str]]:
    """Trust these commands and plans' current text here (a person's act: refused to agents)."""
    if is_agent():
        raise AgentRefused(f"{how}: an agent cannot trust commands in this clone; a person runs "
                           "`flowgit trust` (docs/SECURITY.md)")
    versions = [(pid, (material_of or {}).get(pid) or material(repo, pid)[0]) for pid in plans]
    return store(repo).record(commands, versions, how, identity(repo.root))


def written(repo: FlowRepo, commands: Iterable[Command], plans: Sequence[str], how: str) -> None:
    """What a person writes here through flowgit is trusted as written; an agent's is not."""
    if not is_agent():
        record(repo, commands, plans, how)


def keep_plan_trust(repo: FlowRepo, plan_id: str, before: str | None, how: str) -> None:
    """flowgit rewrote a plan for a person (task add, a checkpoint's requested changes): if
    the text was trusted before, its new version is too. `before`: the digest before."""
    if before is not None and not is_agent() and store(repo).plan_trusted(plan_id, before):
        record(repo, [], [plan_id], how)


def trusted_material(repo: FlowRepo, plan_id: str) -> str | None:
    """The plan text's digest now, if this clone trusts it (for `keep_plan_trust`)."""
    if not store(repo).may_trust_plan(plan_id):
        return None  # no version is: hashing the text (6 MB at 50,000 tasks) tells nothing
    try:
        digest = material(repo, plan_id)[0]
    except FlowError:
        return None
    return digest if store(repo).plan_trusted(plan_id, digest) else None


def for_this_run(repo: FlowRepo, plan_ids: Sequence[str] | None = None) -> None:
    """`--trust`: what `.flow/` holds now runs in this process; nothing is recorded."""
    if is_agent():
        raise AgentRefused("--trust: an agent cannot trust commands in this clone; a person runs "
                           "`flowgit trust` (docs/SECURITY.md)")
    pids = repo.plan_ids() if plan_ids is None else plan_ids
    plans = []
    for pid in pids:
        try:
            plans.append((pid, material(repo, pid)[0]))
        except FlowError:
            continue
    trust_for_session(every_command(repo, pids), plans)
