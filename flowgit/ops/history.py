"""Event history from git: every event any version of a log held, so compaction loses nothing."""
from __future__ import annotations

from flowgit import git
from flowgit.core.events import Event, parse_log
from flowgit.store.repo import FlowRepo, iter_events_all


def events_from_git(repo: FlowRepo, plan_id: str, task_id: str | None) -> list[Event]:
    """The current logs plus the logs as they were just before each compaction commit."""
    store = repo.state_store
    if store is not None:  # every version any log had on the state branch (merges included)
        from flowgit import git_state
        from flowgit.store.state import log_path

        head = store.head()
        if head is None:
            return []
        where = log_path(plan_id, task_id) if task_id else f".flow/plans/{plan_id}/events"
        found: dict[str, Event] = {}
        blobs = capped(repo, git_state.blob_versions(repo.root, [head], where), f"{store.branch}:{where}")
        for blob, data in blobs.items():
            for ev in parse_log(data, f"{store.branch}:{blob[:10]}").events:
                if ev.type not in SNAPSHOTS:
                    found.setdefault(ev.id, ev)
        return list(found.values())
    prefix = f".flow/plans/{plan_id}/events"
    path = f"{prefix}/{task_id}.jsonl" if task_id else prefix
    shas = git.commits_touching(repo.root, path, grep="^Flow-Event: compact")
    seen: dict[str, Event] = {}
    for sha in shas:
        ids = git.tree_blob_ids(repo.root, f"{sha}^", path)
        read = capped(repo, list(ids.values()), f"{sha[:10]}^:{path}")
        files = {rel: read[blob] for rel, blob in ids.items() if blob in read}
        for rel, data in files.items():
            for ev in parse_log(data, f"{sha[:10]}^:{rel}").events:
                seen.setdefault(ev.id, ev)
    current = (repo.read_log(plan_id, task_id).events if task_id else iter_events_all(repo, plan_id))
    for ev in current:
        seen.setdefault(ev.id, ev)
    if shas:
        # a snapshot stands for events replayed here: an earlier compaction's snapshot (in the
        # log as it was before a later one) is no more an event than the current one
        return [ev for ev in seen.values() if ev.type not in SNAPSHOTS]
    return list(seen.values())


SNAPSHOTS = ("task.snapshot", "plan.snapshot")


def capped(repo: FlowRepo, blobs: list[str], where: str) -> dict[str, bytes]:
    """The blobs of these log versions, but one above the size limit of a log, which only a
    push can bring and history keeps for good, is left unread and named in one line."""
    from flowgit import git_state
    from flowgit.core.storage import MAX_LOG_BYTES
    from flowgit.store import notices

    sizes = git_state.blob_sizes(repo.root, blobs)
    big = {b for b in blobs if sizes.get(b, 0) > MAX_LOG_BYTES}
    for blob in sorted(big):
        notices.say(blob, f"{where}: a version of the log (blob {blob}) is {sizes[blob]} bytes, above "
                    f"the {MAX_LOG_BYTES} byte limit of a log: not read, its events are not listed")
    return git_state.read_blobs(repo.root, [b for b in blobs if b not in big], MAX_LOG_BYTES,
                                lambda sha: f"{where}: blob {sha}")
