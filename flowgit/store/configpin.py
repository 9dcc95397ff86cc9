"""Which config.yaml execution follows (format 2, ADR 0011), by the rules store/planpin.py
has for plans:

- **approvals on**: the config recorded in the state tree (`.flow/config.yaml`) by the state
  commit that accepted a plan version (approving records the work tree's file beside the plan);
- **approvals off, or `approvals.via: merge`**: the default branch's tip (its work tree's file
  in a work tree that has it checked out, else its committed file);
- nothing recorded yet (or format 1): the work tree's file.

Some keys are read from the work tree whatever is followed, because they say where the state is
and how to reach it, before any recorded config can be found: `version`, `state.branch`,
`requires` (checked on both), `remote`, `lock_timeout` and `approvals.branch`. The approval
policy (`approvals.*`) is the stricter of the work tree's and the recorded one: a config that
arrives through the state (`flowgit sync` from another clone) or a branch switch can make
review stricter, never weaker. A recorded config is checked as a pulled one is: its schema on
every read (one line naming `flow/state:.flow/config.yaml`, exit 1), and its commands by this
clone's trust (docs/SECURITY.md), which judges the argv that would run."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping

from flowgit import git
from flowgit.core.model import Config

if TYPE_CHECKING:
    from flowgit.store.repo import FlowRepo
    from flowgit.store.state import StateStore

STATE_CONFIG = ".flow/config.yaml"
ENTRY = "@config"  # cache: the state commit, the config blob recorded in it, its parse


def _off(cfg: Config) -> bool:
    return cfg.approvals_required == 0 or cfg.auto_approve


def follows_branch(cfg: Config) -> bool:
    return _off(cfg) or cfg.approvals_via == "merge"


def stricter(a: Config, b: Config) -> Config:
    """`a` with the approval policy no weaker than either's."""
    if _off(b):
        return a
    if _off(a):
        return dataclasses.replace(
            a, approvals_required=b.approvals_required, auto_approve=False,
            reset_on_change=b.reset_on_change, approvals_via=b.approvals_via,
            approvals_signed=b.approvals_signed, approval_agents=b.approval_agents)
    return dataclasses.replace(
        a, approvals_required=max(a.approvals_required, b.approvals_required),
        reset_on_change=a.reset_on_change or b.reset_on_change,
        approvals_via="merge" if a.approvals_via == b.approvals_via == "merge" else "events",
        approvals_signed=a.approvals_signed or b.approvals_signed,
        approval_agents=tuple(x for x in a.approval_agents if x in b.approval_agents))


def recorded_blob(repo: FlowRepo, store: StateStore) -> str | None:
    """The blob id of the config recorded in the state (cached by state commit)."""
    head = store.head()
    if head is None:
        return None
    entry = repo.cache.entry(ENTRY)
    if entry.get("commit") != head:
        blob = git.blob_ids_at(repo.root, head, [STATE_CONFIG]).get(STATE_CONFIG)
        entry.update({"commit": head, "blob": blob})
        repo.cache.changed(ENTRY)
    blob = entry.get("blob")
    return blob if isinstance(blob, str) else None


def advance(repo: FlowRepo, old: str | None, new: str, written: Mapping[str, str | None]) -> None:
    """A state commit of ours moved the branch: carry the recorded config's blob along."""
    entry = repo.cache.entry(ENTRY)
    if old is None or entry.get("commit") != old:
        return
    entry.update({"commit": new, "blob": written.get(STATE_CONFIG, entry.get("blob"))})
    repo.cache.changed(ENTRY)


def _parse(repo: FlowRepo, blob: str, display: str) -> Config:
    entry = repo.cache.entry(f"{ENTRY}-{blob}")
    if "data" not in entry:
        from flowgit.store.planpin import read_recorded

        raw = read_recorded(repo, blob, display)
        data = _work_data(repo, raw)  # most often the work tree's file, parsed already
        if data is None:
            from flowgit.formats import yamlio

            data = yamlio.loads(yamlio.decode(raw, display), display)
            Config.from_dict(data, display)  # refused whole when it is not a config
        entry["data"] = data
        repo.cache.changed(f"{ENTRY}-{blob}")
    return Config.from_dict(entry["data"], display)


