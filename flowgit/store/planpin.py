"""Which bytes of a plan execution follows (format 2, ADR 0011).

Plans stay on branches: `plan.yaml` is edited, committed and reviewed there. Execution follows
one version of it, whatever branch a work tree has checked out:

- **approvals on** (`approvals.required` > 0, no `auto_approve`): the version approved, recorded
  in the state tree at `.flow/plans/<plan>/plan.yaml` (with `.flow/config.yaml` beside it) by the
  state commit that made it accepted (the move to execute, or a later approval of a changed
  plan), and amended there by flowgit's own edits during execution (`task add`, `task edit`,
  `task remove`, a planner's tasks, a checkpoint's requested changes);
- **approvals off**: the default branch's tip (`default_branch`). In a work tree that has the
  default branch checked out that is its own `plan.yaml`, as before; in any other, the
  default branch's committed file; the state records it as it follows.

A plan that was never accepted (draft, review) is read from the work tree, as in format 1.
`source` says where the bytes come from; `store/repo.py` `load_plan` parses them."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from flowgit.core.model import Plan

from flowgit import git
from flowgit.core.events import PLAN_LOG
from flowgit.errors import FlowError, InvalidFile, RaceLost
from flowgit.ids import is_valid_id

if TYPE_CHECKING:
    from flowgit.store.repo import FlowRepo
    from flowgit.store.state import StateStore
    from flowgit.core.model import Config
    from flowgit.core.planstate import PlanState
    from flowgit.store.writing import Write

STATE_CONFIG = ".flow/config.yaml"
PINS = "@pins"  # cache entry: the state commit and the plan blobs recorded in it
PLAN_GLOB = ":(glob).flow/plans/*/plan.yaml"  # `*` never matches a `/` under glob magic


def _sha256(data: bytes) -> str:
    import hashlib  # not on a warm command's start (ADR 0007): only when a version is compared

    return hashlib.sha256(data).hexdigest()


def state_path(plan: str) -> str:
    return f".flow/plans/{plan}/plan.yaml"


@dataclass
class LoadedPlan:
    """A plan as read, with where it was read from."""

    plan: Plan
    path: Path  # the work tree's plan.yaml: what editing commands edit
    hash: str
    _raw: Mapping[str, Any] | None = None
    display: str = ""  # where the plan was read: its path, or BRANCH:PATH (format 2)
    where: str = "work tree"  # "work tree", "state" or "default branch" (store/planpin.py)
    _read: Callable[[], bytes] | None = None
    _parsed: Callable[[], Mapping[str, Any]] | None = None  # the parse, built on demand (planrows)

    @property
    def raw(self) -> Mapping[str, Any]:
        """The plan as parsed YAML (read again when the plan came from the cache)."""
        if self._raw is None and self._parsed is not None:
            self._raw = self._parsed()
        if self._raw is None:
            from flowgit.formats import yamlio

            where = self.display or str(self.path)
            self._raw = yamlio.loads(yamlio.decode(self.data(), where), where)
        return self._raw

    @property
    def parsed(self) -> Mapping[str, Any] | None:
        """The plan as parsed YAML when this process parsed it (None: it came from the cache)."""
        if self._raw is None and self._parsed is not None:
            self._raw = self._parsed()
        return self._raw

    def data(self) -> bytes:  # as read: the work tree's file, or the version execution follows
        return self._read() if self._read is not None else self.path.read_bytes()


@dataclass(frozen=True)
class PlanSource:
    """Where `load_plan` reads a plan's bytes from."""

    key: Any  # what the parse is cached by: the file's stats, or "blob:<id>" (never changes)
    display: str  # where the plan is, in messages: a path, or BRANCH:PATH
    where: str  # "work tree", "state" or "default branch"
    read: Callable[[], bytes]


