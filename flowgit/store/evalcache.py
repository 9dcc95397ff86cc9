"""A plan's evaluated state kept between commands (issue 17, ADR 0012).

`evaluate` walks every task of the plan. What it gives depends on the plan (its hash), the
plan log, the records of the task logs, the time (only through leases and retries falling
due) and, for plans that wait on other plans, their states. This keeps its rows in the
derived cache, with what they were computed from:

- nothing changed and no lease or retry fell due: the rows are the state, read as they are;
  in format 2 "nothing changed" is the state branch at the commit the rows were computed at,
  so not even the task logs' records are read (a read of a plan nobody moved since);
- some logs changed (a `claim`, a `done`, a fetch), or some leases or retries fell due:
  those tasks are evaluated again, and their dependents only when a task's row changed;
- the plan changed, a checkpoint was decided, the plan log became unreadable, the clock
  went back, the plan waits on other plans, or a task's done names a commit this clone
  lacks: a full evaluation.

Deleting the cache, or `FLOWGIT_NO_CACHE=1`, gives the same answer from scratch
(tests/test_scale_equal.py compares them)."""
from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from flowgit.core.events import Event
from flowgit.core.fold import (ACTIVE, PlanState, Reuse, TaskRecord, checkpoint_decisions, dependents_of,
                               evaluate, state_from_rows)
from flowgit.core.planstate import Views
from flowgit.core.model import Plan

if TYPE_CHECKING:
    from flowgit.store.repo import FlowRepo

ROW_WIDTH = 10  # a task's row in core/fold.evaluate
MOVED = "@moved"  # the state commits this clone wrote since each plan's kept evaluation
NEVER = float("inf")


def evaluated(repo: FlowRepo, plan_id: str, plan: Plan, digest: str,
              read_records: Callable[[], Mapping[str, TaskRecord]], plan_events: Sequence[Event], now: float,
              external: Mapping[str, str], graph: Callable[[], tuple[Sequence[str], Mapping[str, float]]],
              held: str | None, unreleased: Callable[[Mapping[str, TaskRecord]], frozenset[str]]) -> PlanState:
    """The plan's state at `now`; `read_records` gives the task logs' records (read only when
    the state branch moved, or in format 1), `unreleased` the tasks whose `done` names a
    commit this clone lacks, `graph` the execution order and critical-path ranks (asked for
    only when something is evaluated). `repo.evaluated_as[plan_id]` names the kept rows the
    state is, when it is exactly them (status keeps its output by it)."""
    repo.evaluated_as.pop(plan_id, None)
    if external or repo.cache.off:
        records = read_records()
        order, rank = graph()
        return evaluate(plan, records, plan_events, now, external, rank, order, held, unreleased(records))
    name = f"{plan_id}@eval"
    entry = repo.cache.entry(name)
    # the plan log reaches the task rows only through held (an unreadable line) and the
    # checkpoint decisions: a phase move or a plan.task_failed keeps the rows
    key = [digest, held, sorted(checkpoint_decisions(plan_events).items())]
    store = repo.state_store
    head = store.head() if store is not None else None
    kept_at = entry.get("head")
    if head is not None and kept_at == head and _unchanged(entry, key, now):
        again = state_from_rows(plan, _Overlay({}, entry["ids"], read_records), plan_events, held, entry["rows"],
                                entry["cps"], entry["ready"])
        if again is not None:
            _settled(repo, plan_id, head)
            repo.evaluated_as[plan_id] = entry["gen"]
            return again
    if store is not None and head is not None and isinstance(kept_at, str) and kept_at != head:
        # only this clone's own writes moved the branch since: the logs they wrote are read,
        # not the plan's listing and every record
        moved = _since(repo, plan_id, kept_at, head)
        if moved:
            state = _advanced(repo, plan_id, plan, entry, key, moved, read_records, plan_events, now, graph,
                              held, unreleased, head)
            if state is not None:
                return state
    records = read_records()
    late = unreleased(records)
    if late:
        order, rank = graph()
        return evaluate(plan, records, plan_events, now, external, rank, order, held, late)
    ids = _identities(repo, plan_id, records)
    # the state branch's commit stands for every log's identity, unless one is not cached
    at_head = head if all(i is not None for i in ids.values()) else None
    reuse = _reuse(entry, key, ids, now)
    if reuse is not None and reuse.dirty:
        reuse = replace(reuse, dependents=_dependents(repo, plan_id, plan, digest), ids=list(reuse.tasks))
    if reuse is not None and not reuse.dirty and isinstance(entry.get("ready"), list):
        again = state_from_rows(plan, records, plan_events, held, reuse.tasks, reuse.checkpoints,
                                entry["ready"])
        if again is not None:
            if entry.get("head") != at_head:  # another plan's write moved the branch
                entry["head"] = at_head
                repo.cache.changed(name)
            if at_head is not None:
                _settled(repo, plan_id, at_head)
            if isinstance(entry.get("gen"), str):
                repo.evaluated_as[plan_id] = entry["gen"]
            return again
    order, rank = graph()
    state = evaluate(plan, records, plan_events, now, external, rank, order, held, late, reuse)
    if reuse is None or reuse.dirty or entry.get("ids") != ids or "ready" not in entry:
        _keep(repo, plan_id, entry, key, now, ids, state, at_head, reuse is not None)
    return state


