"""What the watcher does besides the phase rules, once per pass: schedules, signals, waits and
automatic compaction; and when it must wake next though no file changes."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from flowgit.core.model import parse_seconds
from flowgit.errors import FlowError
from flowgit.store.repo import FlowRepo
from flowgit.watcher.schedules import last_runs, run_schedules
from flowgit.watcher.signals import handle_signals
from flowgit.watcher.waits import check_waits

Log = Callable[[str], None]


def auto_compact(repo: FlowRepo, plan_id: str, actor: str, log: Log) -> int:
    threshold = repo.config.compact_threshold
    if threshold <= 0:
        return 0
    from flowgit.ops.compact import compact_plan, long_logs

    big: list[object]
    if repo.state_store is not None:
        big = list(long_logs(repo, plan_id, threshold))
    else:
        events_dir = repo.safe("plans", plan_id, "events")
        big = [p for p in events_dir.glob("*.jsonl")
               if os.path.getsize(p) > 0 and _count_lines(p) > threshold] if events_dir.is_dir() else []
    if not big:
        return 0
    result = compact_plan(repo, plan_id, repo.config.compact_keep, actor, threshold)
    if result["logs"]:
        log(f"{plan_id}: compacted {len(result['logs'])} log(s) past {threshold} events")
    return len(result["logs"])


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def next_wake(repo: FlowRepo, now: float) -> float | None:
    """The earliest time something falls due without any file changing: a schedule, a wait
    condition's next check, a retry, a lease running out. The watcher sleeps until then
    (or its rescan) instead of finding it on a later pass."""
    times: list[float] = []
    for sched in repo.config.schedules:
        try:
            every = parse_seconds(sched.get("every", "1h"), "schedule")
            last = last_runs(list(repo.plan_events(str(sched["plan"])))).get(str(sched.get("id")))
        except (FlowError, KeyError, TypeError, AttributeError):
            continue
        if last is not None:
            times.append(last + every)
    for pid in repo.plan_ids():
        try:
            state = repo.state(pid, now)
        except FlowError:
            continue
        for view in state.tasks.values():
            if view.waiting_on == ("wait",) and view.record.wait_next_at is not None:
                times.append(view.record.wait_next_at)
            times += [t for t in (view.retry_at, view.lease_until) if t is not None]
    future = [t for t in times if t > now]  # what is due now was this pass's work
    return min(future) if future else None


def watcher_extras(repo: FlowRepo, actor: str, log: Log) -> None:
    """Everything the watcher does besides the phase rules, once per pass."""
    from flowgit.runner.review import land_reviewed

    try:
        for ref in land_reviewed(repo, actor):
            log(f"{ref} done: its reviewed branch reached the base")
    except FlowError as exc:
        log(f"reviewed branches: {exc.message}")
    run_schedules(repo, actor, log)
    for pid in repo.plan_ids():
        try:
            handle_signals(repo, pid, actor, log)
            check_waits(repo, pid, actor, log)
            auto_compact(repo, pid, actor, log)
        except FlowError as exc:
            log(f"{pid}: {exc.message}")
