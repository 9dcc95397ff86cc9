"""`flowgit compact PLAN [--keep N]` and `flowgit signal PLAN NAME [--data JSON]`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flowgit.app import App
from flowgit.compaction import compact_plan_log, compact_task_log
from flowgit.errors import UsageError
from flowgit.events import PLAN_LOG, make_event
from flowgit.ids import check_id
from flowgit.pipeline import plan_clock
from flowgit.state import PlanState
from flowgit.store import FlowRepo, actor_for, automatic_actor, commit_message
from flowgit.txn import transaction


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


def compact(app: App, plan_id: str, keep: int | None) -> int:
    repo = app.repo
    check_id(plan_id, "plan id")
    repo.load_plan(plan_id)
    n = repo.config.compact_keep if keep is None else keep
    if n < 0:
        raise UsageError("--keep must be 0 or more")
    before = repo.state(plan_id)
    result = compact_plan(repo, plan_id, n, automatic_actor(repo))
    repo.forget(plan_id)
    after = repo.state(plan_id)
    result["state_unchanged"] = {k: v.state for k, v in before.tasks.items()} == \
        {k: v.state for k, v in after.tasks.items()} and before.phase == after.phase
    text = (f"compacted {len(result['logs'])} log(s) of {plan_id} (kept the last {n} events each); "
            "full history: `flowgit events --from-git`") if result["logs"] else f"{plan_id}: nothing to compact"
    app.out.result(result, text)
    return 0


def signal(app: App, plan_id: str, name: str, data: str | None) -> int:
    repo = app.repo
    check_id(plan_id, "plan id")
    check_id(name, "signal name")
    payload: Any = {}
    if data:
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise UsageError(f"--data is not valid JSON: {exc}") from None
    actor = actor_for(repo, None)
    repo.load_plan(plan_id)

    def decide(state: PlanState, now: float) -> Any:
        ev = make_event("signal.received", plan_id, None, actor, plan_clock(repo, plan_id),
                        {"name": name, "data": payload}, now)
        return {repo.log_file(plan_id, PLAN_LOG): [ev]}, {}, \
            commit_message(plan_id, None, f"signal {name}", actor), ev.id

    ev_id, sha = transaction(repo, plan_id, decide)
    handled = name in repo.config.signals
    app.out.result({"plan": plan_id, "signal": name, "event": ev_id, "commit": sha, "configured": handled},
                   f"signal {name} sent to {plan_id}" + ("" if handled else
                   f" (no action configured for {name!r} in .flow/config.yaml signals:)"))
    return 0


__all__ = ["compact", "compact_plan", "signal"]
