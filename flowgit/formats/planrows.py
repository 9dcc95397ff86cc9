"""A big plan's task list read straight into rows (issue 17, ADR 0012).

A cold read of a 50,000-task plan parsed it into 50,000 dicts (fastyaml.py), built a `Task`
from each, then turned the tasks into the rows the plan index keeps (core/index.py): about
0.65 s of CPU, most of a cold `status`. Plans that big are written by programs (a generator,
`task add`), one task after another in one layout, so the task list is read here by one
regular expression in C, field by field, into columns, and the rows are zipped from them:

- the `tasks:` key at the start of a line, its items at two spaces (`  - id: ...`), each
  task's other keys at four, one per line, in the order of `Task`'s fields (the order
  `task add` and the generators write), each at most once: `title` (required), then any of
  `description`, `depends_on`, `acceptance`, `priority`, `estimate`, `tags`, `adrs`;
- every value on one line: a plain scalar that the safe loader reads as a string (ruamel's
  own patterns for numbers, booleans and nulls keep the others out), a priority word, or a
  `[a, b]` list of plain strings; ids as `ids.is_valid_id` allows them, each once (any case).

Anything else (a comment or blank line among the tasks, another key, a quoted or typed value,
a value on two lines, another indent, a duplicate id) answers None, and the caller reads the
text as before: the fast YAML path, then ruamel, and `Task.from_dict` with its messages. The
plan's other keys (before and after the task list) are read by `fastyaml.load` alone; when it
cannot read them, also None. tests/test_plan_rows.py holds the rows and the parsed mapping to
the general path's on generated, broken and mutated plans."""
from __future__ import annotations

import re
from typing import Any, Callable

from flowgit.formats import fastyaml
from flowgit.ids import is_valid_id

# core/index.TASK_FIELDS, the order of `Task`'s fields (a test keeps them equal)
FIELDS = ("id", "title", "description", "depends_on", "files", "acceptance", "priority",
          "estimate", "executor", "run", "retry", "wait", "tags", "adrs", "verify")
KEYS = ("id", "title", "description", "depends_on", "acceptance", "priority", "estimate", "tags",
        "adrs")  # the keys read here, in the order they must come
_LIST_KEYS = frozenset({"depends_on", "acceptance", "tags", "adrs"})
_PRIORITIES = {p: p for p in ("high", "medium", "low")}  # one object each: marshal shares it


def _body(pattern: re.Pattern[str]) -> str:
    """One of fastyaml's resolver patterns without its anchors."""
    text = pattern.pattern
    return text[text.index("^") + 1:text.rindex("$")]


_COMPILED: list[re.Pattern[str]] = []


def _task_pattern() -> re.Pattern[str]:
    """One task, its fields in groups (KEYS' order). Compiled on first use: 8 ms."""
    if _COMPILED:
        return _COMPILED[0]
    # what fastyaml._ODD refuses (control characters, line breaks, the byte order mark),
    # written as negated classes: a positive class of those ranges takes 10 times as long to
    # compile
    odd = "\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\ud800-\\udfff\\ufeff\\ufffe\\uffff"
    # a plain scalar: not starting with an indicator, no `: ` or ` #` in it, not ending with
    # `:` or a space; not one ruamel types (a boolean or null word, a number or a date, the
    # merge and value keys): the number patterns are tried only for a text of their characters.
    # Its body is an atomic group, not a possessive `*+` on a group: Python 3.11.2's gives back
    # what it took, and read `title: a:` (which ruamel refuses) as the title `a:`.
    words = "true|True|TRUE|false|False|FALSE|null|Null|NULL|~|<<|="
    numeric = (f"(?=[-+.0-9][-+._: 0-9a-fA-FoxTtZinINF]*+\\n)"
               f"(?x:{_body(fastyaml._FLOAT)}|{_body(fastyaml._INT)}|{_body(fastyaml._TIMESTAMP)})\\n")
    scalar = (f"(?!(?:{words})\\n)(?!{numeric})[^{odd} \\-?:,\\[\\]{{}}#&*!|>'\"%@`]"
              f"(?>(?:[^{odd} :]++|:(?=[^ \\n])| (?=[^#\\n]))*)")
    # a flow list's item: fastyaml._FLOW_ITEM without spaces at its ends; typed ones are
    # found afterwards (`_TYPED_ITEM`)
    stop = "?:,\\[\\]{}#&*!|>'\"%@`"
    item = f"(?!-)[^{odd} {stop}](?:[^{odd}{stop}]*+(?<! ))?"
    flow = f"\\[((?:{item}(?:, {item})*)?)\\]"
    pattern = (f"  - id: ([A-Za-z0-9][A-Za-z0-9._-]{{0,63}})\\n    title: ({scalar})\\n"
               f"(?:    description: ({scalar})\\n)?(?:    depends_on: {flow}\\n)?"
               f"(?:    acceptance: {flow}\\n)?(?:    priority: (high|medium|low)\\n)?"
               f"(?:    estimate: ({scalar})\\n)?(?:    tags: {flow}\\n)?(?:    adrs: {flow}\\n)?")
    _COMPILED.append(re.compile(pattern))
    return _COMPILED[0]


