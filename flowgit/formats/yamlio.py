"""YAML in and out: the C safe loader to read, round-trip only to write."""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowgit.errors import InvalidFile

MAX_YAML_BYTES = 8 * 1024 * 1024
# Nesting: a plan needs a handful of levels. libyaml's composer recurses in C and crashes the
# process (no exception) somewhere past 20,000; Python's deepcopy, json and marshal give up
# long before. So nesting is measured before the text reaches the composer.
MAX_YAML_DEPTH = 100
_LEAD = re.compile(r"^[ \t?:-]*", re.M)  # a block level needs a column (or a "- ") more


def _safe_yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=False)
    yaml.Resolver = _resolver_class()
    yaml.Constructor = _constructor_class()
    return yaml


_CONSTRUCTOR: Any = None


def _constructor_class() -> Any:
    """Dates and times stay the text they were written as (`due: 2025-01-31`): JSON output,
    the cache and the schemas all deal in strings."""
    global _CONSTRUCTOR
    if _CONSTRUCTOR is None:
        from ruamel.yaml.constructor import SafeConstructor
        from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
        from ruamel.yaml.resolver import BaseResolver

        text_tag = "tag:yaml.org,2002:str"
        plain = BaseResolver.DEFAULT_SCALAR_TAG  # the one object every untagged string has

        class TextTimestampConstructor(SafeConstructor):
            """A string scalar is its text, taken without ruamel's bookkeeping for each node
            (a third of a 50,000-task plan's load). Anything else (another tag, a merge key, a
            duplicate key) takes ruamel's own path, errors included."""

            def construct_mapping(self, node: Any, deep: bool = False) -> Any:
                if node.__class__ is not MappingNode:
                    return super().construct_mapping(node, deep)
                out: dict[str, Any] = {}
                for key_node, value_node in node.value:
                    if key_node.__class__ is not ScalarNode or (key_node.ctag is not plain
                                                                and key_node.tag != text_tag):
                        return super().construct_mapping(node, deep)
                    key = key_node.value
                    if key in out:
                        return super().construct_mapping(node, deep)
                    if value_node.__class__ is ScalarNode and (value_node.ctag is plain
                                                               or value_node.tag == text_tag):
                        out[key] = value_node.value
                    else:
                        out[key] = self.construct_object(value_node, deep=deep)
                return out

            def construct_sequence(self, node: Any, deep: bool = False) -> Any:
                if node.__class__ is not SequenceNode:
                    return super().construct_sequence(node, deep)
                return [child.value if child.__class__ is ScalarNode and (
                    child.ctag is plain or child.tag == text_tag)
                    else self.construct_object(child, deep=deep) for child in node.value]

        TextTimestampConstructor.add_constructor("tag:yaml.org,2002:timestamp",
                                                 SafeConstructor.construct_yaml_str)
        _CONSTRUCTOR = TextTimestampConstructor
    return _CONSTRUCTOR


_RESOLVER: Any = None


def _resolver_class() -> Any:
    """ruamel's resolver looks the YAML version up again for every scalar, through two failed
    attribute lookups (a third of a 2,000-task plan's load time). With the C parser the
    version is always the default (1.2), so look it up once."""
    global _RESOLVER
    if _RESOLVER is None:
        from ruamel.yaml.resolver import VersionedResolver

        class OneVersionResolver(VersionedResolver):
            @property
            def processing_version(self) -> Any:
                return (1, 2)

            @property
            def versioned_resolver(self) -> Any:
                table = self.__dict__.get("_one_version_table")
                if table is None:
                    table = VersionedResolver.versioned_resolver.fget(self)  # type: ignore[attr-defined]
                    self.__dict__["_one_version_table"] = table
                return table

        _RESOLVER = OneVersionResolver
    return _RESOLVER


