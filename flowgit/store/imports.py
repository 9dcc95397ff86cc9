"""Format 2 (ADR 0011): in-branch event logs that arrive after the migration (an old branch
merged, an open pull request) join the state branch by union and leave the branch; what the
migration leaves in each plan's `_plan.jsonl` is a tombstone that old clients stop on."""
from __future__ import annotations

from flowgit import __version__, git
from flowgit.core.events import PLAN_LOG, make_event
from flowgit.errors import FlowError
from flowgit.formats.jsonlmerge import union_logs
from flowgit.ids import is_valid_id
from flowgit.store.state import log_path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowgit.store.repo import FlowRepo

TOMBSTONE = "plan.migrated"


def branch_logs(repo: FlowRepo, rev: str = "HEAD") -> dict[tuple[str, str], str]:
    """(plan, stream) -> blob id of every in-branch log committed at `rev`."""
    out = {}
    for path, blob in git.tree_blob_ids(repo.root, rev, ".flow/plans").items():
        parts = path.split("/")
        if (len(parts) == 5 and parts[3] == "events" and parts[4].endswith(".jsonl")
                and is_valid_id(parts[2]) and (parts[4][:-6] == PLAN_LOG or is_valid_id(parts[4][:-6]))):
            out[(parts[2], parts[4][:-6])] = blob
    return out


def without_tombstones(data: bytes) -> bytes:
    return b"".join(line + b"\n" for line in data.split(b"\n") if line.strip() and TOMBSTONE.encode() not in line)


def commit_files(repo: FlowRepo, files: dict[str, bytes | None], message: str) -> str:
    from flowgit.store.files import write_atomic

    created = []
    for rel, content in files.items():
        path = repo.root / rel
        repo.refuse_symlink(path)
        if content is None:
            path.unlink(missing_ok=True)
        else:
            if not path.exists():
                created.append(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, content)
    return git.commit_paths(repo.root, sorted(files), message, created, repo.dirs)


def stray_logs(repo: FlowRepo) -> list[str]:
    """Format 2: in-branch logs in the work tree beyond the tombstones (an old branch merged).
    A scan of directories, no git process: cheap enough for every write."""
    plans = repo.flow / "plans"
    out = []
    try:
        entries = list(plans.iterdir())
    except OSError:
        return []
    for plan in entries:
        events = plan / "events"
        if plan.is_symlink() or not events.is_dir() or events.is_symlink():
            continue
        for log in events.iterdir():
            if not log.name.endswith(".jsonl") or log.is_symlink():
                continue
            if log.name == f"{PLAN_LOG}.jsonl":
                try:
                    data = log.read_bytes()
                except OSError:
                    continue
                if all(TOMBSTONE.encode() in line for line in data.split(b"\n") if line.strip()):
                    continue
            out.append(repo.rel(log))
    return sorted(out)


def import_stray_logs(repo: FlowRepo, actor: str) -> list[str]:
    """Format 2, under the lock: in-branch logs committed at HEAD (an old branch or a pull
    request merged after the migration) join the state by union and leave the branch. Files
    with uncommitted changes are left for the user (nothing of theirs is committed)."""
    found = stray_logs(repo)
    if not found or git.head(repo.root) is None:
        return []
    store = repo.state_store
    assert store is not None
    committed = branch_logs(repo)
    dirty = set(git.changed_paths(repo.root, ".flow/plans"))
    todo = {(p, s): b for (p, s), b in committed.items()
            if f".flow/plans/{p}/events/{s}.jsonl" in found and f".flow/plans/{p}/events/{s}.jsonl" not in dirty}
    if not todo:
        return []
    contents = git.cat_blobs(repo.root, list(todo.values()))
    changes: dict[str, bytes | None] = {}
    for (plan, stream), blob in todo.items():
        mine = store.read(plan, stream) or b""
        merged, _ = union_logs([mine, without_tombstones(contents.get(blob, b""))])
        if merged != mine:
            changes[log_path(plan, stream)] = merged
    if changes:
        store.commit(changes, f"flow: import {len(changes)} in-branch log(s) merged after the migration\n\n"
                     f"Flow-Event: import\nFlow-Actor: {actor}\n")
    files: dict[str, bytes | None] = {}
    from flowgit.clock import wall_now

    for plan, stream in todo:
        rel = f".flow/plans/{plan}/events/{stream}.jsonl"
        if stream == PLAN_LOG:
            ev = make_event(TOMBSTONE, plan, None, actor, 0, {"state_branch": store.branch,
                            "requires": __version__}, wall_now())
            files[rel] = ev.to_line().encode()
        else:
            files[rel] = None
    try:
        commit_files(repo, files, "flow: in-branch logs moved to the state branch\n\n"
                      f"Flow-Event: import\nFlow-Actor: {actor}\n")
    except FlowError:
        pass  # the state has them; the next write removes them from the branch again
    repo.forget_all()
    return sorted(f".flow/plans/{p}/events/{s}.jsonl" for p, s in todo)
