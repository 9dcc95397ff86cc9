"""A task log folded in one pass when every line of it is sound (issue 17, ADR 0012): what
`fold_log(parse_log(...))` gives for it, without the bookkeeping for bad lines that a cold
read of 25,000 clean logs never uses. Any doubt (a blank, torn, refused or foreign line, a
repeated event id) answers None, and the caller reads the log the long way."""
from __future__ import annotations

from typing import Callable

from flowgit.core.events import Event, LogRead, _sound, load_line, parse_log
from flowgit.core.fold import TaskRecord, fold_log, reduce_task


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
