"""Validate loaded .flow/ files against the JSON Schemas and explain each error in one line."""
from __future__ import annotations

import datetime as _dt
import difflib
import functools
import json
import math
import re
from typing import Any, Callable, Iterable, cast

from flowgit.core.shown import got as _got
from flowgit.core.shown import show as _show
from flowgit.formats import taskfiles, yamlio

KINDS = ("plan", "spec", "adr", "config", "event")

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

Location = tuple[Any, ...]
Problem = tuple[Location, str]


@functools.lru_cache(maxsize=None)
def load_schema(kind: str) -> dict[str, Any]:
    """Return the JSON Schema for `kind` (plan, spec, adr, config, event); shared, do not mutate."""
    if kind not in KINDS:
        raise ValueError(f"unknown schema kind {kind!r} (known: {', '.join(KINDS)})")
    name = f"{kind}.json"
    from flowgit import resources

    text = resources.read_text("schemas", name)
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.lru_cache(maxsize=None)
def _flat_schema(kind: str) -> dict[str, Any]:
    """The `kind` schema with its local `#/$defs/...` references inlined (about 2x faster)."""
    schema = load_schema(kind)
    flat: dict[str, Any] = _inline(schema, schema.get("$defs", {}), 0)
    return flat


def _end_anchor(pattern: Any) -> Any:
    """In JSON Schema (ECMA-262) `$` is the end of the text; in Python it also matches before a
    final newline, which would let an id like "T-1\\n" through. `\\Z` says what the schema means."""
    if isinstance(pattern, str) and pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + "\\Z"
    return pattern


def _inline(node: Any, defs: dict[str, Any], depth: int) -> Any:
    """Replace `{"$ref": "#/$defs/x"}` by a copy of the definition, recursively."""
    if depth > 50:
        raise ValueError("schema $ref nesting too deep (recursive definition?)")
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs:
            target = _inline(defs[ref[8:]], defs, depth + 1)
            rest = {k: _inline(v, defs, depth) for k, v in node.items() if k != "$ref"}
            if set(rest) <= _ANNOTATIONS:
                return {**target, **rest}
            return {**rest, "allOf": [target, *rest.get("allOf", [])]}
        return {
            k: _end_anchor(v) if k == "pattern" else
            v if k in ("enum", "const") else _inline(v, defs, depth)
            for k, v in node.items()
            if k != "$defs"
        }
    if isinstance(node, list):
        return [_inline(v, defs, depth) for v in node]
    return node


_DATE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def _is_real_date(value: object) -> bool:
    """A string date must name a day that exists (the schema's pattern only checks its shape)."""
    if not isinstance(value, str) or not _DATE_SHAPE.match(value):
        return True  # not a string, or not shaped like a date: the type or pattern says so
    try:
        _dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def _validator(kind: str) -> Any:
    """Return the prebuilt Draft 2020-12 validator for `kind`; of the formats, dates are checked."""
    from jsonschema import Draft202012Validator, FormatChecker, validators

    dates = FormatChecker(formats=())
    dates.checks("date")(_is_real_date)
    types = Draft202012Validator.TYPE_CHECKER.redefine(
        "number", lambda checker, value: _is_type(value, "number"))
    cls = validators.extend(Draft202012Validator, type_checker=types)
    return cls(_flat_schema(kind), format_checker=dates)


@functools.lru_cache(maxsize=None)
def _fast_check(kind: str) -> Callable[[Any], bool]:
    """A compiled yes/no check that only answers True when jsonschema would find no error."""
    try:
        return _compile(_flat_schema(kind))
    except _Unsupported:
        return _never


def schema_errors(kind: str, data: object, text: str | None, path: str) -> list[str]:
    """Validate `data` against the `kind` schema; one `path:line: field: message` line per error."""
    problems = _problems(kind, data)
    if not problems:
        return []
    if text is None:
        return _unique(f"{path}: {_field(loc)}: {msg}" for loc, msg in problems)
    root = yamlio.rt_positions(text)
    numbered = [(_line(root, loc), _field(loc), msg) for loc, msg in problems]
    numbered.sort(key=lambda item: item[0])
    return _unique(f"{path}:{line}: {field}: {msg}" for line, field, msg in numbered)