def follows_branch(repo: FlowRepo) -> bool:
    """Whether execution follows the default branch's tip: approvals off, or `approvals.via:
    merge`, where reaching that branch through a merge is the approval (store/approvals.py)."""
    cfg = repo.config
    return cfg.approvals_required == 0 or cfg.auto_approve or cfg.approvals_via == "merge"


def default_branch(repo: FlowRepo, cfg: Config | None = None) -> str | None:
    """The branch whose tip execution follows with approvals off, the first of: `approvals.branch`
    in config.yaml; the branch the remote's HEAD names (`refs/remotes/<remote>/HEAD`, which
    `git clone` sets); `main`; `master`; this clone's git config `flowgit.defaultBranch`, then
    `init.defaultBranch`, when that branch exists. None else: the branch checked out in the main
    work tree is no answer, since a branch checked out there to review it would count as the
    default one (configpin.followed stops on it). Read from files, but for the git config.
    (`cfg`: the work tree's, while the followed config is being found: store/configpin.py.)"""
    cfg = cfg or repo.config
    if cfg.approvals_branch:
        return cfg.approvals_branch
    dirs = repo.dirs
    remote_head = git.symbolic_ref_file(dirs, f"refs/remotes/{cfg.remote}/HEAD")
    prefix = f"refs/remotes/{cfg.remote}/"
    if remote_head and remote_head.startswith(prefix) and remote_head[len(prefix):] != "HEAD":
        return remote_head[len(prefix):]
    for name in ("main", "master"):
        if git.read_ref(dirs, f"refs/heads/{name}"):
            return name
    for named in _configured_defaults(repo):  # this clone's and the user's git config: no teammate's
        if branch_tip(repo, named, cfg.remote):
            return named
    return None


_configured: dict[tuple[str, int], tuple[str, ...]] = {}


def _configured_defaults(repo: FlowRepo) -> tuple[str, ...]:
    """`flowgit.defaultBranch`, then `init.defaultBranch`, as set (read once a process while
    the clone's .git/config is unchanged)."""
    import os

    try:
        stamp = os.stat(repo.dirs.common_dir / "config").st_mtime_ns
    except OSError:
        stamp = 0
    key = (str(repo.root), stamp)
    if key not in _configured:
        found = (git.config_get(repo.root, k) for k in ("flowgit.defaultBranch", "init.defaultBranch"))
        _configured[key] = tuple(name for name in found if name)
    return _configured[key]


NO_DEFAULT = ("no default branch in this clone (no {remote}/HEAD, main, master or git config "
              "flowgit.defaultBranch): flowgit does not take the checked-out branch for it, which "
              "could be one under review; name it with `git config flowgit.defaultBranch BRANCH`")


def branch_tip(repo: FlowRepo, branch: str, remote: str | None = None) -> str | None:
    """The local branch, else the remote's copy of it (a clone that never checked it out).
    A name that is no plain branch name (from a pulled config: `..`, a leading `/` or `-`) is
    never made into a path under .git/."""
    if (not branch or branch.startswith(("/", "-", ".")) or ".." in branch or "//" in branch
            or any(c in branch for c in " ~^:?*[\\\0\n")):
        return None
    return (git.read_ref(repo.dirs, f"refs/heads/{branch}")
            or git.read_ref(repo.dirs, f"refs/remotes/{remote or repo.config.remote}/{branch}"))


def on_branch(repo: FlowRepo, branch: str) -> bool:
    return git.symbolic_ref_file(repo.dirs, "HEAD", common=False) == f"refs/heads/{branch}"