def _keep(repo: FlowRepo, plan_id: str, entry: dict[str, Any], key: list[Any], now: float,
          ids: dict[str, Any], state: PlanState, at_head: str | None, shared: bool,
          until: float | None = None) -> None:
    """The evaluation kept, with what it was computed from."""
    views = state.tasks
    assert isinstance(views, Views)  # evaluate gives its views as rows
    entry.clear()
    rows = views.rows  # kept in plan order: the next read needs no plan to know it
    ordered = list(map(rows.__getitem__, views.ids))
    if not shared:  # else the rows read back from the kept ones: equal rows are one object already
        same: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # one object for equal rows: marshal
        # writes the others as references (every done task's row is the same), half the load
        ordered = list(map(same.setdefault, ordered, ordered))
    kept = dict(zip(views.ids, ordered))
    gen = os.urandom(8).hex()
    entry.update({"key": key, "now": now, "until": _next_due(rows, now) if until is None else until,
                  "ids": ids, "rows": kept,
                  "cps": dict(views.cp_rows),
                  "ready": list(state.order), "head": at_head, "gen": gen})
    repo.cache.changed(f"{plan_id}@eval")
    repo.evaluated_as[plan_id] = gen
    if at_head is not None:
        _settled(repo, plan_id, at_head)


def _advanced(repo: FlowRepo, plan_id: str, plan: Plan, entry: dict[str, Any], key: list[Any],
              moved: Mapping[str, str | None], read_records: Callable[[], Mapping[str, TaskRecord]],
              plan_events: Sequence[Event], now: float,
              graph: Callable[[], tuple[Sequence[str], Mapping[str, float]]], held: str | None,
              unreleased: Callable[[Mapping[str, TaskRecord]], frozenset[str]], head: str) -> PlanState | None:
    """The state after this clone's own writes changed the logs `moved` (stream -> blob, None:
    removed) since the kept evaluation: those logs folded, those tasks evaluated again (and
    what their change moves). None when anything is not as plain (a log that does not read
    cleanly, a `done` naming a commit this clone lacks, a kept entry of another shape): the
    caller reads everything."""
    from flowgit.core.events import parse_log
    from flowgit.core.fold import fold_log
    from flowgit.errors import FlowError

    store = repo.state_store
    old_ids = entry.get("ids")
    if store is None or not isinstance(old_ids, dict) or not isinstance(entry.get("ready"), list):
        return None
    try:
        contents = store.read_many([b for b in moved.values() if b is not None])
    except FlowError:
        return None
    fresh: dict[str, TaskRecord] = {}
    for task, blob in moved.items():
        if blob is None:
            continue
        read = parse_log(contents.get(blob, b""), store.display(plan_id, task), plan_id, task)
        if read.bad or blob not in contents:
            return None
        fresh[task] = fold_log(read)
    if unreleased(fresh):
        return None
    ids = dict(old_ids)
    for task, blob in moved.items():
        if blob is None:
            ids.pop(task, None)
        else:
            ids[task] = blob
    reuse = _reuse(entry, key, ids, now, dirty=set(moved))
    if reuse is None:
        return None
    reuse = replace(reuse, dependents=_dependents(repo, plan_id, plan, key[0]), ids=list(reuse.tasks))
    order, rank = graph()
    state = evaluate(plan, _Overlay(fresh, ids, read_records), plan_events, now, {}, rank, order, held,
                     frozenset(), reuse)
    # a row's lease or retry changes only with its own log: the soonest of the kept rows (still
    # ahead) and of the rows of the logs read here; an earlier one than needed only makes a
    # later read look at the rows again
    until, rows = entry.get("until"), state.tasks
    assert isinstance(rows, Views)
    soonest = None
    if isinstance(until, float) and until > now:
        soonest = min(until, _next_due({t: rows.rows[t] for t in reuse.dirty if t in rows.rows}, now))
    _keep(repo, plan_id, entry, key, now, ids, state, head, True, soonest)
    return state


