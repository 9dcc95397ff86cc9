"""Which config.yaml execution follows (format 2, ADR 0011), by the rules store/planpin.py
has for plans:

- **approvals on**: the config recorded in the state tree (`.flow/config.yaml`) by the state
  commit that accepted a plan version (approving records the work tree's file beside the plan);
- **approvals off, or `approvals.via: merge`**: the default branch's tip (its work tree's file
  in a work tree that has it checked out, else its committed file);
- nothing recorded yet (or format 1): the work tree's file.

Some keys are read from the work tree whatever is followed, because they say where the state is
and how to reach it, before any recorded config can be found: `version`, `state.branch`,
`requires` (checked on both), `remote` and `lock_timeout`; `approvals.branch` is the default
branch's (`held_branch`). The approval policy (`approvals.*`) is the stricter of the work
tree's and the recorded one: a config that arrives through the state (`flowgit sync` from
another clone) or a branch switch can make review stricter, never weaker. A recorded config
is checked as a pulled one is: its schema on every read (one line naming
`flow/state:.flow/config.yaml`, exit 1; `sync` and `doctor` go on with the work tree's, and
`doctor --fix` puts back the last one that read: `restore`), and its commands by this clone's
trust (docs/SECURITY.md), which judges the argv that would run."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping

from flowgit import git
from flowgit.core.model import Config
from flowgit.errors import InvalidFile

if TYPE_CHECKING:
    from flowgit.store.repo import FlowRepo
    from flowgit.store.state import StateStore

STATE_CONFIG = ".flow/config.yaml"
REPAIR = " (`flowgit doctor --fix` puts back the last recorded config that reads)"
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
        # a merge on the protected branch is the approval a team that asks for it can trust;
        # event lines anyone can push are not, so one side's `via: merge` holds
        approvals_via="merge" if "merge" in (a.approvals_via, b.approvals_via) else "events",
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
    blob = _committed_blob(repo, branch, work, "default")
    if blob is None:
        return None
    display = f"{branch}:{STATE_CONFIG}"
    return _parse(repo, blob, display), "default branch"


def _committed_blob(repo: FlowRepo, branch: str, work: Config, slot: str) -> str | None:
    """The config blob committed at `branch`'s tip (here, else as last fetched), kept in the
    cache by tip under `slot`; None when there is no tip or no config there."""
    from flowgit.store import planpin

    tip = planpin.branch_tip(repo, branch, work.remote)
    if tip is None or not git.is_full_id(tip):
        return None
    entry = repo.cache.entry(f"{ENTRY}@{slot}")
    if entry.get("tip") != tip:
        entry.update({"tip": tip, "blob": git.blob_ids_at(repo.root, tip, [STATE_CONFIG]).get(STATE_CONFIG)})
        repo.cache.changed(f"{ENTRY}@{slot}")
    blob = entry.get("blob")
    return blob if isinstance(blob, str) else None


def _base_policy(repo: FlowRepo, work: Config) -> Config:
    """The default branch's committed config (found without `approvals.branch`), whose approval
    policy a work tree on another branch cannot weaken: a reviewer checks a hostile branch out
    to review it, and its config could say `approvals: {required: 0}`, or events instead of
    `via: merge`. `work` itself when on that branch, or when it has none that reads."""
    from flowgit.errors import FlowError

    try:
        found = _default_config(repo, dataclasses.replace(work, approvals_branch=None))
    except FlowError:
        return work
    return work if found is None else found[0]


def held_branch(repo: FlowRepo, work: Config) -> str | None:
    """`approvals.branch` as the default branch's committed config says it (the default branch
    found by ADR 0011's rule without the key: the remote's HEAD, main, master, the main work
    tree's branch): a branch whose config names itself the approvals branch would otherwise
    approve its own plan with a merge on itself when a reviewer checks it out. A work tree on
    the default branch reads its own file; a default branch whose config does not read, or that
    has none, gives the rule's answer (None), never this work tree's value."""
    from flowgit.errors import FlowError
    from flowgit.store import planpin

    base = planpin.default_branch(repo, dataclasses.replace(work, approvals_branch=None))
    if base is None or planpin.on_branch(repo, base):
        return work.approvals_branch
    blob = _committed_blob(repo, base, work, "base")
    if blob is None:
        return None
    try:
        return _parse(repo, blob, f"{base}:{STATE_CONFIG}").approvals_branch
    except FlowError:
        return None


def followed(repo: FlowRepo, work: Config) -> tuple[Config, str]:
    """The config execution follows, and where it was read ("work tree", "state" or
    "default branch")."""
    store = repo.state_store
    if store is None:
        return work, "work tree"
    from flowgit.store import planpin

    if planpin.default_branch(repo, dataclasses.replace(work, approvals_branch=None)) is None:
        raise InvalidFile(planpin.NO_DEFAULT.format(remote=work.remote))
    held = held_branch(repo, work)
    if held != work.approvals_branch:
        work = dataclasses.replace(work, approvals_branch=held)
    blob = recorded_blob(repo, store)
    try:
        rec = _parse(repo, blob, f"{store.branch}:{STATE_CONFIG}") if blob is not None else None
    except InvalidFile as exc:
        raise InvalidFile(exc.message + REPAIR) from None
    policy = stricter(work, rec) if rec is not None else work
    policy = stricter(policy, _base_policy(repo, work))
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


def follow_work(repo: FlowRepo) -> str | None:
    """For the commands that get a clone out (`sync`, `doctor`): when the config execution
    follows does not read (a recorded config a sync brought), `repo` goes on with this work
    tree's and the line the other commands stop on is returned; None when it reads. (The work
    tree's own config, when it does not read, stops them too.) Nothing derived under the work
    tree's is kept in the cache: it is not the config that counts."""
    from flowgit.errors import FlowError

    work = repo.work_config
    if work.version != 2:
        return None
    try:
        repo._followed = followed(repo, work)  # the FlowRepo.config it stands for
        return None
    except FlowError as exc:
        repo._followed = (work, "work tree")
        repo.cache.off = True
        return exc.message