def recorded(repo: FlowRepo, store: StateStore) -> dict[str, str]:
    """plan -> blob id of each plan.yaml recorded in the state (cached by state commit)."""
    head = store.head()
    if head is None:
        return {}
    entry = repo.cache.entry(PINS)
    if entry.get("commit") == head and isinstance(entry.get("blobs"), dict):
        return dict(entry["blobs"])
    from flowgit import git_state

    blobs: dict[str, str] | None = None
    if isinstance(entry.get("commit"), str) and isinstance(entry.get("blobs"), dict):
        try:  # one diff-tree from the commit cached last (another work tree, a fetch, moved it)
            changes = git_state.changed_blobs(repo.root, entry["commit"], head, PLAN_GLOB)
        except FlowError:
            changes = None
        if changes is not None:
            blobs = dict(entry["blobs"])
            for change in changes:
                plan = change.path.split("/")[2]
                if change.blob is None:
                    blobs.pop(plan, None)
                elif is_valid_id(plan) and change.path == state_path(plan):
                    blobs[plan] = change.blob
    if blobs is None:
        plans = [p.split("/")[2] for p in git_state.list_dirs(repo.root, head, ".flow/plans/")]
        plans = [p for p in plans if is_valid_id(p)]
        found = git.blob_ids_at(repo.root, head, [state_path(p) for p in plans])
        blobs = {p: found[state_path(p)] for p in plans if state_path(p) in found}
    entry.update({"commit": head, "blobs": blobs})
    repo.cache.changed(PINS)
    return blobs


def advance(repo: FlowRepo, old: str | None, new: str, written: Mapping[str, str | None]) -> None:
    """A state commit of ours moved the branch from `old` to `new`: carry the cached blobs
    along, so the next command needs no git process to learn what it wrote itself."""
    entry = repo.cache.entry(PINS)
    if old is None or entry.get("commit") != old or not isinstance(entry.get("blobs"), dict):
        return
    blobs = dict(entry["blobs"])
    for path, blob in written.items():
        parts = path.split("/")
        if len(parts) == 4 and parts[:2] == [".flow", "plans"] and parts[3] == "plan.yaml":
            if blob is None:
                blobs.pop(parts[2], None)
            else:
                blobs[parts[2]] = blob
    entry.update({"commit": new, "blobs": blobs})
    repo.cache.changed(PINS)


def read_recorded(repo: FlowRepo, blob: str, display: str) -> bytes:
    """A recorded plan's or config's bytes; one above the size of a flowgit file (a sync can
    bring a blob of any size) is refused by git's header, before its content is read."""
    from flowgit import git_state
    from flowgit.formats.yamlio import MAX_YAML_BYTES

    try:
        data = git_state.read_blobs(repo.root, [blob], MAX_YAML_BYTES, lambda _: display).get(blob)
    except InvalidFile:
        raise InvalidFile(f"{display}: above the {MAX_YAML_BYTES} byte limit of a flowgit file: nothing "
                          "was read; a sync or a hand-made commit brought it: put back an earlier "
                          "version with a state commit") from None
    if data is None:
        raise InvalidFile(f"{display}: blob {blob} is missing from this clone: run `flowgit sync`")
    return data


def _blob_source(repo: FlowRepo, blob: str, display: str, where: str) -> PlanSource:
    return PlanSource(f"blob:{blob}", display, where, lambda: read_recorded(repo, blob, display))


def _default_blob(repo: FlowRepo, branch: str, plan: str) -> str | None:
    tip = branch_tip(repo, branch)
    if tip is None or not git.is_full_id(tip):
        return None
    entry = repo.cache.entry(f"{plan}@default")
    if entry.get("tip") != tip:
        blob = git.blob_ids_at(repo.root, tip, [state_path(plan)]).get(state_path(plan))
        entry.update({"tip": tip, "blob": blob})
        repo.cache.changed(f"{plan}@default")
    blob = entry.get("blob")
    return blob if isinstance(blob, str) else None


def source(repo: FlowRepo, plan: str) -> PlanSource | None:
    """Where execution reads `plan` from (see the module docstring); None: nowhere."""
    path = repo.plan_file(plan)
    store = repo.state_store
    if store is not None:
        found = _followed(repo, store, plan)
        if found is not None:
            return found
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):  # a pull can bring a folder there: not a plan file to read
        raise InvalidFile(f"{repo.rel(path)}: a directory, not a plan file: replace it with the plan's YAML")
    return PlanSource([st.st_size, st.st_mtime_ns, st.st_ino], repo.rel(path), "work tree", path.read_bytes)