def _since(repo: FlowRepo, plan_id: str, kept_at: str, head: str) -> dict[str, str | None] | None:
    """The plan's logs this clone's own state commits changed from `kept_at` to `head`
    (store/state.py calls `advance` on each), when it knows them all."""
    moved = repo.cache.entry(MOVED)
    since = moved.get("since")
    if moved.get("head") != head or not isinstance(since, dict):
        return None
    mine = since.get(plan_id)
    if not (isinstance(mine, list) and len(mine) == 2 and mine[0] == kept_at and isinstance(mine[1], dict)):
        return None
    changes: dict[str, str | None] = mine[1]
    if not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in changes.items()):
        return None
    return changes


def _dependents(repo: FlowRepo, plan_id: str, plan: Plan, digest: str) -> Mapping[str, Sequence[str]]:
    """Each node's dependents in the plan of digest `digest`, kept with the plan index (the
    same for every work tree) in buckets: a re-evaluation reads those of the nodes it moves."""
    return _After(repo, plan_id, plan, digest)


class _After(Mapping[str, Sequence[str]]):
    """The dependents map, read by bucket (`<plan>@after<N>`, by crc32 of the node, each with
    the plan's digest); all buckets written again from the plan when one is missing or not of
    the shape written here."""

    BUCKETS = 64

    def __init__(self, repo: FlowRepo, plan_id: str, plan: Plan, digest: str) -> None:
        self.repo, self.plan_id, self.plan, self.digest = repo, plan_id, plan, digest

    def _name(self, node: str) -> str:
        import zlib

        return f"{self.plan_id}@after{zlib.crc32(node.encode('utf-8')) % self.BUCKETS}"

    def _all(self) -> dict[str, tuple[str, ...]]:
        from flowgit.core.index import plan_columns

        ids, deps = plan_columns(self.plan)
        nodes: dict[str, Sequence[str]] = dict(zip(ids, deps))
        nodes.update({c.id: c.after for c in self.plan.checkpoints})
        return {k: tuple(v) for k, v in dependents_of(nodes).items()}

    def _bucket(self, node: str) -> Mapping[str, Any]:
        entry = self.repo.plan_cache.entry(self._name(node))
        if entry.get("hash") != self.digest or not isinstance(entry.get("after"), dict):
            buckets: dict[str, dict[str, tuple[str, ...]]] = {}
            for n in range(self.BUCKETS):
                buckets[f"{self.plan_id}@after{n}"] = {}
            for key, value in self._all().items():
                buckets[self._name(key)][key] = value
            for name, bucket in buckets.items():
                kept = self.repo.plan_cache.entry(name)
                kept.clear()
                kept.update({"hash": self.digest, "after": bucket})
                self.repo.plan_cache.changed(name)
        after = entry.get("after")
        return after if isinstance(after, dict) else {}

    def get(self, node: str, default: Any = None) -> Any:
        found = self._bucket(node).get(node)
        if not (isinstance(found, tuple) and all(type(n) is str for n in found)):
            return default
        return found

    def __getitem__(self, node: str) -> Sequence[str]:
        found = self.get(node)
        if found is None:
            raise KeyError(node)
        return found  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _settled(repo: FlowRepo, plan_id: str, head: str) -> None:
    """The plan's kept evaluation is at `head`: the writes that follow are counted from there."""
    moved = repo.cache.entry(MOVED)
    since = moved.get("since")
    if moved.get("head") != head or not isinstance(since, dict):
        moved.clear()
        moved.update({"head": head, "since": {plan_id: [head, {}]}})
    elif since.get(plan_id) != [head, {}]:
        since[plan_id] = [head, {}]
    else:
        return
    repo.cache.changed(MOVED)


def advance(repo: FlowRepo, old: str | None, new: str, changes: Mapping[str, Mapping[str, str | None]]) -> None:
    """This clone wrote the state commit `new` on `old`, changing `changes` (plan -> task log
    -> its new blob, None: removed): what `_since` answers with. A commit on anything but
    the head this clone last counted from starts again (the next read of each plan reads all)."""
    if repo.cache.off:
        return
    moved = repo.cache.entry(MOVED)
    since = moved.get("since")
    if old is None or moved.get("head") != old or not isinstance(since, dict):
        moved.clear()
        moved.update({"head": new, "since": {}})
    else:
        for plan_id, mine in list(since.items()):
            if not (isinstance(mine, list) and len(mine) == 2 and isinstance(mine[1], dict)):
                del since[plan_id]
            elif plan_id in changes:
                mine[1].update(changes[plan_id])
        moved["head"] = new
    repo.cache.changed(MOVED)


