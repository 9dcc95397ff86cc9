"""A fast path for the YAML that flowgit's files are made of (issue 17, ADR 0012).

ruamel's safe loader spends about 1.7 s of CPU on a 50,000-task plan: the C parser hands
every node to Python (a resolver call, a node object, a constructor call). Most plans use a
small part of YAML: block mappings and lists, one-line plain or simply quoted scalars,
one-line `[a, b]` lists of plain scalars, `|` block text and comments. `load` reads exactly
that part, line by line, and answers `None` for anything else, or for anything it is not
sure of (a tab, a multi-line scalar, a duplicate key, a tag, an anchor, `>` text, a
quoted key, a number it would have to convert): the caller then loads the text with
ruamel, so every error and every unusual document is ruamel's own. What it accepts, it
reads as the safe loader does (tests/test_fast_yaml.py compares the two on generated and
hand-written documents, valid and broken).

Plain scalars are typed by YAML 1.2's rules as ruamel implements them (the patterns below
are ruamel's, compared in the tests): null and booleans are read here, dates stay their
text (yamlio), and numbers are read by ruamel itself, one scalar at a time, cached by text.
"""
from __future__ import annotations

import re
from typing import Any, Callable

MISS: Any = object()  # not this part of YAML: load the text with ruamel
_MAX_DEPTH = 32

# Everything here must be an ordinary character on an ordinary line: tabs, carriage returns,
# the byte order mark, control characters and the breaks libyaml also counts as line ends
# (U+0085, U+2028, U+2029) send the text to ruamel.
_ODD = re.compile("[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_ENTRY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]{0,200}):(?: +(.*))?$")
# a plain scalar's first character: not an indicator, and not one needing care (`-`, `?`, `:`)
_PLAIN_START = frozenset("-?:,[]{}#&*!|>'\"%@` ")
_NUMBER_NEXT = frozenset("0123456789.")  # `-1`, `-.5`: a plain scalar may start with `-`
_FLOW_ITEM = re.compile(r"[^\s\-?:,\[\]{}#&*!|>'\"%@`][^?:,\[\]{}#&*!|>'\"%@`]*")
_SQ = re.compile(r"'((?:[^']|'')*)'( *(?: #.*)?)$")
_DQ = re.compile(r'"([^"\\]*)"( *(?: #.*)?)$')
_COMMENT_ONLY = re.compile(r" *(?: #.*)?$")

# ruamel's implicit resolvers for YAML 1.2 (ruamel/yaml/resolver.py), by first character
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$", re.X)
_FLOAT = re.compile(r"""^(?:
         [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""", re.X)
_INT = re.compile(r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0o?[0-7_]+
        |[-+]?[0-9_]+
        |[-+]?0x[0-9a-fA-F_]+)$""", re.X)
_TIMESTAMP = re.compile(r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
        |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
        (?:[Tt]|[ \t]+)[0-9][0-9]?
        :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
        (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""", re.X)
_NULL = re.compile(r"""^(?: ~
        |null|Null|NULL
        | )$""", re.X)
_MERGE = re.compile(r"^(?:<<)$")
_VALUE = re.compile(r"^(?:=)$")
_YAML = re.compile(r"^(?:!|&|\*)$")
BOOL, FLOAT, INT, TIMESTAMP, NULL, MERGE, VALUE, YAML = (
    "bool", "float", "int", "timestamp", "null", "merge", "value", "yaml")
_DIGIT = [(FLOAT, _FLOAT), (INT, _INT), (TIMESTAMP, _TIMESTAMP)]
RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    **{c: [(BOOL, _BOOL)] for c in "tTfF"},
    **{c: [(FLOAT, _FLOAT), (INT, _INT)] for c in "-+"},
    **{c: _DIGIT for c in "0123456789"},
    ".": [(FLOAT, _FLOAT)], "<": [(MERGE, _MERGE)], "=": [(VALUE, _VALUE)],
    **{c: [(NULL, _NULL)] for c in "~nN"}, "": [(NULL, _NULL)],
    **{c: [(YAML, _YAML)] for c in "!&*"},
}


_TYPED_START = frozenset(RESOLVERS) - {""}  # a plain scalar starting otherwise is a string


_BOOL_WORDS = frozenset({"true", "True", "TRUE", "false", "False", "FALSE"})  # _BOOL's
_NULL_WORDS = frozenset({"~", "null", "Null", "NULL", ""})  # _NULL's (verbose: spaces ignored)
# every character _FLOAT, _INT and _TIMESTAMP can match: a scalar with another is a string
_NUMBER_CHARS = frozenset("0123456789+-._: \tabcdefABCDEFoxTtZinINF")