def event_errors(obj: object, path: str, lineno: int) -> list[str]:
    """Check one decoded event line as every reader does (`flowgit.core.events.check_event`:
    the envelope of schemas/event.json, and the fields each known type's fold reads); one
    `path:lineno: field: message` line per problem."""
    from flowgit.core.events import check_event

    return _unique(f"{path}:{lineno}: {problem}" for problem in check_event(obj))


def _unique(lines: Iterable[str]) -> list[str]:
    """Drop repeated lines, keeping the first of each."""
    return list(dict.fromkeys(lines))


def _problems(kind: str, data: object) -> list[Problem]:
    """Collect (location, message) pairs for every schema error in `data`."""
    if _fast_check(kind)(data):
        return []
    validator = _validator(kind)
    try:
        errors = list(validator.iter_errors(data))
        found: list[Problem] = []
    except TypeError:  # a non-string mapping key (YAML `1: x`) breaks patternProperties
        found = []
        data = _string_keys_only(data, (), found)
        errors = list(validator.iter_errors(data))
    for error in errors:
        found.extend(_explain(error))
    if kind == "plan":  # a refused `files:` entry names its task and why
        found = [taskfiles.explain(data, loc, msg) for loc, msg in found]
    return found


def _string_keys_only(value: object, loc: Location, found: list[Problem]) -> object:
    """Copy `value` without non-string keys, recording an error for each one dropped."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, str):
                out[key] = _string_keys_only(item, loc + (key,), found)
            else:
                found.append((loc + (key,), f"key {key!r} is not a string: quote it"))
        return out
    if isinstance(value, list):
        return [_string_keys_only(item, loc + (i,), found) for i, item in enumerate(value)]
    return value


def _explain(error: Any) -> list[Problem]:
    """Turn one jsonschema error into short (location, message) pairs that say what to do."""
    kind = error.validator
    inst = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    loc: Location = tuple(error.absolute_path)
    if "propertyNames" in error.absolute_schema_path:
        loc = loc + (inst,)
    if kind == "additionalProperties" and schema.get("additionalProperties") is False:
        return _unknown_keys(inst, schema, loc)
    if kind == "required" and isinstance(inst, dict):
        missing = [k for k in error.validator_value if k not in inst]
        return [(loc, f"missing required key {k!r}") for k in missing]
    if kind in ("anyOf", "oneOf"):
        branch = _matching_branch(error)
        if branch is not None:
            return [p for sub in branch for p in _explain(sub)]
        what = schema.get("description") or "one of the allowed forms"
        if error.context:
            return [(loc, f"expected {what}, got {_got(inst)}")]
        return [(loc, f"expected {what}")]
    if kind == "type":
        return _type_problem(inst, schema, error.validator_value, loc)
    if kind == "not":
        what = schema.get("description") or "something else"
        return [(loc, f"expected {what}, got {_got(inst)}")]
    if kind == "enum":
        allowed = ", ".join(v if isinstance(v, str) else _show(v) for v in error.validator_value)
        if isinstance(inst, (str, int, float, bool)) or inst is None:
            return [(loc, f"{_show(inst)} is not one of: {allowed}")]
        return [(loc, f"expected one of: {allowed}, got {_got(inst)}")]
    if kind == "const":
        return [(loc, f"must be {_show(error.validator_value)}, got {_got(inst)}")]
    if kind == "format" and error.validator_value == "date":
        return [(loc, f"{_show(inst)} is not a day in the calendar: use YYYY-MM-DD")]
    if kind == "pattern":
        title = schema.get("title", "value")
        rule = str(schema.get("description", f"match {error.validator_value}"))
        rule = rule.split(": ", 1)[1] if ": " in rule else rule
        return [(loc, f"invalid {title} {_show(inst)}: use {rule}")]
    if kind in ("minLength", "minItems", "minProperties") and error.validator_value == 1:
        return [(loc, "must not be empty")]
    bounds = {
        "minimum": ">=",
        "exclusiveMinimum": ">",
        "maximum": "<=",
        "exclusiveMaximum": "<",
    }
    if kind in bounds:
        return [(loc, f"must be {bounds[kind]} {error.validator_value}, got {_show(inst)}")]
    return [(loc, str(error.message)[:200])]


def _unknown_keys(inst: Any, schema: dict[str, Any], loc: Location) -> list[Problem]:
    """One problem per key not allowed by `properties` / `patternProperties`."""
    allowed = list(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    shown = ", ".join(allowed + (["x-*"] if "^x-" in patterns else []))
    out: list[Problem] = []
    for key in inst:
        if not isinstance(key, str) or key in allowed:
            continue
        if any(re.search(p, key) for p in patterns):
            continue
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if not close and len(key) >= 3:
            close = [k for k in allowed if k.startswith(key) or key.startswith(k)][:1]
        hint = f", did you mean {close[0]!r}?" if close else ""
        out.append((loc + (key,), f"unknown key {key!r}{hint} (allowed: {shown})"))
    return out


def _matching_branch(error: Any) -> list[Any] | None:
    """The errors of the single anyOf/oneOf branch whose type fits the instance, if exactly one."""
    branches: dict[Any, list[Any]] = {}
    for sub in error.context or ():
        if sub.relative_schema_path:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [
        subs
        for subs in branches.values()
        if not any(s.validator == "type" and not s.relative_path for s in subs)
    ]
    return fitting[0] if len(fitting) == 1 else None


def _type_problem(inst: Any, schema: dict[str, Any], expected: Any, loc: Location) -> list[Problem]:
    """Explain a type mismatch; YAML dates in date fields are accepted."""
    if schema.get("format") == "date" and type(inst) is _dt.date:
        return []
    names = [expected] if isinstance(expected, str) else list(expected)
    want = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
    desc = schema.get("description")
    if "format" in schema and desc:
        return [(loc, f"expected {desc}, got {_got(inst)}")]
    if desc and "pattern" not in schema and "$id" not in schema:
        want = f"{want} ({desc})"
    msg = f"expected {want}, got {_got(inst)}"
    if "string" in names and isinstance(inst, (bool, int, float, _dt.date)):
        msg += ": quote it"
    return [(loc, msg)]


def _field(loc: Location) -> str:
    """Render a location like `tasks[3].depends_on[0]`, or `(top)`."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _SIMPLE_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "(top)"