def _followed(repo: FlowRepo, store: StateStore, plan: str) -> PlanSource | None:
    if follows_branch(repo):
        branch = default_branch(repo)
        if branch is not None:
            if on_branch(repo, branch):
                return None  # this work tree is the default branch's tip
            blob = _default_blob(repo, branch, plan)
            if blob is not None:
                return _blob_source(repo, blob, f"{branch}:{state_path(plan)}", "default branch")
    blob = recorded(repo, store).get(plan)
    if blob is None:
        return None
    return _blob_source(repo, blob, f"{store.branch}:{state_path(plan)}", "state")


def plan_ids(repo: FlowRepo) -> list[str]:
    """Plans recorded in the state: they execute even where the branch checked out lacks them."""
    store = repo.state_store
    return sorted(recorded(repo, store)) if store is not None else []


def work_tree_bytes(repo: FlowRepo, plan: str) -> bytes | None:
    path = repo.plan_file(plan)
    try:
        return None if path.is_symlink() else path.read_bytes()
    except OSError:
        return None


def divergence(repo: FlowRepo, plan: str, loaded_hash: str, where: str) -> str | None:
    """One line when this branch's plan.yaml is not the version execution follows."""
    if where == "work tree":
        return None
    data = work_tree_bytes(repo, plan)
    if data is None:
        mine = "this branch has no plan.yaml for it"
    elif _sha256(data) == loaded_hash:
        return None
    else:
        mine = "its edits do not reach execution"
    if where == "state":
        fix = f"`flowgit approve {plan} --reviewer R` records this branch's version"
        what = "the approved version"
    else:
        fix = "merge it into the default branch for execution to follow it"
        what = "the default branch's version"
    return f"plan {plan}: plan.yaml on this branch differs from {what}, which execution follows ({mine}): {fix}"


# ----- the write door's part: what a transition records in the state ---------------------------

def _accepted_hash(repo: FlowRepo, plan: str, events: Any, pinned: bool) -> str | None:
    """The plan version these plan events make accepted: the move to execute (the first
    approval, or the first claim with approvals off), and once recorded, a later approval.
    (A checkpoint's requested changes are flowgit's own edit: an amendment, below.)"""
    accepted = None
    for ev in events:
        d = ev.data
        if ev.type == "plan.phase" and d.get("to") == "execute" and d.get("plan_hash"):
            accepted = str(d["plan_hash"])
        elif pinned and ev.type == "plan.approved" and d.get("plan_hash") and d.get("accepts", True):
            accepted = str(d["plan_hash"])
    return accepted


def pins(repo: FlowRepo, w: Write) -> dict[str, bytes | None]:
    """State tree path -> bytes this write records beside its events (format 2): the plan
    (and the config) a version of which it accepts, and flowgit's own edits of a plan under
    execution, as amendments. Called under the lock before anything is written."""
    store = repo.state_store
    assert store is not None
    have = recorded(repo, store)
    out: dict[str, bytes | None] = {}
    for (plan, stream), events in w.streams.items():
        if stream != PLAN_LOG:
            continue
        wanted = _accepted_hash(repo, plan, events, plan in have)
        if wanted is None:
            continue
        data = _bytes_hashing(repo, w, plan, wanted)
        if data is None:
            raise RaceLost(f"{repo.rel(repo.plan_file(plan))} changed while flowgit decided on it: "
                           "nothing was written; run the command again")
        if have.get(plan) != git.blob_id(repo.root, data):
            out[state_path(plan)] = data
        config = _config_bytes(repo)
        if config is not None:
            out[STATE_CONFIG] = config
    off = follows_branch(repo)
    branch = default_branch(repo) if off else None
    for path, content in w.files.items():
        edited = _plan_of(repo, path)
        if edited is None or edited not in have or state_path(edited) in out or content is None:
            continue
        if off and branch is not None and not on_branch(repo, branch):
            continue  # approvals off: the state follows the default branch, not this one
        out[state_path(edited)] = amended(repo, store, edited, have[edited], content)
    if off and branch is not None:
        for followed in sorted({p for p, _ in w.streams} & set(have)):
            if state_path(followed) in out:
                continue
            blob = _default_blob(repo, branch, followed)
            if blob is not None and blob != have[followed]:
                out[state_path(followed)] = git.cat_blobs(repo.root, [blob]).get(blob)
    return {k: v for k, v in out.items() if k == STATE_CONFIG or v is not None}