def resolve(text: str) -> str | None:
    """The implicit tag of a plain scalar (the suffix after `tag:yaml.org,2002:`), None for a
    string: the first pattern of its first character that matches, as ruamel's resolver. The
    words of the boolean and null patterns are looked up, and a scalar with a character no
    number or date has is a string without trying the patterns (one line: no `$` before a
    newline to care for)."""
    rules = RESOLVERS.get(text[:1])
    if rules is None:
        return None
    tag = rules[0][0]
    if tag == BOOL:
        return BOOL if text in _BOOL_WORDS else None
    if tag == NULL:
        return NULL if text in _NULL_WORDS else None
    if tag in (FLOAT, INT) and not _NUMBER_CHARS.issuperset(text):
        return None
    for tag, pattern in rules:
        if pattern.match(text):
            return tag
    return None


class _Miss(Exception):
    """Not the part of YAML read here."""


_NUMBERS: dict[str, Any] = {}
NUMBERS_KEPT = 4096
_READ_NUMBER: list[Callable[[str], Any]] = []  # set by `load` (a race only makes a miss)


def _typed(text: str, tag: str) -> Any:
    if tag == NULL:
        return None
    if tag == BOOL:
        return text.lower() == "true"
    if tag == TIMESTAMP:
        return text  # dates stay the text they were written as (yamlio's constructor)
    if tag in (INT, FLOAT) and _READ_NUMBER:
        value = _NUMBERS.get(text, MISS)
        if value is MISS:
            try:
                value = _READ_NUMBER[0](text)
            except Exception:  # noqa: BLE001 - whatever it is, the whole text goes to ruamel
                raise _Miss from None
            if len(_NUMBERS) >= NUMBERS_KEPT:  # a long-lived process (watch, board) reads many files
                _NUMBERS.clear()
            _NUMBERS[text] = value
        return value
    raise _Miss


def _plain(text: str) -> Any:
    """A one-line plain scalar in block context (comment already cut), or _Miss."""
    if text[:1] in _PLAIN_START and not (text[:1] == "-" and text[1:2] in _NUMBER_NEXT) \
            or ": " in text or text.endswith(":"):
        raise _Miss
    tag = resolve(text)
    return text if tag is None else _typed(text, tag)


def _value(rest: str) -> Any:
    """The scalar or flow list that ends a line (`rest`: what follows `key: ` or `- `)."""
    first = rest[:1]
    if first == "[":
        end = rest.find("]")
        if end < 0 or not _COMMENT_ONLY.match(rest, end + 1):
            raise _Miss
        inner = rest[1:end]
        if not inner.strip():
            return []
        out = []
        for item in inner.split(","):
            item = item.strip(" ")
            if not _FLOW_ITEM.fullmatch(item):
                raise _Miss
            tag = resolve(item)
            out.append(item if tag is None else _typed(item, tag))
        return out
    if first == "'":
        m = _SQ.match(rest)
        if m is None:
            raise _Miss
        return m.group(1).replace("''", "'")
    if first == '"':
        m = _DQ.match(rest)
        if m is None:
            raise _Miss
        return m.group(1)
    cut = rest.find(" #")
    if cut >= 0:
        rest = rest[:cut]
    return _plain(rest.rstrip(" "))


