"""Compaction: a long log becomes one snapshot event plus its last N events, folding to the
same state. Pure; the full history stays in git (`flowgit events --from-git`)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

from flowgit.core.events import Event, canonical, make_event
from flowgit.core.fold import checkpoint_decisions, phase_of, reduce_task

COMPACTOR = "flowgit-compact"


def split_point(events: Sequence[Event], keep: int) -> int:
    """Index where the kept tail starts, moved back so no clock straddles the split (the
    snapshot then sorts before every kept event)."""
    cut = max(len(events) - keep, 0)
    while 0 < cut < len(events) and events[cut].clock == events[cut - 1].clock:
        cut -= 1
    return cut


def snapshot_actor(prefix: Sequence[Event]) -> str:
    """The snapshot's actor: one that sorts after every event it replaces. Events are ordered
    by (clock, actor, id) and the snapshot takes the last replaced clock, so were it to sort
    before a replaced event with that clock, a merge with a branch that still has the long log
    (the merge driver keeps the union by id) would apply that event a second time."""
    top = max(e.actor for e in prefix if e.clock == prefix[-1].clock)
    return COMPACTOR if COMPACTOR > top else f"{top}~{COMPACTOR}"


def compact_task_log(events: Sequence[Event], keep: int, now: float) -> list[Event] | None:
    """The new log, or None when there is nothing worth compacting."""
    ordered = canonical(events)
    cut = split_point(ordered, keep)
    if cut < 2:
        return None
    prefix = ordered[:cut]
    record = reduce_task(prefix)
    last = prefix[-1]
    snap = make_event("task.snapshot", last.plan, last.task, snapshot_actor(prefix), last.clock,
                      {"state": record.to_dict(), "replaces": len(prefix),
                       "through": last.id}, now)
    return [snap, *unknown_types(prefix), *ordered[cut:]]


def unknown_types(events: Sequence[Event]) -> list[Event]:
    """Events of types this version does not know: a snapshot cannot fold them, so they stay
    (a newer flowgit that wrote them still reads them)."""
    return [e for e in events if not e.known]


def handled_signal_ids(events: Sequence[Event]) -> set[str]:
    """Ids of the signals a watcher took (`signal.handled`, or listed by a plan snapshot)."""
    out: set[str] = set()
    for ev in events:
        if ev.type == "signal.handled":
            out.add(str(ev.data.get("signal")))
        elif ev.type == "plan.snapshot":
            out.update(str(x) for x in (ev.data.get("state") or {}).get("signals_handled") or ())
    return out


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
            slot = ev.data.get("slot")
            schedules[str(ev.data.get("schedule"))] = slot if isinstance(slot, str) else ev.at
        elif ev.type == "plan.snapshot":
            schedules.update((ev.data.get("state") or {}).get("schedules", {}))
    # Signals: a handled one is remembered by its id alone (so an old copy of the log merged
    # back in cannot make it pending again); only the pending ones are kept as events.
    handled = handled_signal_ids(ordered)
    state = {
        "phase": info.phase, "base_commit": info.base_commit, "accepted_hash": info.accepted_hash,
        "halted_from": info.halted_from, "failed_tasks": list(info.failed_tasks),
        "approvals": [asdict(a) for a in info.approvals],
        "checkpoints": checkpoint_decisions(prefix), "schedules": schedules,
        "signals_handled": sorted(handled_signal_ids(prefix)),
    }
    last = prefix[-1]
    snap = make_event("plan.snapshot", last.plan, None, snapshot_actor(prefix), last.clock,
                      {"state": state, "replaces": len(prefix), "through": last.id}, now)
    kept_signals = [e for e in prefix if e.type == "signal.received" and e.id not in handled]
    return [snap, *kept_signals, *open_review(prefix, info.phase), *standing_approvals(prefix, info.approvals),
            *unknown_types(prefix), *ordered[cut:]]


def standing_approvals(events: Sequence[Event], approvals: Sequence[Any]) -> list[Event]:
    """The approval events behind the approvals a snapshot lists: they stay (sorting before the
    snapshot, they change no state), since with `approvals.signed` a snapshot's approvals count
    for nothing and only an event in a signed commit counts (store/approvals.py)."""
    standing = {(a.reviewer, a.plan_hash, a.at) for a in approvals}
    return [e for e in events if e.type == "plan.approved"
            and (str(e.data.get("reviewer", e.actor)), str(e.data.get("plan_hash") or ""), e.at) in standing]


def open_review(events: Sequence[Event], phase: str) -> list[Event]:
    """While a checkpoint awaits review, the event that entered it and its validation results
    are what the review shows: they stay (sorting before the snapshot, they change no state)."""
    if phase != "checkpoint":
        return []
    entered = [i for i, e in enumerate(events) if e.type == "plan.phase" and e.data.get("checkpoint")]
    if not entered:
        return []
    start = events[entered[-1]]
    cp = start.data["checkpoint"]
    return [start, *(e for e in events[entered[-1] + 1:]
                     if e.type == "checkpoint.validation" and e.data.get("checkpoint") == cp)]
