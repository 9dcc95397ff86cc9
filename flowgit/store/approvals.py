"""Approvals git vouches for, for teams that need more than an event line anyone could write.

- `approvals.via: merge`: a plan is approved when its plan.yaml, byte for byte, reached the
  protected branch through a merge (the pull request's review is the approval; the forge
  decides who may merge). `plan.approved` events count for nothing then; the merge counts as
  one approval, shown as reviewer `merge <commit>`.
- `approvals.signed: true`: a `plan.approved` event counts only if a commit that added it to
  the log carries a signature `git verify-commit` accepts, checked against keys listed
  outside the repository (the user's gpg keyring, gpg.ssh.allowedSignersFile). A line merged
  in from an unsigned commit, or kept only in a compaction snapshot, does not count.

Both act on the plan events before the fold (`counted`), so every reader (status, claim,
run, the phase rules) sees the same approvals.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Sequence

from flowgit import git
from flowgit.core.events import PLAN_LOG, Event, canonical, make_event
from flowgit.errors import FlowError
from flowgit.formats.yamlio import MAX_YAML_BYTES

if TYPE_CHECKING:
    from flowgit.store.repo import FlowRepo

_merged: dict[tuple[str, str, str, str], tuple[str, int, str] | None] = {}
_verified: dict[tuple[str, str, str], str] = {}


def counted(repo: FlowRepo, plan_id: str, events: Sequence[Event]) -> Sequence[Event]:

    try:
        cfg = repo.config
    except FlowError:
        return events  # a config that does not load stops the commands that need it, with its reason
    if cfg.approvals_via != "merge" and not cfg.approvals_signed:
        return events
    if cfg.approvals_via == "merge":
        out = [e for e in events if e.type != "plan.approved"]
        out = [_without_snapshot_approvals(e) for e in out]
        merge = merged(repo, plan_id)
        if merge is not None:
            commit, when, digest = merge
            clock = max((e.clock for e in events), default=0) + 1
            branch = cfg.approvals_branch or git.default_branch(repo.root) or "?"
            out.append(make_event("plan.approved", plan_id, None, "merge", clock,
                                  {"reviewer": f"merge {commit[:12]}", "comment": f"merged into {branch}",
                                   "plan_hash": digest, "via": "merge",
                                   "commit": commit}, float(when)))
        return out
    keys_inside = signers_inside(repo.root)
    store = repo.state_store
    if store is None:
        rev, log = "HEAD", repo.rel(repo.log_file(plan_id, PLAN_LOG))
    else:  # format 2: the commits that added the line are on the state branch (ADR 0011)
        from flowgit.store.state import log_path

        rev, log = store.head() or store.ref, log_path(plan_id, PLAN_LOG)
    dropped: set[str] = set()
    keys: set[tuple[str, str]] = set()  # one approval of a version per signing key
    vouched: set[tuple[str, str, str]] = set()  # the approvals of the current review
    for e in canonical(events):  # in the fold's order: what a rejection cleared stays cleared
        if e.type == "plan.rejected" or e.type == "plan.phase" and e.data.get("to") == "draft":
            keys.clear()
            vouched.clear()
        elif e.type == "plan.approved":
            key = None if keys_inside else signer(repo.root, e, log, rev)
            mark = (key or "", str(e.data.get("plan_hash") or ""))
            if key is None or mark in keys:
                dropped.add(e.id)
                continue
            keys.add(mark)
            vouched.add(_approval_key(e.data.get("reviewer", e.actor), e.data.get("plan_hash"), e.at))
    return [_without_snapshot_approvals(e, vouched) for e in events if e.id not in dropped]


def _approval_key(reviewer: object, plan_hash: object, at: object) -> tuple[str, str, str]:
    return str(reviewer or ""), str(plan_hash or ""), str(at or "")


def _without_snapshot_approvals(ev: Event, vouched: AbstractSet[tuple[str, str, str]] = frozenset()) -> Event:
    """A compaction snapshot's approvals have no commit of their own to vouch for them: one
    counts only as the signed approval event compaction keeps beside it (`vouched`)."""
    approvals = (ev.data.get("state") or {}).get("approvals") if ev.type == "plan.snapshot" else None
    if not approvals:
        return ev
    state = dict(ev.data.get("state") or {})
    state["approvals"] = [a for a in approvals if isinstance(a, dict)
                          and _approval_key(a.get("reviewer"), a.get("plan_hash"), a.get("at")) in vouched]
    return replace(ev, data={**ev.data, "state": state})


def merged(repo: FlowRepo, plan_id: str) -> tuple[str, int, str] | None:
    """The merge commit that brought this plan.yaml (as it is now) to the protected branch, its
    time and the plan's hash; else the last merge that brought an earlier version, with that
    version's hash (flowgit's own amendments, `task add` on the branch, are no merge: the
    claim gate counts the approved version, the review gate the version as it is now); None if
    no merge ever brought the plan."""
    branch = repo.config.approvals_branch or git.default_branch(repo.root)
    if branch is None:
        return None
    path = repo.plan_file(plan_id)
    try:  # the version execution follows (format 2: the branch's, from any work tree; ADR 0011)
        data = repo.load_plan(plan_id).data()
    except (OSError, FlowError):
        return None
    rel = repo.rel(path)
    tip = _branch_tip(repo, branch)
    if tip is None:
        return None
    digest = repo.load_plan(plan_id).hash
    key = (str(repo.root), branch, tip, digest)
    if key not in _merged:
        blob = git.blob_id(repo.root, data)
        merges = [c for c in git.first_parent_changes(repo.root, tip, rel) if len(c.parents) > 1 and c.blob]
        found = next(((c.commit, c.time, digest) for c in merges if c.blob == blob), None)
        if found is None and merges:
            import hashlib

            last = merges[0]
            earlier = _capped(repo.root, str(last.blob), MAX_YAML_BYTES)
            if earlier is not None:
                found = (last.commit, last.time, hashlib.sha256(earlier).hexdigest())
        _merged[key] = found
    return _merged[key]


def _branch_tip(repo: FlowRepo, branch: str) -> str | None:
    """The commit of the branch `branch` names, by its full ref name: git reads a short name as a
    tag before a branch (refs/tags/main before refs/heads/main), and a teammate who can push a
    tag `main`, which `git fetch` brings along with any branch it points into, could otherwise
    hand this clone a history with a merge of any plan. `branch` is a branch name, or the
    remote-tracking name `git.default_branch` gives (`origin/main`, `remotes/origin/main`)."""
    if branch.startswith(("refs/", "-")):
        return None
    refs = [f"refs/heads/{branch}", f"refs/remotes/{repo.config.remote}/{branch}",
            f"refs/{branch}" if branch.startswith("remotes/") else f"refs/remotes/{branch}"]
    for ref in refs:
        tip = git.resolve_commit(repo.root, ref, "approvals.branch")
        if tip is not None:
            return tip
    return None


def signed(root: Path, event: Event, log: str, rev: str = "HEAD") -> bool:
    """Whether a commit reachable from `rev` that added the event's line to the log has a
    signature git accepts (`signer`)."""
    return signer(root, event, log, rev) is not None


def signer(root: Path, event: Event, log: str, rev: str = "HEAD") -> str | None:
    """The key that signed a commit reachable from `rev` that added the event's line to the log,
    with a signature git accepts, and holds the event as it is read now (the key's fingerprint,
    else that commit); None when there is none. The commits are found by the event's id
    (`log -S`): a line rewritten later under the same id (a signed `submit`'s line made into a
    `plan.approved` one) changes no count of that id. `--reviewer` is free text: one key
    approving a version twice under two names is one approval."""
    key = (str(root), event.id, event.to_line())
    known = _verified.get(key)
    if known:
        return known
    for c in git.commits_adding(root, event.id, log, rev):
        if git.verify_commit(root, c) and _holds(root, c, log, event):
            _verified[key] = git.signing_key(root, c) or c
            return _verified[key]
    return None  # asked again next time: the commit may not exist yet, a key may be added


def _holds(root: Path, commit: str, log: str, event: Event) -> bool:
    """Whether the log at `commit` has the event, every field as it is."""
    from flowgit.core.events import parse_log

    from flowgit.core.storage import MAX_LOG_BYTES

    blob = git.blob_ids_at(root, commit, [log]).get(log) if git.is_full_id(commit) else None
    data = _capped(root, blob, MAX_LOG_BYTES) if blob else None
    if data is None:
        return False
    want = event.to_dict()
    return any(e.id == event.id and e.to_dict() == want for e in parse_log(data, log).events)


def signers_inside(root: Path) -> str | None:
    """The allowed-signers file, if it lies inside the work tree: a key list anyone can change
    by a commit vouches for nothing."""
    value = git.config_get_path(root, "gpg.ssh.allowedSignersFile")
    if not value:
        return None
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        path = root / path
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return value


def _capped(root: Path, blob: str, limit: int) -> bytes | None:
    """A blob from history (a push can bring any size), None when it is above `limit` or not
    here: what it would prove is not proven."""
    from flowgit import git_state

    if git_state.blob_sizes(root, [blob]).get(blob, 0) > limit:
        return None
    return git_state.read_blobs(root, [blob], limit, lambda _: blob).get(blob)