def work_differs(repo: FlowRepo) -> bool:
    """Whether approving now would record another config: execution follows the recorded one
    and this work tree's differs from it."""
    store = repo.state_store
    if store is None or repo.config_source != "state":
        return False
    mine = committed_blob(repo)
    return mine is not None and mine != recorded_blob(repo, store)


def committed_blob(repo: FlowRepo) -> str | None:
    """The blob id of HEAD's config.yaml, the one an approval records."""
    head = git.read_head(repo.dirs)
    if head is None or not git.is_full_id(head):
        return None
    return git.blob_ids_at(repo.root, head, [STATE_CONFIG]).get(STATE_CONFIG)


def uncommitted(repo: FlowRepo) -> bool:
    """Whether this work tree's config.yaml is not HEAD's (edited, or not committed yet)."""
    mine = _work_blob(repo)
    return mine is not None and mine != committed_blob(repo)


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

        branch = planpin.default_branch(repo) or ""
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


def restore(repo: FlowRepo) -> str:
    """`doctor --fix` for a recorded config that does not read (a sync brought it): one state
    commit puts back the last version recorded before it that reads, or with none, removes it
    (the work tree's config applies until an approval records one again). The caller holds
    the lock. What it did, in words."""
    from flowgit.errors import FlowError
    from flowgit.store.planpin import read_recorded

    store = repo.state_store
    assert store is not None
    head = store.head()
    bad = recorded_blob(repo, store)
    display = f"{store.branch}:{STATE_CONFIG}"
    message = "flow: doctor put back the recorded config\n\nFlow-Event: doctor\n"
    # signed as any state commit is when the policy asks for it: the bad config counts too
    # (a stricter policy is never dropped because its file does not read), and the one put back
    signed = _says_signed(repo, bad, display)
    for change in git.first_parent_changes(repo.root, head, STATE_CONFIG) if head else []:
        if change.blob is None or change.blob == bad:
            continue
        try:
            cfg = _parse(repo, change.blob, display)
            data = read_recorded(repo, change.blob, display)
        except FlowError:
            continue
        store.commit({STATE_CONFIG: data}, message, signed=signed or cfg.approvals_signed)
        return f"put back the config recorded by {change.commit[:10]}"
    store.commit({STATE_CONFIG: None}, message.replace("put back", "removed"), signed=signed)
    return "removed it: no earlier version reads; the work tree's config applies until an approval records one"


def _says_signed(repo: FlowRepo, bad: str | None, display: str) -> bool:
    """Whether this work tree's policy, the default branch's, or the recorded config that does
    not read (as far as its YAML says `approvals: {signed: true}`) asks for signed commits."""
    from flowgit.errors import FlowError

    work = repo.work_config
    if work.approvals_signed or _base_policy(repo, work).approvals_signed:
        return True
    if bad is None:
        return False
    try:
        from flowgit.formats import yamlio
        from flowgit.store.planpin import read_recorded

        data = yamlio.loads(yamlio.decode(read_recorded(repo, bad, display), display), display)
    except FlowError:
        return False
    approvals = data.get("approvals") if isinstance(data, dict) else None
    return isinstance(approvals, dict) and approvals.get("signed") is True