def _line(root: Any, loc: Location) -> int:
    """1-based line of `loc` in the round-trip tree, or of its nearest parent with one, or 1."""
    node = root
    line = 0
    for part in loc:
        try:
            # ruamel's CommentedMap/CommentedSeq carry `lc` (line/column) on top of dict/list
            if isinstance(node, dict):
                pos = cast(Any, node).lc.key(part)
            elif isinstance(node, list):
                pos = cast(Any, node).lc.item(part)
            else:
                break
            node = node[part]
        except Exception:  # noqa: BLE001 - missing position info: keep the parent's line
            break
        if pos is None or pos[0] is None:
            break
        line = pos[0]
    return line + 1


# A small compiler for the subset of JSON Schema our schemas use. It is a fast path only: a
# keyword it does not know disables it for that kind, and then jsonschema does all the work.


class _Unsupported(Exception):
    """The schema uses a keyword the fast path does not implement."""


_ANNOTATIONS = frozenset(
    {"title", "description", "$comment", "$schema", "$id", "default", "examples"}
)
_DATE_KEYWORDS = frozenset({"type", "format", "pattern", "minLength", "maxLength"})


def _never(value: Any) -> bool:
    """The `false` schema; also the whole check when the fast path cannot be used."""
    return False


def _always(value: Any) -> bool:
    """The `true` schema."""
    return True


def _is_type(value: Any, name: str) -> bool:
    """JSON type test with jsonschema's rules (bool is not a number)."""
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":  # JSON has no infinity or NaN, which YAML's .inf and .nan would be
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    return False


def _equal(a: Any, b: Any) -> bool:
    """Scalar equality where true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return bool(a == b)


def _is_number(value: Any) -> bool:
    """A number that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _compile(schema: Any) -> Callable[[Any], bool]:
    """Compile a (ref-free) schema into a predicate; raise _Unsupported on unknown keywords."""
    if schema is True:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict):
        raise _Unsupported(repr(schema))
    checks: list[Callable[[Any], bool]] = []
    for key, val in schema.items():
        if key in _ANNOTATIONS or key in ("then", "else"):
            continue
        maker = _MAKERS.get(key)
        if maker is None:
            raise _Unsupported(key)
        checks.append(maker(val, schema))
    date_ok = schema.get("format") == "date" and set(schema) - _ANNOTATIONS <= _DATE_KEYWORDS

    def check(value: Any) -> bool:
        if date_ok and type(value) is _dt.date:
            return True
        return all(c(value) for c in checks)

    return check