def _position(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return f"{mark.line + 1}"
    return "1"


def _first_line(exc: Exception) -> str:
    problem = getattr(exc, "problem", None)
    if problem:
        return str(problem)
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def decode(data: bytes, path: str) -> str:
    if len(data) > MAX_YAML_BYTES:
        raise InvalidFile(
            f"{path}: file is {len(data)} bytes, above the {MAX_YAML_BYTES} byte limit: split it"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidFile(f"{path}:{line}: not valid UTF-8 (byte {exc.start}): save it as UTF-8") from None


def loads(text: str, path: str) -> Any:
    """Parse YAML safely. Aliases are refused so a crafted file cannot expand without bound,
    and nesting deeper than MAX_YAML_DEPTH so a crafted one cannot crash the parser."""
    from flowgit.formats import fastyaml

    value = fastyaml.load(text, read_scalar)  # the plain part of YAML, read without ruamel
    if value is not fastyaml.MISS:
        return value
    from ruamel.yaml.error import YAMLError

    check_shape(text, path)
    try:
        return _safe_yaml().load(text)
    except YAMLError as exc:
        raise InvalidFile(f"{path}:{_position(exc)}: invalid YAML: {_first_line(exc)}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidFile(f"{path}: invalid YAML: {exc}") from None


def read_scalar(text: str) -> Any:
    """One plain scalar (a number) as the safe loader reads it."""
    return _safe_yaml().load(text)


_ALIAS_HINT = re.compile(r"(?:^|[\s\[{,:])\*[^\s,\]}]+", re.M)


_NOT_FLOW_MARK = re.compile(r"[^\[\]{}'\"#!]+")
_FLAT_PAIRS = re.compile(r"\[\]|\{\}")


def _flow_bound(text: str) -> int:
    """At least as deep as `text`'s flow collections nest, found without parsing. Every bracket
    opening one counts, and every closing bracket closes one: while a flow collection is open a
    closing bracket that closes nothing can only sit in a quoted scalar, a comment or a tag
    (plain scalars end at flow indicators), so a quote, `#` or `!` met then gives up, and the
    bound is the count of all opening brackets. A plan's 50,000 `[a, b]` lists bound it by 1."""
    flow = text.count("[") + text.count("{")
    if flow <= MAX_YAML_DEPTH:
        return flow
    marks = _NOT_FLOW_MARK.sub("", text)
    if not _FLAT_PAIRS.sub("", marks):
        return 1  # only `[...]` and `{...}` with no bracket or quote inside
    depth = top = 0
    for char in marks:
        if char == "[" or char == "{":
            depth += 1
            top = max(top, depth)
        elif char == "]" or char == "}":
            depth = max(depth - 1, 0)  # outside any flow collection: text, not structure
        elif depth:
            return flow
    return top


def _widest_lead(text: str, at_least: int) -> int:
    """The widest indentation (with `- `, `? `, `: `) if it is `at_least` columns, else 0."""
    if at_least > 0 and not re.search(f"^[ \t?:-]{{{at_least}}}", text, re.M):
        return 0
    return max((m.end() - m.start() for m in _LEAD.finditer(text)), default=0)


def depth_bound(text: str) -> int:
    """At least as deep as `text` nests, found without parsing: flow levels are bounded by
    _flow_bound, and every block level needs one more column (two levels, a mapping and its
    list, can share one), so that plus twice the widest indentation bounds it. Below
    MAX_YAML_DEPTH the figure is only known to be below it: the indentation is measured only
    when it is wide enough to take the bound past."""
    flow = _flow_bound(text)
    if flow > MAX_YAML_DEPTH:
        return flow
    # the bound passes MAX_YAML_DEPTH only with an indentation this wide: look for that first
    return flow + 2 * _widest_lead(text, (MAX_YAML_DEPTH - flow) // 2) + 2


def check_shape(text: str, path: str) -> None:
    """Refuse aliases and nesting deeper than MAX_YAML_DEPTH. The parser's events are read (it
    does not recurse; the composer does) only when a cheap look cannot rule either out, and
    stop at the first level too deep."""
    deep = depth_bound(text) > MAX_YAML_DEPTH
    if not deep and ("*" not in text or not _ALIAS_HINT.search(text)):
        return
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent

    depth = 0
    try:
        for event in _safe_yaml().parse(text):
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else 1
                    raise InvalidFile(f"{path}:{line}: nested deeper than {MAX_YAML_DEPTH} levels: "
                                      "flowgit files need a few; flatten it")
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
            elif isinstance(event, AliasEvent):
                raise InvalidFile(f"{path}: YAML aliases (*name) are not allowed in flowgit files: "
                                  "write the value out")
    except YAMLError as exc:
        raise InvalidFile(f"{path}:{_position(exc)}: invalid YAML: {_first_line(exc)}") from None
    except (ValueError, OverflowError) as exc:  # the C parser's own limits (a column past size_t)
        raise InvalidFile(f"{path}: invalid YAML: {exc}") from None


def load_file(path: Path, display: str) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidFile(f"{display}: file not found") from None
    return loads(decode(data, display), display)


_RT_CONSTRUCTOR: Any = None


def _rt_constructor_class() -> Any:
    """The round-trip loader keeps dates as dates (so they are written back unquoted), but an
    impossible one (2026-13-45) must be a positioned YAML error, not a ValueError."""
    global _RT_CONSTRUCTOR
    if _RT_CONSTRUCTOR is None:
        from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor

        class CheckedDateConstructor(RoundTripConstructor):
            def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
                try:
                    return super().construct_yaml_timestamp(node, values)
                except ValueError as exc:
                    raise ConstructorError(None, None, f"{node.value!r} is not a real date ({exc}):"
                                           " use YYYY-MM-DD", node.start_mark) from None

        CheckedDateConstructor.add_constructor("tag:yaml.org,2002:timestamp",
                                               CheckedDateConstructor.construct_yaml_timestamp)
        _RT_CONSTRUCTOR = CheckedDateConstructor
    return _RT_CONSTRUCTOR


def rt_positions(text: str) -> Any:
    """The round-trip tree of `text`, for its line numbers only (dates stay text, so an impossible
    one still has a line); None if it does not parse."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import RoundTripConstructor

    class DatesAsText(RoundTripConstructor):
        pass

    DatesAsText.add_constructor("tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str)
    yaml = YAML()
    yaml.Constructor = DatesAsText
    try:
        return yaml.load(text)
    except Exception:  # noqa: BLE001 - line numbers are a nicety; never fail on them
        return None


def roundtrip() -> Any:
    """A YAML instance that keeps comments, key order and quoting."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.Constructor = _rt_constructor_class()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def read_text(path: Path) -> str:
    """A file to edit, as written: its line endings and byte order mark are kept (rt_dump
    puts them back)."""
    return path.read_bytes().decode("utf-8")


@dataclass(frozen=True)
class Layout:
    """How a hand-written file is laid out, beyond what ruamel keeps by itself."""
    crlf: bool = False
    bom: bool = False
    start: bool = False  # an explicit `---`
    mapping: int = 2  # columns a nested mapping is indented
    offset: int = 2  # columns from a key to the dash of its list's items


def layout_of(text: str) -> Layout:
    """Read the layout off the parsed document (so text inside a block scalar, which merely
    looks like YAML, is never taken for it): the first block mapping nested on its own lines
    gives the mapping indent, the first block list the column of its dashes."""
    lines = text.lstrip("\ufeff").splitlines()
    body = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    found: dict[str, int] = {}

    def walk(node: Any) -> None:
        if len(found) == 2 or not hasattr(node, "lc"):
            return
        items: Any = node.items() if isinstance(node, dict) else ()
        for key, value in items:
            if not hasattr(value, "lc") or not value or value.fa.flow_style():
                continue
            key_line, key_col = node.lc.key(key)
            pos: Any = value.lc
            if isinstance(value, dict):
                line, col = pos.key(next(iter(value)))
                if line > key_line and "mapping" not in found:
                    found["mapping"] = col - key_col
            elif isinstance(value, list):
                line, col = pos.item(0)
                dash = lines[line].rfind("-", 0, col) if line < len(lines) else -1
                if line > key_line and dash >= key_col and "offset" not in found:
                    found["offset"] = dash - key_col
            walk(value)
        for item in node if isinstance(node, list) else ():
            walk(item)

    walk(rt_positions(text))
    return Layout(crlf="\r\n" in text, bom=text.startswith("\ufeff"),
                  start=bool(body) and body[0].rstrip() == "---",
                  mapping=found.get("mapping", 2) or 2, offset=found.get("offset", 2))


def rt_load(text: str, path: str) -> Any:
    from ruamel.yaml.error import YAMLError

    check_shape(text.lstrip("\ufeff"), path)
    try:
        return roundtrip().load(text.lstrip("\ufeff"))
    except YAMLError as exc:
        raise InvalidFile(f"{path}:{_position(exc)}: invalid YAML: {_first_line(exc)}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidFile(f"{path}: invalid YAML: {exc}") from None


def rt_dump(data: Any, like: str | None = None) -> str:
    """`data` as YAML; with `like` (the text it was loaded from), laid out as that text was."""
    yaml = roundtrip()
    layout = layout_of(like) if like is not None else Layout()
    yaml.indent(mapping=layout.mapping, sequence=layout.offset + 2, offset=layout.offset)
    yaml.explicit_start = layout.start
    buf = io.StringIO()
    yaml.dump(data, buf)
    out = buf.getvalue()
    if layout.crlf:
        out = out.replace("\r\n", "\n").replace("\n", "\r\n")
    return "\ufeff" + out if layout.bom else out


def dump_new(data: Any) -> str:
    """Dump a fresh document (no comments to keep) in flowgit's house style."""
    return rt_dump(data)
