"""Compaction as one write: every long log of a plan replaced by its snapshot, in one commit."""
from __future__ import annotations

from typing import Any

from flowgit.core.compaction import compact_plan_log, compact_task_log
from flowgit.core.events import PLAN_LOG
from flowgit.store.healing import ensure_log_intact
from flowgit.store.repo import FlowRepo
from flowgit.store.writing import commit_message


def compact_plan(repo: FlowRepo, plan_id: str, keep: int, actor: str, min_events: int = 0) -> dict[str, Any]:
    """Rewrite every log of the plan longer than `keep` (and `min_events`) in one commit."""
    with repo.writing(plan_id) as w:
        summary = []
        for stream in repo.log_streams(plan_id):
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
