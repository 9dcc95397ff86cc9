"""Ids are checked before any path is built from them."""
from __future__ import annotations

import re

from flowgit.errors import UsageError

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_ID = re.compile(ID_PATTERN)


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID.fullmatch(value)) and ".." not in value


def check_id(value: str, what: str = "id") -> str:
    if not is_valid_id(value):
        raise UsageError(
            f"invalid {what} {value!r}: use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit, no '..')"
        )
    return value


def split_ref(ref: str) -> tuple[str | None, str]:
    """'PLAN/TASK' -> (PLAN, TASK); 'TASK' -> (None, TASK). Both parts are checked."""
    if "/" in ref:
        plan, _, task = ref.partition("/")
        if "/" in task:
            raise UsageError(f"invalid task reference {ref!r}: use PLAN/TASK or TASK")
        return check_id(plan, "plan id"), check_id(task, "task id")
    return None, check_id(ref, "task id")


__all__ = ["ID_PATTERN", "check_id", "is_valid_id", "split_ref"]