class _Reader:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.keys: dict[str, str] = {}

    def next_line(self, i: int) -> tuple[int, int]:
        """The next line at or after `i` that is neither blank nor a comment, and its indent
        (len(lines) and -1 at the end)."""
        lines = self.lines
        n = len(lines)
        while i < n:
            line = lines[i]
            body = line.lstrip(" ")
            if body and body[0] != "#":
                return i, len(line) - len(body)
            i += 1
        return n, -1

    def node(self, i: int, indent: int, depth: int) -> tuple[Any, int]:
        """The block collection whose first line is line `i`, at `indent`."""
        if depth > _MAX_DEPTH:
            raise _Miss
        line = self.lines[i]
        if line.startswith("- ", indent) or len(line) == indent + 1 and line.endswith("-"):
            return self.sequence(i, indent, depth)
        m = _ENTRY.match(line, indent)
        if m is None:
            raise _Miss
        return self.mapping(i, indent, m.group(1), m.group(2), depth)

    def key(self, text: str) -> str:
        known = self.keys.get(text)
        if known is None:
            if resolve(text) is not None:
                raise _Miss  # `true:`, `null:`: not a string key
            known = self.keys[text] = text
        return known

    def mapping(self, i: int, indent: int, key: str, rest: str | None, depth: int) -> tuple[Any, int]:
        """The block mapping at `indent` whose first entry (`key`, `rest`) is on line `i`."""
        out: dict[str, Any] = {}
        lines, keys, end = self.lines, self.keys, len(self.lines)
        special, typed = _PLAIN_START, _TYPED_START
        while True:
            known = keys.get(key)
            if known is None:
                known = self.key(key)
            if known in out:
                raise _Miss  # a duplicate key: ruamel's error
            rest = rest.rstrip(" ") if rest else ""
            if rest and rest[0] not in special and ": " not in rest and " #" not in rest \
                    and rest[-1] != ":":  # a one-line plain scalar (most values)
                tag = resolve(rest) if rest[0] in typed else None
                value: Any = rest if tag is None else _typed(rest, tag)
            elif rest[:1] == "|":
                value, i, at = self.literal(i + 1, indent, rest)
                out[known] = value
                if at != indent:
                    if at > indent:
                        raise _Miss
                    return out, i
                m = _ENTRY.match(lines[i], indent)
                if m is None:
                    raise _Miss
                key, rest = m.groups()
                continue
            elif rest and rest[0] != "#":
                value = _value(rest)
            else:
                value = MISS
            i += 1
            line = lines[i] if i < end else ""
            body = line.lstrip(" ")
            if body and body[0] != "#":
                at = len(line) - len(body)
            else:
                i, at = self.next_line(i)
            if value is MISS:  # nothing after the key: a nested block, or null
                if at > indent:
                    value, i = self.node(i, at, depth + 1)
                    i, at = self.next_line(i)
                elif at == indent and lines[i].startswith("- ", at):
                    value, i = self.sequence(i, at, depth + 1)  # a list at its key's indent
                    i, at = self.next_line(i)
                else:
                    value = None
            out[known] = value
            if at != indent:
                if at > indent:
                    raise _Miss  # a continuation line, or an error: ruamel says which
                return out, i
            m = _ENTRY.match(lines[i], indent)
            if m is None:
                raise _Miss
            key, rest = m.groups()

    def sequence(self, i: int, indent: int, depth: int) -> tuple[Any, int]:
        """The block list whose first `- ` is on line `i`, at `indent`."""
        out: list[Any] = []
        lines = self.lines
        while True:
            line = lines[i]
            if not line.startswith("- ", indent):
                raise _Miss  # `-` alone (an empty item or a nested block) or `-x`
            body = line[indent + 2:].lstrip(" ")
            col = len(line) - len(body)
            m = _ENTRY.match(line, col)
            if m is not None:
                if depth + 1 > _MAX_DEPTH:
                    raise _Miss
                value, i = self.mapping(i, col, m.group(1), m.group(2), depth + 1)
                i, at = self.next_line(i)
            else:
                if body[:1] in ("|", "#", "") or body[:1] == "-" and body[1:2] not in _NUMBER_NEXT:
                    raise _Miss
                value = _value(body)
                i, at = self.next_line(i + 1)
            out.append(value)
            if at != indent:
                if at > indent:
                    raise _Miss
                return out, i
            if not lines[i].startswith("- ", indent):
                return out, i  # the next key of the mapping this list (at its indent) is in

    def literal(self, i: int, indent: int, header: str) -> tuple[str, int, int]:
        """A `|` or `|-` block scalar of a mapping at `indent` whose text starts at line `i`
        (the line after its header), and the next line that is neither blank nor a comment."""
        if header not in ("|", "|-"):
            raise _Miss  # `|+`, indentation indicators, a comment on the header line
        lines = self.lines
        start = j = i
        first = None
        n = len(lines)
        while j < n:
            body = lines[j].lstrip(" ")
            if body:
                first = len(lines[j]) - len(body)
                break
            j += 1
        if first is None or first <= indent:
            text = ""
            nxt, at = self.next_line(start)
            return text, nxt, at
        content: list[str] = []
        j = start
        while j < n:
            line = lines[j]
            body = line.lstrip(" ")
            width = len(line) - len(body)
            if body:
                if width < first:
                    break
                content.append(line[first:])
            else:
                if width > first:
                    raise _Miss  # a line of spaces only, wider than the text: ruamel decides
                content.append("")
            j += 1
        broken = j < n or not lines[-1]  # the text's last line ends with a line break
        while content and not content[-1]:
            content.pop()
            broken = True
        text = "\n".join(content)
        if header == "|" and broken:
            text += "\n"
        nxt, at = self.next_line(j)
        return text, nxt, at


def load(text: str, read_number: Callable[[str], Any] | None = None) -> Any:
    """The document `text` as the safe loader reads it, or MISS when it is not in the part of
    YAML read here (including every document the safe loader refuses). `read_number`: the
    safe loader reading one scalar (without it, a number is a miss)."""
    if _ODD.search(text) is not None:
        return MISS
    _READ_NUMBER[:] = [read_number] if read_number is not None else []
    lines = text.split("\n")
    reader = _Reader(lines)
    i, at = reader.next_line(0)
    if at < 0:
        return MISS  # empty, or comments only
    try:
        value, i = reader.node(i, at, 1)
        if reader.next_line(i)[1] >= 0:
            return MISS
    except (_Miss, RecursionError):
        return MISS
    return value