_END = re.compile(r"\n[^ \n]")  # the first line after the list that starts at column 0
# ids.is_valid_id is asked once per shape of id (each digit read as 0: `T-00017` and `T-00042`
# are one shape): its rules are about kinds of characters, never one digit (a test holds it)
_SHAPE = str.maketrans("123456789", "000000000")
_TYPED_ID = re.compile(r"\n(?:true|True|TRUE|false|False|FALSE|null|Null|NULL|[-+.0-9][^\n]*)(?=\n)")
_TYPED_ITEM = re.compile(r"\n(?:true|True|TRUE|false|False|FALSE|null|Null|NULL|~|<<|=|[-+.0-9][^\n]*)(?=\n)")


class Rows:
    """A plan read here: its other keys (`head`, in file order, `before` of them ahead of
    the task list), its tasks as rows in `FIELDS` order, their ids, and the ids they wait on."""

    def __init__(self, head: dict[str, Any], before: int, ids: list[str], rows: list[tuple[Any, ...]],
                 columns: list[list[Any]], needs: set[str]) -> None:
        self.head, self.before, self.ids, self.rows = head, before, ids, rows
        self.needs = needs  # every id a task waits on
        self._columns = columns

    def raw(self) -> dict[str, Any]:
        """The mapping the YAML loaders give for the text (built on demand: the edits' schema
        check reads it)."""
        tasks = []
        cols = self._columns
        for values in zip(*cols):
            task: dict[str, Any] = {}
            for key, value in zip(KEYS, values):
                if value is not None:
                    task[key] = (value.split(", ") if value else []) if key in _LIST_KEYS else value
            tasks.append(task)
        items = list(self.head.items())
        return dict([*items[:self.before], ("tasks", tasks), *items[self.before:]])


def _mapping(text: str, read_number: Callable[[str], Any] | None) -> dict[str, Any] | None:
    """The top-level keys in `text` (a part of the plan around its task list), or None when
    fastyaml cannot read them as a mapping."""
    if fastyaml._ODD.search(text) is not None:
        return None
    if fastyaml._Reader(text.split("\n")).next_line(0)[1] < 0:
        return {}  # nothing but blank lines and comments
    value = fastyaml.load(text, read_number)
    return value if type(value) is dict else None


def read(text: str, read_number: Callable[[str], Any] | None = None) -> Rows | None:
    """The plan `text` when its task list is in the shape described above, else None.
    `read_number`: as for `fastyaml.load` (a number among the plan's other keys)."""
    if text.startswith("tasks:\n"):
        at = 0
    else:
        at = text.find("\ntasks:\n") + 1
        if at == 0:
            return None
    start = at + len("tasks:\n")
    end_mark = _END.search(text, start - 1)
    end = end_mark.start() + 1 if end_mark is not None else len(text)
    if end <= start:
        return None
    parts = _task_pattern().split(text[start:end])
    if any(parts[::10]) or len(parts) < 11:  # something between, before or after the tasks
        return None
    ids = parts[1::10]
    titles, descriptions, deps, acceptance = parts[2::10], parts[3::10], parts[4::10], parts[5::10]
    priorities, estimates, tags, adrs = parts[6::10], parts[7::10], parts[8::10], parts[9::10]
    joined = "\n" + "\n".join(ids) + "\n"
    if not all(map(is_valid_id, set(joined.translate(_SHAPE)[1:-1].split("\n")))) or \
            any(fastyaml.resolve(m.group()[1:]) is not None for m in _TYPED_ID.finditer(joined)):
        return None
    if len(set(joined.lower().split("\n"))) != len(ids) + 1:  # ASCII ids: lower() is their casefold
        return None  # two tasks with one id (in any case): the full path says which
    needs: set[str] = set()  # every id a task waits on
    for column in (deps, acceptance, tags, adrs):
        if column.count(None) == len(column):
            continue
        items = "\n" + "\n".join([s for s in column if s]).replace(", ", "\n") + "\n"
        if any(fastyaml.resolve(m.group()[1:]) is not None for m in _TYPED_ITEM.finditer(items)):
            return None
        if column is deps:
            needs = set(items.split("\n"))
            needs.discard("")
    head_before = _mapping(text[:at], read_number)
    head_after = _mapping(text[end:], read_number) if head_before is not None else None
    if head_before is None or head_after is None or "tasks" in head_before or "tasks" in head_after \
            or head_before.keys() & head_after.keys():
        return None
    n = len(ids)
    empty: tuple[str, ...] = ()
    nothing, none = [empty] * n, [None] * n

    def tuples(column: list[str | None]) -> list[tuple[str, ...]]:
        if column.count(None) == n:
            return nothing
        return [tuple(s.split(", ")) if s else empty for s in column]

    kept: dict[str, str] = {}  # equal estimates as one object (as `_PRIORITIES`): marshal shares them
    rows = list(zip(
        ids, titles, [d or "" for d in descriptions], tuples(deps), nothing, tuples(acceptance),
        [_PRIORITIES[p] if p else "medium" for p in priorities],
        none if estimates.count(None) == n else [e and kept.setdefault(e, e) for e in estimates],
        none, nothing, none, none, tuples(tags), tuples(adrs), nothing))
    columns = [ids, titles, descriptions, deps, acceptance, priorities, estimates, tags, adrs]
    return Rows({**head_before, **head_after}, len(head_before), ids, rows, columns, needs)
