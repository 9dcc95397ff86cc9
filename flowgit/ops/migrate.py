"""`flowgit migrate`: format 1 (event logs in the branch) to format 2 (the state branch,
ADR 0011), and the import of in-branch logs that arrive after it (an old branch merged, an
open pull request).

The migration is two commits under the lock. First the state branch: every committed log at
its fanned-out path, in one commit whose parent is the code branch's HEAD, so the logs'
history stays reachable from `flow/state`. Then the code branch: the logs removed, `version: 2`
and `requires:` in config.yaml, and in each plan's `_plan.jsonl` one `plan.migrated` event, a
tombstone: releases from before the trust work stop on its unknown type, later ones on the
config's version, so no old client sees every task ready and runs agents again."""
from __future__ import annotations

import re
from typing import Any

from flowgit import __version__, git, git_state
from flowgit.core.events import PLAN_LOG, make_event
from flowgit.errors import Detached, Dirty
from flowgit.store.imports import TOMBSTONE, commit_files, without_tombstones, branch_logs
from flowgit.store.repo import FlowRepo
from flowgit.store.state import INDEX, StateStore, log_path

_VERSION_LINE = re.compile(rb"^version:[ \t]*1[ \t]*(#.*)?$", re.M)


def _config_v2(text: bytes) -> bytes:
    if _VERSION_LINE.search(text):
        text = _VERSION_LINE.sub(b"version: 2", text, count=1)
    else:
        text = b"version: 2\n" + text
    if not re.search(rb"^requires:", text, re.M):
        text = text.replace(b"version: 2", f"version: 2\nrequires: \"{__version__}\"".encode(), 1)
    return text


def migrate(repo: FlowRepo, actor: str, dry_run: bool) -> dict[str, Any]:
    cfg = repo.config
    logs = branch_logs(repo) if git.head(repo.root) else {}
    plans = sorted({plan for plan, _ in logs} | set(repo.plan_ids()))
    summary: dict[str, Any] = {"from": cfg.version, "to": 2, "state_branch": cfg.state_branch,
                               "plans": plans, "logs": len(logs), "dry_run": dry_run}
    if cfg.version == 2:
        summary.update(migrated=False, reason="already format 2")
        return summary
    if dry_run:
        summary["migrated"] = False
        return summary
    dirty = git.changed_paths(repo.root, ".flow")
    if dirty:
        raise Dirty(f"{dirty[0]} has uncommitted changes: commit or discard them, then run "
                    "`flowgit migrate` again")
    if git.head(repo.root) and git.current_branch(repo.root) is None:
        # the code commit would belong to no branch: the branch stays format 1 beside a state
        raise Detached("HEAD is detached: check out the branch to migrate, then run `flowgit "
                       "migrate` again")
    store = StateStore(repo, cfg.state_branch)
    with repo.lock():
        repo.journal.recover()
        head = git.head(repo.root)
        assert head is not None or not logs
        message = ("flow: migrate to the state branch\n\nThe event logs of the branch at "
                   f"{head}, moved here.\n\nFlow-Event: migrate\nFlow-Actor: {actor}\n")
        state = _commit_logs(repo, store, logs, message, [head] if head else [])
        # the code branch: the logs go, the tombstones and the new format come
        files: dict[str, bytes | None] = {
            f".flow/plans/{plan}/events/{stream}.jsonl": None for plan, stream in logs}
        from flowgit.clock import wall_now

        now = wall_now()
        for plan in plans:
            ev = make_event(TOMBSTONE, plan, None, actor, 0,
                            {"state_branch": cfg.state_branch, "requires": __version__,
                             "note": f"this plan's events are on {cfg.state_branch}: use flowgit {__version__} or later"},
                            now)
            files[f".flow/plans/{plan}/events/{PLAN_LOG}.jsonl"] = ev.to_line().encode()
        config = repo.root / ".flow" / "config.yaml"
        files[".flow/config.yaml"] = _config_v2(config.read_bytes() if config.exists() else b"")
        code = commit_files(repo, files, f"flow: migrate to the state branch {cfg.state_branch}\n\n"
                             f"Flow-Event: migrate\nFlow-Actor: {actor}\n")
    summary.update(migrated=True, state_commit=state, code_commit=code)
    return summary


def _commit_logs(repo: FlowRepo, store: StateStore, logs: dict[tuple[str, str], str], message: str,
                 parents: list[str]) -> str:
    """The state commit of the branch's logs: each at its fanned-out path with the blob id it
    already has in HEAD's tree; only the logs that held a tombstone are hashed anew (in one
    batch). No process per log: 2,000 logs took one `hash-object` each."""
    store.refuse_code_branch()
    store.check_writable()
    root = repo.root
    contents = git.cat_blobs(root, [b for b in logs.values()])
    blobs: dict[str, str | None] = {}
    dirty: dict[str, bytes] = {}
    for (plan, stream), blob in logs.items():
        data = contents.get(blob, b"")
        clean = without_tombstones(data)
        if clean == data and blob in contents:
            blobs[log_path(plan, stream)] = blob
        else:
            dirty[log_path(plan, stream)] = clean
    blobs.update(zip(dirty, git_state.write_blobs(root, list(dirty.values()))))
    local = store.local_head()
    old = local or git.read_ref(repo.dirs, store.tracking())
    folder = git_state.state_dir(repo.dirs)
    (folder / (INDEX + ".base")).unlink(missing_ok=True)  # the private index is rebuilt here
    (folder / (INDEX + ".lock")).unlink(missing_ok=True)
    tree = git_state.write_tree(root, folder / INDEX, old, blobs, False)
    new = git_state.commit_tree(root, tree, ([old] if old else []) + parents, message)
    git_state.advance_ref(root, store.ref, new, local, message.splitlines()[0])
    store.note_moved()
    return new


def unmigrated_branches(repo: FlowRepo) -> list[str]:
    """Branches (local and remote-tracking) whose config is still format 1."""
    out = []
    for ref in git_state.branch_refs(repo.root):
        data = git.show_blob(repo.root, ref, ".flow/config.yaml")
        if data is not None and not re.search(rb"^version:[ \t]*2\b", data, re.M):
            out.append(ref)
    return out
