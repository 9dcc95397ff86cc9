"""The YAML the round-trip dumper writes for new tasks after a last task of plain one-line
fields, written without ruamel (issue 17: importing and running ruamel was a tenth of a
`task add` at 50,000 tasks). Only what reads back the same and what the dumper would write
unquoted is written here; anything else gets None and the caller dumps with ruamel. The
tests hold the two to the same bytes."""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from flowgit.formats.fastyaml import resolve

_KEY = r"[a-z_][a-z0-9_]*"
_FIRST = re.compile(rf"( *)- ({_KEY}): (.+)\n")
_MORE = re.compile(rf"( *)({_KEY}): (.+)\n")
# a scalar the dumper writes plain in block and flow context alike: no indicator, no ': ',
# no ' #', no comma or bracket, no space at either end
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./()+ -]*")
_PLAIN_LIST = re.compile(r"\[[A-Za-z0-9_][A-Za-z0-9_./()+ ,-]*\]")
_WORDS_1_1 = frozenset({"yes", "no", "on", "off", "y", "n"})  # quoted by some dumpers: not here
_LONGEST = 1000  # far below the dumper's width (yamlio.roundtrip): no line is folded


def _plain(value: object) -> str | None:
    if (type(value) is not str or len(value) > _LONGEST or not _PLAIN.fullmatch(value)
            or value.endswith(" ") or "  " in value or value.lower() in _WORDS_1_1
            or resolve(value) is not None):
        return None
    return value


def _layout(like: str) -> tuple[int, bool] | None:
    """The last task's dash column and whether it writes its lists `[a, b]`, when every line
    of it is a plain `key: value` on one line; else None."""
    if not like.startswith("tasks:\n") or any(c in like for c in "\r\t#'\"\ufeff{&*!|>"):
        return None
    lines = like[len("tasks:\n"):].splitlines(keepends=True)
    first = _FIRST.fullmatch(lines[0]) if lines else None
    if first is None:
        return None
    dash = len(first.group(1))
    values = [first.group(3)]
    for line in lines[1:]:
        more = _MORE.fullmatch(line)
        if more is None or len(more.group(1)) != dash + 2:
            return None
        values.append(more.group(3))
    lists = [v for v in values if v.startswith("[")]
    if any(not _PLAIN_LIST.fullmatch(v) for v in lists):
        return None
    if any(not v.startswith("[") and _plain(v) is None for v in values):
        return None
    return dash, bool(lists)


def dump_tasks(like: str, tasks: Sequence[Mapping[str, Any]]) -> str | None:
    """`yamlio.rt_dump({"tasks": tasks}, like=like)` for tasks of plain text and non-empty
    lists of plain text, after a last task (`like`) of plain lines; None otherwise."""
    found = _layout(like)
    if found is None:
        return None
    dash, flow = found
    out = ["tasks:\n"]
    for task in tasks:
        if not task:
            return None
        for n, (key, value) in enumerate(task.items()):
            if type(key) is not str or not re.fullmatch(_KEY, key):
                return None
            if isinstance(value, list):
                items = [_plain(v) for v in value]
                if not flow or not items or None in items:
                    return None
                text = "[" + ", ".join(str(i) for i in items) + "]"
            else:
                plain = _plain(value)
                if plain is None:
                    return None
                text = plain
            lead = " " * dash + "- " if n == 0 else " " * (dash + 2)
            out.append(f"{lead}{key}: {text}\n")
    return "".join(out)
