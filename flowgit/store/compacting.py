"""Compaction at write time (format 2): a log that this write takes past `compact.threshold`
events is replaced, in the same state commit as the transition, by a snapshot of what it held
and its last `compact.keep` events, the new events after them. Without `flowgit watch` a log
never grows past the threshold, so a transition on a task with a long history costs what one
on a fresh task does.

The snapshot is a cache over history, never the history: it names the state commit it folded
(`data.commit`), every version of the log stays in git (`events --from-git`), and a merge
that brings an event the snapshot did not see rebuilds the log from its whole history
(ops/statesync.merge_states); the next write past the threshold snapshots it again."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Mapping, Sequence

from flowgit.core.compaction import compact_plan_log, compact_task_log
from flowgit.core.events import PLAN_LOG, Event, parse_log

if TYPE_CHECKING:
    from flowgit.store.repo import FlowRepo


def with_compaction(repo: FlowRepo, streams: Mapping[tuple[str, str], Sequence[Event]],
                    rewrites: Mapping[tuple[str, str], bytes], now: float) -> dict[tuple[str, str], bytes]:
    """`rewrites` and, for each log these appends take past the threshold, its compacted
    content (the appends go on top of it). A log that cannot be read whole is left as it is:
    a snapshot cannot say what an unreadable line meant, and the transition still goes in."""
    out = dict(rewrites)
    store = repo.state_store
    threshold, keep = repo.config.compact_threshold, repo.config.compact_keep
    if store is None or threshold <= 0:
        return out
    head = None
    for (plan, stream), events in streams.items():
        if (plan, stream) in out:
            continue
        data = store.read(plan, stream)
        if data is None or data.count(b"\n") + len(events) <= threshold:
            continue
        read = parse_log(data, store.display(plan, stream), plan, None if stream == PLAN_LOG else stream)
        if read.bad or read.torn or len(read.events) + len(events) <= threshold:
            continue
        new = (compact_plan_log(read.events, keep, now) if stream == PLAN_LOG
               else compact_task_log(read.events, keep, now))
        if not new:
            continue
        head = head or store.head()
        snap = dataclasses.replace(new[0], data={**new[0].data, "commit": head})
        out[(plan, stream)] = "".join(e.to_line() for e in [snap, *new[1:]]).encode()
    return out
