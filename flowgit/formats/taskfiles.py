"""A task's `files:` entry that the plan schema refuses: the message names the task and says
why, as doctor does (the schema's location gives only its position, `tasks[1].files[0]`)."""
from __future__ import annotations

from typing import Any

from flowgit.core.model import path_problem


def explain(data: Any, loc: tuple[Any, ...], msg: str) -> tuple[tuple[Any, ...], str]:
    """(loc, msg), with "in task T (why)" after the path when `loc` is a task's files entry."""
    if len(loc) != 4 or loc[0] != "tasks" or loc[2] != "files" or not msg.startswith("invalid path "):
        return loc, msg
    try:
        task = data["tasks"][loc[1]]
        path, ident = task["files"][loc[3]], task.get("id")
    except (KeyError, IndexError, TypeError, AttributeError):
        return loc, msg
    why = path_problem(path) if isinstance(path, str) else None
    where = f" in task {ident}" if isinstance(ident, str) else ""
    head, use, rule = msg.rpartition(": use ")
    if not use:
        head, rule = msg, ""
    return loc, f"{head}{where}" + (f" ({why})" if why else "") + (f": use {rule}" if rule else "")