def amended(repo: FlowRepo, store: StateStore, plan: str, blob: str, new: bytes) -> bytes:
    """The recorded plan with this branch's edit applied: the edit itself when the branch had
    the recorded version, else the change from the branch's old file to `new` merged onto it."""
    display = f"{store.branch}:{state_path(plan)}"
    old = work_tree_bytes(repo, plan)
    current = git.cat_blobs(repo.root, [blob]).get(blob)
    if current is None:
        raise InvalidFile(f"{display}: blob {blob} is missing from this clone: run `flowgit sync`")
    if old is None or old == current:
        return new
    merged = git.merge_texts(repo.root, old, current, new)
    if merged is None:
        raise InvalidFile(f"{repo.rel(repo.plan_file(plan))} differs from the approved version ({display}) "
                          "where this edit lands: nothing was written; approve this branch's version "
                          f"first (`flowgit approve {plan} --reviewer R`), or make the edit on a branch "
                          "that has the approved version")
    check_plan_bytes(merged, display, plan)
    return merged


def check_plan_bytes(data: bytes, display: str, plan: str) -> None:
    """A recorded plan is read as a plan file is: refused whole when it is not one."""
    from flowgit.core.model import Plan
    from flowgit.formats import yamlio

    raw = yamlio.loads(yamlio.decode(data, display), display)
    parsed = Plan.from_dict(raw, display)
    if parsed.id != plan:
        raise InvalidFile(f"{display}: id {parsed.id!r} does not match its directory {plan!r}")


def _bytes_hashing(repo: FlowRepo, w: Write, plan: str, digest: str) -> bytes | None:
    """The plan's bytes whose sha256 is `digest`: this write's new file, what execution
    read, or the work tree's file."""
    try:
        loaded = repo.load_plan(plan)
        if loaded.hash == digest and _plan_file_unchanged(repo, w, plan):
            return loaded.data()  # its digest is known: nothing to hash (a first claim stays light)
    except (FlowError, OSError):
        pass
    candidates: list[Callable[[], bytes | None]] = [
        lambda: w.files.get(repo.plan_file(plan)),
        lambda: _loaded_bytes(repo, plan),
        lambda: work_tree_bytes(repo, plan),
    ]
    for get in candidates:
        data = get()
        if data is not None and _sha256(data) == digest:
            return data
    return None


def _plan_file_unchanged(repo: FlowRepo, w: Write, plan: str) -> bool:
    return repo.plan_file(plan) not in w.files


def _loaded_bytes(repo: FlowRepo, plan: str) -> bytes | None:
    try:
        found = source(repo, plan)
        return found.read() if found is not None else None
    except (FlowError, OSError):
        return None


def _config_bytes(repo: FlowRepo) -> bytes | None:
    """The config an acceptance records: HEAD's committed file, never uncommitted edits (as a
    plan's changed version is recorded only committed): what a reviewer approved is a commit."""
    if (repo.flow / "config.yaml").is_symlink():
        return None
    return git.show_blob(repo.root, "HEAD", STATE_CONFIG)


