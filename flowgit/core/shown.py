"""How a value found in a line is shown in a message: "expected X, got Y"."""
from __future__ import annotations

import datetime as _dt
from typing import Any


def show(value: Any) -> str:
    """A short rendering of a scalar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)


def got(value: Any) -> str:
    """What was found, for "expected X, got Y"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({show(value)})"
    if isinstance(value, int):
        return f"an integer ({value})" if abs(value) < 10 ** 30 else "a very large integer"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({show(value)})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, _dt.datetime):
        return f"a date and time ({value.isoformat()})"
    if isinstance(value, _dt.date):
        return f"a date ({value.isoformat()})"
    return f"a {type(value).__name__}"