def _work_data(repo: FlowRepo, raw: bytes) -> Any:
    """The work tree's config as parsed (and checked) already, when `raw` is its bytes."""
    path = repo.flow / "config.yaml"
    try:
        same = not path.is_symlink() and path.read_bytes() == raw
    except OSError:
        return None
    if not same:
        return None
    return repo.work_config_data()


def _default_config(repo: FlowRepo, work: Config) -> tuple[Config, str] | None:
    from flowgit.store import planpin

    branch = planpin.default_branch(repo, work)
    if branch is None or planpin.on_branch(repo, branch):
        return None
    tip = planpin.branch_tip(repo, branch, work.remote)
    if tip is None or not git.is_full_id(tip):
        return None
    entry = repo.cache.entry(f"{ENTRY}@default")
    if entry.get("tip") != tip:
        entry.update({"tip": tip, "blob": git.blob_ids_at(repo.root, tip, [STATE_CONFIG]).get(STATE_CONFIG)})
        repo.cache.changed(f"{ENTRY}@default")
    blob = entry.get("blob")
    if not isinstance(blob, str):
        return None
    display = f"{branch}:{STATE_CONFIG}"
    return _parse(repo, blob, display), "default branch"


def followed(repo: FlowRepo, work: Config) -> tuple[Config, str]:
    """The config execution follows, and where it was read ("work tree", "state" or
    "default branch")."""
    store = repo.state_store
    if store is None:
        return work, "work tree"
    blob = recorded_blob(repo, store)
    rec = _parse(repo, blob, f"{store.branch}:{STATE_CONFIG}") if blob is not None else None
    policy = stricter(work, rec) if rec is not None else work
    found: tuple[Config, str] | None = None
    if follows_branch(policy):
        found = _default_config(repo, work)
        if found is None:
            found = (work, "work tree")
    elif rec is not None:
        found = (rec, "state")
    else:
        found = (work, "work tree")
    cfg, where = found
    return dataclasses.replace(
        cfg, version=work.version, state_branch=work.state_branch, remote=work.remote,
        lock_timeout=work.lock_timeout, approvals_branch=work.approvals_branch,
        approvals_required=policy.approvals_required, auto_approve=policy.auto_approve,
        reset_on_change=policy.reset_on_change, approvals_via=policy.approvals_via,
        approvals_signed=policy.approvals_signed, approval_agents=policy.approval_agents), where


def work_differs(repo: FlowRepo) -> bool:
    """Whether approving now would record another config: execution follows the recorded one
    and this work tree's differs from it."""
    store = repo.state_store
    if store is None or repo.config_source != "state":
        return False
    mine = _work_blob(repo)
    return mine is not None and mine != recorded_blob(repo, store)


def divergence(repo: FlowRepo) -> str | None:
    """One line when this work tree's config.yaml is not the one execution follows."""
    where = repo.config_source
    if where == "work tree":
        return None
    store = repo.state_store
    mine = _work_blob(repo)
    if where == "state":
        blob = recorded_blob(repo, store) if store is not None else None
        fix = "`flowgit approve PLAN --reviewer R` records this branch's version"
        what = "the approved config"
    else:
        from flowgit.store import planpin

        branch = planpin.default_branch(repo, repo.work_config) or ""
        entry = repo.cache.entry(f"{ENTRY}@default")
        blob = entry.get("blob") if isinstance(entry.get("blob"), str) else None
        fix = f"merge it into {branch} for execution to follow it"
        what = "the default branch's config"
    if blob is None or mine == blob:
        return None
    return (f".flow/config.yaml on this branch differs from {what}, which execution follows "
            f"(its edits do not reach claims and run): {fix}")


def _work_blob(repo: FlowRepo) -> str | None:
    """The blob id of this work tree's config.yaml (cached by its stats: a warm `status`
    starts no git process for it)."""
    import os

    path = repo.flow / "config.yaml"
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    key = [st.st_size, st.st_mtime_ns, st.st_ino]
    entry = repo.cache.entry(f"{ENTRY}@work")
    if entry.get("stat") != key:
        if path.is_symlink():
            return None
        entry.update({"stat": key, "blob": git.blob_id(repo.root, path.read_bytes())})
        repo.cache.changed(f"{ENTRY}@work")
    blob = entry.get("blob")
    return blob if isinstance(blob, str) else None