def _plan_of(repo: FlowRepo, path: Path) -> str | None:
    try:
        parts = repo.rel(path).split("/")
    except ValueError:
        return None
    if len(parts) == 4 and parts[:2] == [".flow", "plans"] and parts[3] == "plan.yaml" and is_valid_id(parts[2]):
        return parts[2]
    return None


def branch_hash(repo: FlowRepo, plan: str) -> str | None:
    """The sha256 of this branch's plan.yaml (the work tree's), None without one."""
    data = work_tree_bytes(repo, plan)
    return _sha256(data) if data is not None else None


def default_hash(repo: FlowRepo, plan: str) -> str | None:
    """The sha256 of the default branch's committed plan.yaml, None without one."""
    branch = default_branch(repo)
    blob = _default_blob(repo, branch, plan) if branch is not None else None
    if blob is None:
        return None
    entry = repo.cache.entry(f"{plan}@default")
    if entry.get("sha_of") != blob:
        data = git.cat_blobs(repo.root, [blob]).get(blob)
        if data is None:
            return None
        entry.update({"sha_of": blob, "sha": _sha256(data)})
        repo.cache.changed(f"{plan}@default")
    sha = entry.get("sha")
    return sha if isinstance(sha, str) else None


def merge_recorded(repo: FlowRepo, paths: list[str], ids: tuple[Mapping[str, str], ...],
                   changes: Mapping[str, bytes | None]) -> dict[str, bytes | None]:
    """Merging two state histories: each recorded plan.yaml that changed is the side that
    changed it; when both did, the version the merged plan log accepted last (by its hash),
    else ours. Never a blend of two plans."""
    from flowgit.core.events import parse_log
    from flowgit.core.fold import phase_of

    base, ours, theirs = ids
    out: dict[str, bytes | None] = {}
    for path in paths:
        parts = path.split("/")
        if len(parts) != 4 or parts[3] != "plan.yaml" or not is_valid_id(parts[2]):
            continue
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if o == t or t == b:
            continue
        if o == b:
            out[path] = git.cat_blobs(repo.root, [t]).get(t) if t else None
            continue
        if t is None:
            continue
        plan_log = f".flow/plans/{parts[2]}/events/{PLAN_LOG}.jsonl"  # state.log_path, without a circle
        log = changes.get(plan_log)
        if log is None:
            blob = ours.get(plan_log)
            log = git.cat_blobs(repo.root, [blob]).get(blob) if blob else None
        accepted = phase_of(parse_log(log or b"", path).events).accepted_hash
        sides = git.cat_blobs(repo.root, [x for x in (o, t) if x])
        theirs_data = sides.get(t)
        if accepted and theirs_data is not None and _sha256(theirs_data) == accepted:
            out[path] = theirs_data
    return out


def gate_hash(repo: FlowRepo, plan: str, state: PlanState) -> str:
    """The plan version a claim's approval check counts approvals for. Format 2, a recorded
    plan (ADR 0011): under review, this branch's plan.yaml (what `approve` approves and then
    records); while executing, the recorded version, accepted by construction (approved, or
    amended by flowgit), so a claim never stops on a change it does not run: sending the plan
    back to review on a change is the phase rules' (reset_on_change, `moved`)."""
    loaded = repo.load_plan(plan)
    if loaded.where != "state":
        return loaded.hash
    if state.phase in ("execute", "checkpoint", "finish"):
        return state.info.accepted_hash or loaded.hash
    return branch_hash(repo, plan) or loaded.hash


def moved(repo: FlowRepo, plan: str) -> bool | None:
    """reset_on_change in format 2: whether the default branch's committed plan.yaml differs
    from the recorded one (None: not a recorded plan; the fold's accepted hash decides)."""
    loaded = repo.load_plan(plan)
    if loaded.where != "state":
        return None
    latest = default_hash(repo, plan)
    return latest is not None and latest != loaded.hash
