"""Compaction as one write: every long log of a plan replaced by its snapshot, in one commit."""
from __future__ import annotations

from typing import Any

from flowgit.core.compaction import compact_plan_log, compact_task_log
from flowgit.core.events import PLAN_LOG
from flowgit.store.healing import ensure_log_intact
from flowgit.store.repo import FlowRepo
from flowgit.store.writing import commit_message


# No event line is shorter than this (the envelope alone: a 26-character id, the time, ...)
MIN_LINE = 100


def long_logs(repo: FlowRepo, plan_id: str, more_than: int) -> list[str]:
    """The streams whose logs may hold more than `more_than` events. Format 2: those whose
    blob could hold that many lines, counted in one batch read (not one git process per log:
    the watcher asks on every pass)."""
    store = repo.state_store
    if store is None:
        return repo.log_streams(plan_id)
    from flowgit import git, git_state

    listing = store.blobs(plan_id)
    sizes = git_state.blob_sizes(repo.root, list(listing.values()))
    big = {s: b for s, b in listing.items() if sizes.get(b, 0) > more_than * MIN_LINE}
    data = git.cat_blobs(repo.root, list(big.values())) if big else {}
    return sorted(s for s, b in big.items() if data.get(b, b"").count(b"\n") > more_than)


def compact_plan(repo: FlowRepo, plan_id: str, keep: int, actor: str, min_events: int = 0) -> dict[str, Any]:
    """Rewrite every log of the plan longer than `keep` (and `min_events`) in one commit."""
    with repo.writing(plan_id) as w:
        summary = []
        for stream in long_logs(repo, plan_id, max(keep, min_events)):
            read = repo.read_log(plan_id, stream)
            if len(read.events) <= max(keep, min_events):
                continue
            read.check()  # a snapshot cannot say what an unreadable line meant
            if repo.state_store is None:  # a snapshot of a log whose committed lines were cut would commit the loss
                ensure_log_intact(repo, repo.log_file(plan_id, stream), "run the command again to compact them")
            new = (compact_plan_log(read.events, keep, w.now) if stream == PLAN_LOG
                   else compact_task_log(read.events, keep, w.now))
            if new is None:
                continue
            w.rewrite(stream, new)
            summary.append({"log": repo.log_display(plan_id, stream), "before": len(read.events), "after": len(new)})
        w.message = commit_message(plan_id, None, "compact", actor,
                                   f"{len(summary)} log(s) replaced by snapshots")
    return {"plan": plan_id, "keep": keep, "logs": summary, "commit": w.sha}
