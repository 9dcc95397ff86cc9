"""Compaction: a long log becomes one snapshot event plus its last N events, folding to the
same state. Pure; the full history stays in git (`flowgit events --from-git`)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Sequence

from flowgit.events import Event, canonical, make_event
from flowgit.state import checkpoint_decisions, phase_of, reduce_task

COMPACTOR = "flowgit-compact"


def split_point(events: Sequence[Event], keep: int) -> int:
    """Index where the kept tail starts, moved back so no clock straddles the split (the
    snapshot then sorts before every kept event)."""
    cut = max(len(events) - keep, 0)
    while 0 < cut < len(events) and events[cut].clock == events[cut - 1].clock:
        cut -= 1
    return cut


def compact_task_log(events: Sequence[Event], keep: int, now: float) -> list[Event] | None:
    """The new log, or None when there is nothing worth compacting."""
    ordered = canonical(events)
    cut = split_point(ordered, keep)
    if cut < 2:
        return None
    prefix = ordered[:cut]
    record = reduce_task(prefix)
    last = prefix[-1]
    snap = make_event("task.snapshot", last.plan, last.task, COMPACTOR, last.clock,
                      {"state": record.to_dict(), "replaces": len(prefix),
                       "through": last.id}, now)
    return [snap, *ordered[cut:]]


KEEP_ALWAYS = ("signal.received", "signal.handled")


def compact_plan_log(events: Sequence[Event], keep: int, now: float) -> list[Event] | None:
    ordered = canonical(events)
    cut = split_point(ordered, keep)
    if cut < 2:
        return None
    prefix = ordered[:cut]
    info = phase_of(prefix)
    schedules: dict[str, str] = {}
    for ev in prefix:
        if ev.type == "schedule.ran":
            schedules[str(ev.data.get("schedule"))] = ev.at
        elif ev.type == "plan.snapshot":
            schedules.update((ev.data.get("state") or {}).get("schedules", {}))
    state = {
        "phase": info.phase, "base_commit": info.base_commit, "accepted_hash": info.accepted_hash,
        "halted_from": info.halted_from, "failed_tasks": list(info.failed_tasks),
        "approvals": [asdict(a) for a in info.approvals],
        "checkpoints": checkpoint_decisions(prefix), "schedules": schedules,
    }
    last = prefix[-1]
    snap = make_event("plan.snapshot", last.plan, None, COMPACTOR, last.clock,
                      {"state": state, "replaces": len(prefix), "through": last.id}, now)
    kept_signals = [e for e in prefix if e.type in KEEP_ALWAYS]
    return [snap, *kept_signals, *ordered[cut:]]
