"""Compaction as one write: every long log of a plan replaced by its snapshot, in one commit."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flowgit.core.compaction import compact_plan_log, compact_task_log
from flowgit.core.events import PLAN_LOG
from flowgit.core.fold import PlanState
from flowgit.store.repo import FlowRepo, commit_message
from flowgit.store.writing import transaction


def compact_plan(repo: FlowRepo, plan_id: str, keep: int, actor: str, min_events: int = 0) -> dict[str, Any]:
    """Rewrite every log of the plan longer than `keep` (and `min_events`) in one commit."""
    def decide(state: PlanState, now: float) -> Any:
        files: dict[Path, bytes] = {}
        summary = []
        events_dir = repo.safe("plans", plan_id, "events")
        for path in sorted(events_dir.glob("*.jsonl")) if events_dir.is_dir() else []:
            stream = path.name[:-6]
            read = repo.read_log(plan_id, stream)
            if len(read.events) <= max(keep, min_events):
                continue
            # a snapshot of a log whose committed lines were cut would commit the loss
            repo.ensure_log_intact(path, "run the command again to compact them")
            new = (compact_plan_log(read.events, keep, now) if stream == PLAN_LOG
                   else compact_task_log(read.events, keep, now))
            if new is None:
                continue
            files[path] = "".join(e.to_line() for e in new).encode()
            summary.append({"log": repo.rel(path), "before": len(read.events), "after": len(new)})
        if not files:
            return {}, {}, "", summary
        return {}, files, commit_message(plan_id, None, "compact", actor,
                                         f"{len(files)} log(s) replaced by snapshots"), summary

    summary, sha = transaction(repo, plan_id, decide)
    return {"plan": plan_id, "keep": keep, "logs": summary, "commit": sha}