def _k_type(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    names = [val] if isinstance(val, str) else list(val)
    return lambda v: any(_is_type(v, n) for n in names)


def _k_properties(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    props = [(k, _compile(sub)) for k, sub in val.items()]

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        return all(c(v[k]) for k, c in props if k in v)

    return check


def _k_pattern_properties(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    pats = [(re.compile(p), _compile(sub)) for p, sub in val.items()]

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for key, item in v.items():
            if not isinstance(key, str):
                return False
            for rx, c in pats:
                if rx.search(key) and not c(item):
                    return False
        return True

    return check


def _k_additional(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    known = set(schema.get("properties", {}))
    pats = [re.compile(p) for p in schema.get("patternProperties", {})]
    sub = _compile(val)

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for key, item in v.items():
            if not isinstance(key, str):
                return False
            if key in known or any(rx.search(key) for rx in pats):
                continue
            if not sub(item):
                return False
        return True

    return check


def _k_required(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    names = list(val)
    return lambda v: not isinstance(v, dict) or all(n in v for n in names)


def _k_items(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    sub = _compile(val)
    return lambda v: not isinstance(v, list) or all(sub(x) for x in v)


def _k_property_names(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    sub = _compile(val)
    return lambda v: not isinstance(v, dict) or all(sub(k) for k in v)


def _k_enum(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    options = list(val)
    return lambda v: any(_equal(v, o) for o in options)


def _k_const(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    return lambda v: _equal(v, val)


def _k_format(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    return _is_real_date if val == "date" else (lambda v: True)


def _k_pattern(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    rx = re.compile(val)
    return lambda v: not isinstance(v, str) or rx.search(v) is not None


def _k_min_length(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    return lambda v: not isinstance(v, str) or len(v) >= val


def _k_max_length(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    return lambda v: not isinstance(v, str) or len(v) <= val


def _k_min_items(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    return lambda v: not isinstance(v, list) or len(v) >= val


def _k_minimum(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    return lambda v: not _is_number(v) or v >= val


def _k_exclusive_minimum(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    return lambda v: not _is_number(v) or v > val


def _k_maximum(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    return lambda v: not _is_number(v) or v <= val


def _k_any_of(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    subs = [_compile(s) for s in val]
    return lambda v: any(c(v) for c in subs)


def _k_all_of(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    subs = [_compile(s) for s in val]
    return lambda v: all(c(v) for c in subs)


def _k_one_of(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    subs = [_compile(s) for s in val]
    return lambda v: sum(1 for c in subs if c(v)) == 1


def _k_not(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    sub = _compile(val)
    return lambda v: not sub(v)


def _k_if(val: Any, schema: dict[str, Any]) -> Callable[[Any], bool]:
    cond = _compile(val)
    then = _compile(schema.get("then", True))
    other = _compile(schema.get("else", True))
    return lambda v: then(v) if cond(v) else other(v)


_MAKERS: dict[str, Callable[[Any, dict[str, Any]], Callable[[Any], bool]]] = {
    "type": _k_type,
    "properties": _k_properties,
    "patternProperties": _k_pattern_properties,
    "additionalProperties": _k_additional,
    "required": _k_required,
    "items": _k_items,
    "propertyNames": _k_property_names,
    "enum": _k_enum,
    "const": _k_const,
    "pattern": _k_pattern,
    "format": _k_format,
    "minLength": _k_min_length,
    "maxLength": _k_max_length,
    "minItems": _k_min_items,
    "minimum": _k_minimum,
    "exclusiveMinimum": _k_exclusive_minimum,
    "maximum": _k_maximum,
    "anyOf": _k_any_of,
    "allOf": _k_all_of,
    "oneOf": _k_one_of,
    "not": _k_not,
    "if": _k_if,
}


__all__ = ["KINDS", "event_errors", "load_schema", "schema_errors"]
