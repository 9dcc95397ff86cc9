"""A task log folded in one pass when every line of it is sound (issue 17, ADR 0012): what
`fold_log(parse_log(...))` gives for it, without the bookkeeping for bad lines that a cold
read of 25,000 clean logs never uses. Any doubt (a blank, torn, refused or foreign line, a
repeated event id) answers None, and the caller reads the log the long way."""
from __future__ import annotations

import re
from typing import Any, Callable

from flowgit.core.events import Event, LogRead, _good_id, _sound, event_time, load_line, parse_log
from flowgit.core.fold import TaskRecord, fold_log, reduce_task
from flowgit.core.planstate import RECORD_FIELDS


def fold_clean(data: bytes, plan: str, task: str) -> TaskRecord | None:
    """The record of task `task`'s log `data` in plan `plan` when every line is a sound event
    of that task, each id once, the last line ended; else None."""
    if not data.endswith(b"\n"):
        return None
    events = []
    checked = Event._checked
    for line in data[:-1].split(b"\n"):
        try:
            obj = load_line(line)
        except ValueError:
            return None
        if type(obj) is not dict or not _sound(obj) or obj["plan"] != plan or obj["task"] != task:
            return None
        events.append(checked(obj))
    if len(events) > 1 and len({e.id for e in events}) != len(events):
        return None
    return reduce_task(events)


_CLEAN = LogRead((), False, 0)


def fold_task_log(data: bytes, plan: str, task: str,
                  display: Callable[[str, str], str]) -> tuple[TaskRecord, LogRead]:
    """Task `task`'s log folded, and what reading it found (nothing, for a clean log read in
    one pass; `display(plan, task)` names the log in the messages of one that is not)."""
    clean = fold_clean(data, plan, task)
    if clean is not None:
        return clean, _CLEAN
    read = parse_log(data, display(plan, task), plan, task)
    return fold_log(read), read


# The common log, recognised by its bytes: a task claimed (as `claim` and the runner write it)
# and, maybe, then done by the same worker (data empty or naming the code commit alone). Such
# a log folds to a row without decoding a line as JSON or building an event. The pattern
# accepts only what `load_line` and `_sound` accept for these keys in this order (no escapes,
# no control characters, days up to the 28th, clocks below 10**15 (under MAX_CLOCK), a ULID for each id); the
# rest of the envelope is compared below; anything else is read the general way above.
_TIME = (r"(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])T"
         r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?Z")
_HEAD = (r'\{"id":"([0-9A-HJKMNP-TV-Z]{26})","type":"task\.%s","plan":"([^"\\\x00-\x1f]*)",'
         r'"task":"([^"\\\x00-\x1f]*)","actor":"([^"\\\x00-\x1f]{1,1000})","at":"' + _TIME +
         r'","clock":(0|[1-9][0-9]{0,14}),"data":\{')
_CODE = r'"code":"([0-9a-f]{40}|[0-9a-f]{64})"'
_COMMON_PATTERN = (
    _HEAD % "claimed" + r'"lease_until":"(' + _TIME + r')","lease_seconds":'
    r'-?(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,17})?(?:,' + _CODE + r')?\}\}\n'
    r'(?:' + _HEAD % "done" + r'(?:' + _CODE + r')?\}\}\n)?\Z')
_COMMON: list[re.Pattern[str]] = []  # compiled when first needed: ~3 ms, and a warm command never is
_CLAIMED = TaskRecord(status="claimed", attempts=1, events=1).to_row()
_DONE = TaskRecord(status="done", attempts=1, events=2).to_row()
_WORKER, _LEASE, _LAST, _CODE_AT = (RECORD_FIELDS.index(n) for n in ("worker", "lease_until", "last_clock", "code"))


def common_row(data: bytes, plan: str, task: str) -> tuple[Any, ...] | None:
    """The row (`TaskRecord.to_row`) that `fold_clean` gives for a common log of task `task`
    in plan `plan`, or None when the log is not of that shape."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not _COMMON:
        _COMMON.append(re.compile(_COMMON_PATTERN))
    m = _COMMON[0].match(text)
    if m is None:
        return None
    (id1, plan1, task1, actor1, clock1, until, _code1,
     id2, plan2, task2, actor2, clock2, code2) = m.groups()
    if plan1 != plan or task1 != task or not _good_id(plan) or not _good_id(task):
        return None
    if id2 is None:  # claimed, not yet done: the lease runs to its lease_until
        row = list(_CLAIMED)
        row[_WORKER], row[_LEASE], row[_LAST] = actor1, event_time(until), int(clock1)
        return tuple(row)
    if plan2 != plan or task2 != task or actor2 != actor1 or id2 == id1:
        return None
    last = int(clock2)
    if int(clock1) >= last:  # the done sorts first, or beside it by id: the general fold orders them
        return None
    row = list(_DONE)
    row[_WORKER], row[_LAST], row[_CODE_AT] = actor1, last, code2
    return tuple(row)