class _Overlay(Mapping[str, TaskRecord]):
    """The records after this clone's own writes: the logs they wrote, folded (`fresh`); a
    task without a log (`ids` lists every log) has none; any other is read with the rest."""

    __slots__ = ("_fresh", "_ids", "_rest")

    def __init__(self, fresh: dict[str, TaskRecord], ids: Mapping[str, Any],
                 read: Callable[[], Mapping[str, TaskRecord]]) -> None:
        self._fresh = fresh
        self._ids = ids
        self._rest = _Later(read)

    def __getitem__(self, key: str) -> TaskRecord:
        rec = self._fresh.get(key)
        if rec is not None:
            return rec
        if key not in self._ids:
            raise KeyError(key)
        return self._rest[key]

    def get(self, key: str, default: Any = None) -> Any:
        rec = self._fresh.get(key)
        if rec is not None:
            return rec
        return self._rest.get(key, default) if key in self._ids else default

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def _unchanged(entry: Mapping[str, Any], key: list[Any], now: float) -> bool:
    """The kept rows are the state at `now` when their inputs are the same (the caller
    compared the state branch's commit): the plan and its log's part, and nothing fell due
    since (nor did the clock go back)."""
    rows, at, until = entry.get("rows"), entry.get("now"), entry.get("until")
    if entry.get("key") != key or not isinstance(rows, dict) or not isinstance(entry.get("cps"), dict) \
            or not isinstance(entry.get("ready"), list) or not isinstance(entry.get("gen"), str) \
            or not isinstance(entry.get("ids"), dict) \
            or not isinstance(at, float) or not isinstance(until, float) or not at <= now < until:
        return False
    return all(type(row) is tuple and len(row) == ROW_WIDTH for row in rows.values())


class _Later(Mapping[str, TaskRecord]):
    """The records, read when a view first needs one (an error message, a worker's clock)."""

    __slots__ = ("_read", "_got")

    def __init__(self, read: Callable[[], Mapping[str, TaskRecord]]) -> None:
        self._read = read
        self._got: Mapping[str, TaskRecord] | None = None

    def _all(self) -> Mapping[str, TaskRecord]:
        if self._got is None:
            self._got = self._read()
        return self._got

    def __getitem__(self, key: str) -> TaskRecord:
        return self._all()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._all().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _reuse(entry: Mapping[str, Any], key: list[Any], ids: Mapping[str, Any], now: float,
           dirty: set[str] | None = None) -> Reuse | None:
    """The kept rows (in plan order: `_keep`) and the tasks to evaluate again (`dirty`: known,
    else the logs whose identity differs from the kept one), or None: evaluate everything."""
    if entry.get("key") != key:
        return None
    rows, cps, old_ids = entry.get("rows"), entry.get("cps"), entry.get("ids")
    at, until = entry.get("now"), entry.get("until")
    if not (isinstance(rows, dict) and isinstance(cps, dict) and isinstance(old_ids, dict)
            and isinstance(at, float) and isinstance(until, float) and now >= at):
        return None
    for row in rows.values():  # a shape this version did not write: evaluate afresh
        if type(row) is not tuple or len(row) != ROW_WIDTH:
            return None
    if dirty is None:
        dirty = {t for t, i in ids.items() if i is None or old_ids.get(t) != i}
        dirty.update(t for t in old_ids if t not in ids)
    if now >= until:
        dirty.update(t for t, row in rows.items() if _due(row, now))
    return Reuse(rows, cps, frozenset(dirty))


def _due(row: tuple[Any, ...], now: float) -> bool:
    state, lease, retry = row[0], row[3], row[4]
    return (state in ACTIVE and lease is not None and lease <= now) or \
        (state == "retry_wait" and retry is not None and retry <= now)


def _next_due(rows: Mapping[str, tuple[Any, ...]], now: float) -> float:
    """The first time after `now` at which a lease runs out or a retry falls due."""
    soonest = NEVER
    for row in rows.values():
        state = row[0]
        if state in ACTIVE:
            when = row[3]
        elif state == "retry_wait":
            when = row[4]
        else:
            continue
        if when is not None and now < when < soonest:
            soonest = when
    return soonest


def _identities(repo: FlowRepo, plan_id: str, records: Mapping[str, TaskRecord]) -> dict[str, Any]:
    """Each task log's identity as the records cache keyed it (its blob id, or its file's
    stats in format 1); None for a log that is not cached (an unreadable one): always
    evaluated again."""
    logs = repo.cache.entry(f"{plan_id}@logs").get("logs") or {}
    out: dict[str, Any] = {}
    for task in records:
        hit = logs.get(task)
        out[task] = hit[0] if hit else None
    return out
