"""Event lines: ULIDs, canonical order, parsing. Pure; the files are `flowgit.store.files`."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from random import SystemRandom
from typing import Any, Callable, Iterable, Mapping

from flowgit.core.shown import got as _got
from flowgit.core.shown import show as _show
from flowgit.errors import InvalidFile
from flowgit.ids import branch_problem

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM = SystemRandom()  # os.urandom, as secrets.randbits, without importing hashlib (ADR 0007)

TASK_EVENTS = frozenset(
    {"task.claimed", "task.started", "task.heartbeat", "task.done", "task.failed", "task.review",
     "task.skipped", "task.released", "task.note", "task.log", "task.wait", "task.snapshot", "task.retried"}
)
PLAN_EVENTS = frozenset(
    {"plan.created", "plan.phase", "plan.approved", "plan.rejected", "plan.task_failed",
     "checkpoint.validation", "checkpoint.approved", "checkpoint.changes_requested", "plan.explored",
     "signal.received", "signal.handled", "schedule.ran", "plan.snapshot", "plan.migrated",
     "plan.drafted"})
KNOWN_TYPES = TASK_EVENTS | PLAN_EVENTS
PLAN_LOG = "_plan"


def new_ulid(now: float) -> str:
    millis = int(now * 1000)
    value = (millis << 80) | _RANDOM.getrandbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


# Event times are RFC 3339 UTC text within years 1-9999 (or, where a field allows it, seconds
# since the epoch in that range). A number of seconds is a float: the last microsecond of year
# 9999 rounds up into year 10000, so the top is a second short of it.
MIN_TIME = datetime(1, 1, 1, tzinfo=timezone.utc).timestamp()
MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z\Z")


def format_time(ts: float) -> str:
    """RFC 3339 UTC; a time outside years 1-9999 (or not a number) shows as the nearest end."""
    if not MIN_TIME <= ts <= MAX_TIME:
        ts = MAX_TIME if ts > MAX_TIME else MIN_TIME
    try:
        moment = datetime.fromtimestamp(ts, timezone.utc)
    except (OverflowError, OSError, ValueError):  # platforms whose time_t stops short of year 1
        moment = _EPOCH + timedelta(seconds=ts)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S.%f}Z"  # %Y does not pad year 1


def parse_time(text: str) -> float:
    """An RFC 3339 UTC time as seconds (ValueError if it is not one)."""
    return event_time(text)


def event_time(value: object) -> float:
    """An event's time field as seconds: RFC 3339 UTC text or a finite number, within years
    1-9999. ValueError says what is wrong (the checker refuses such lines before the fold)."""
    if isinstance(value, str):
        shape = _AT.match(value)
        if shape is None:
            raise ValueError(f"invalid time {_show(value)}: use an RFC 3339 UTC time like "
                             "2026-11-22T10:00:00.000000Z")
        micros = (shape.group(1) or ".")[1:7].ljust(6, "0")  # datetime keeps microseconds
        try:
            moment = datetime.fromisoformat(f"{value[:19]}.{micros}+00:00")
        except ValueError:
            raise ValueError(f"{_show(value)} is not a time in the calendar") from None
        return moment.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not MIN_TIME <= value <= MAX_TIME:  # NaN and the infinities fail this too
            raise ValueError(f"{_show(value)} is not a time within years 1-9999")
        return float(value)
    raise ValueError(f"expected a time, got {_got(value)}")


MAX_CLOCK = 2 ** 53 - 1  # the largest clock a reader takes; the writer's check takes MAX_INT (ADR 0014)


@dataclass(frozen=True)
class Event:
    """One line of a log."""

    id: str
    type: str
    plan: str
    task: str | None
    actor: str
    at: str
    clock: int
    data: Mapping[str, Any]

    @property
    def sort_key(self) -> tuple[int, str, str]:
        return (self.clock, self.actor, self.id)

    @property
    def timestamp(self) -> float:
        return event_time(self.at)

    @property
    def known(self) -> bool:
        """A type this version folds; others are kept in the log and ignored."""
        return self.type in KNOWN_TYPES

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "plan": self.plan, "task": self.task,
                "actor": self.actor, "at": self.at, "clock": self.clock, "data": dict(self.data)}

    def to_line(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> Event:
        """An event from a decoded line; InvalidFile names the first problem `check_event` finds."""
        problems = check_event(obj)
        if problems:
            raise InvalidFile(f"{where}: {problems[0]}")
        return cls._checked(obj)

    @classmethod
    def _checked(cls, obj: Mapping[str, Any]) -> Event:
        return cls(obj["id"], obj["type"], obj["plan"], obj.get("task"), obj["actor"], obj["at"],
                   obj["clock"], obj.get("data") or {})


def make_event(type_: str, plan: str, task: str | None, actor: str, clock: int,
               data: Mapping[str, Any] | None, now: float) -> Event:
    """An event at `now` (the caller's clock: the core reads none)."""
    return Event(new_ulid(now), type_, plan, task, actor, format_time(now), clock, dict(data or {}))


@dataclass(frozen=True)
class BadLine:
    """A complete line the checker refused: never folded. `where` is "path:line"."""

    where: str
    problem: str


@dataclass(frozen=True)
class LogRead:
    """A log as read: its events, whether its end is torn, and the lines not folded."""

    events: tuple[Event, ...]
    torn: bool           # the last line had no newline: a crash mid-append
    good_bytes: int      # length of the complete part
    bad: tuple[BadLine, ...] = ()
    unknown: tuple[BadLine, ...] = ()  # events of types this version does not know (kept, ignored)

    @property
    def unreadable(self) -> str | None:
        """Where the first refused line is ("path:line"), or None."""
        return self.bad[0].where if self.bad else None

    def check(self) -> None:
        """For callers that rewrite the log (compaction): refuse it while a line is unreadable."""
        if self.bad:
            raise InvalidFile(f"{self.bad[0].where}: {self.bad[0].problem}: fix or remove the line "
                              "(`flowgit validate` lists every one)")


_ANY = object()


def parse_log(data: bytes, display: str, plan: str | None = None, task: Any = _ANY,
              limit: int = MAX_CLOCK) -> LogRead:
    """Parse complete lines; a last line without '\\n' is reported as torn, never parsed. A line
    that `check_event` refuses (or that belongs to another plan or task than `plan`/`task`, when
    given) is never folded: it is listed in `bad`, so readers can hold what it might change.
    Never raises on content. A repeated event id is read once. `limit`: the largest clock."""
    end = data.rfind(b"\n") + 1
    torn = end < len(data)
    events: list[Event] = []
    bad: list[BadLine] = []
    unknown: list[BadLine] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(data[:end].split(b"\n")[:-1], start=1):
        if not raw.strip():
            continue
        where = f"{display}:{lineno}"
        try:
            obj = load_line(raw)
        except ValueError as exc:
            bad.append(BadLine(where, f"not a JSON event line ({exc})"))
            continue
        problems = check_event(obj, limit)
        if not problems and (plan is not None or task is not _ANY):
            problems = owner_problems(obj, plan, task)
        if problems:
            bad.append(BadLine(where, problems[0]))
            continue
        if obj["id"] in seen:
            continue
        seen.add(obj["id"])
        ev = Event._checked(obj)
        if ev.type not in KNOWN_TYPES:
            unknown.append(BadLine(where, f"unknown event type {ev.type!r}"))
        events.append(ev)
    return LogRead(tuple(events), torn, end, tuple(bad), tuple(unknown))


def owner_problems(obj: Mapping[str, Any], plan: str | None, task: Any) -> list[str]:
    """An event line in the log of another plan or task (`task` None: the plan log)."""
    out = []
    if plan is not None and obj["plan"] != plan or task is not _ANY and obj["task"] != task:
        out.append(f"event belongs to {obj['plan']}/{obj['task']}, not to this log "
                   f"({plan}/{task}): move it to its own log")
    if task is None and str(obj["type"]).startswith("task."):
        out.append(f"task event {obj['type']} in the plan log")
    return out


def canonical(events: Iterable[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e.sort_key)


# ----- the one checker of event lines -----------------------------------------------------
# `validate`, the pre-commit hook, `doctor` and every reader (`parse_log`) check lines with
# `load_line` and `check_event`, so a line the fold sees has every field it reads of the type
# it expects. docs/FORMAT.md lists the rules; schemas/event.json describes the envelope.

MAX_DEPTH = 100  # nesting of an event line's JSON (a signal's data, say)
MAX_INT = 2 ** 63 - 1
MAX_ACTOR = 1000
PHASES = ("draft", "plan_review", "execute", "checkpoint", "finish", "complete", "halted")
RECORD_STATUSES = ("open", "claimed", "in_progress", "retry_wait", "done", "failed", "skipped", "review")
ENVELOPE = ("id", "type", "plan", "task", "actor", "at", "clock", "data")
_REQUIRED = ENVELOPE[:-1]
_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}\Z")
_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+\Z")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_FULL_ID = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")
ID_RULE = "use letters, digits, '.', '_' or '-', at most 64 characters, starting with a letter or digit"
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """JSON nested deeper than `limit`, found without parsing it (the parser would recurse).
    Counting brackets settles almost every line; only a line with more than `limit` of them
    is scanned, strings skipped."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for m in _JSON_TOKENS.finditer(data):
        tok = m.group()
        if tok in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif tok in (b"]", b"}"):
            depth -= 1
    return False


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows (numbers must be finite)")


_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def load_line(raw: bytes) -> Any:
    """One line's JSON (UTF-8): nesting bounded, numbers finite, text encodable. ValueError
    says why not."""
    if too_deep(raw):
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    obj = _DECODER.decode(raw.decode("utf-8"))
    if b"\\u" in raw:  # an escape `\udcff` decodes to a lone surrogate, which no write can encode
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a \\u escape of half a surrogate pair: not UTF-8 text") from None
    return obj


def _is_int(v: Any) -> bool:
    return type(v) is int and 0 <= v <= MAX_INT


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_texts(v: Any) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


def _is_time(v: Any) -> bool:
    try:
        event_time(v)
    except ValueError:
        return False
    return True


def _is_approval(v: Any) -> bool:
    return type(v) is dict and all(type(v.get(k, "")) is str
                                   for k in ("reviewer", "comment", "plan_hash", "at"))


# kind -> (test, what it should be). A `?` kind also allows null.
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (lambda v: type(v) is str, "a string"),
    "texts": (_is_texts, "a list of strings"),
    "bool": (lambda v: type(v) is bool, "true or false"),
    "count": (_is_int, f"an integer from 0 to {MAX_INT}"),
    "clock": (lambda v: type(v) is int and 0 <= v <= MAX_CLOCK, f"an integer from 0 to {MAX_CLOCK}"),
    "int": (lambda v: type(v) is int and -MAX_INT <= v <= MAX_INT, "an integer"),
    "number": (_is_number, "a finite number"),
    "time": (_is_time, "a time (RFC 3339 UTC text, or seconds) within years 1-9999"),
    "time_text": (lambda v: type(v) is str and _is_time(v), "an RFC 3339 UTC time within years 1-9999"),
    "phase": (lambda v: v in PHASES, f"one of: {', '.join(PHASES)}"),
    "status": (lambda v: v in RECORD_STATUSES, f"one of: {', '.join(RECORD_STATUSES)}"),
    "object": (lambda v: type(v) is dict, "a mapping"),
    # a commit id in an event reaches git: a full id, never a name or an option
    "commit": (lambda v: type(v) is str and _FULL_ID.match(v) is not None,
               "a full commit id (40 or 64 lower-case hex digits)"),
    "branch": (lambda v: type(v) is str and branch_problem(v) is None,  # it becomes refs/heads/NAME
               "a branch name git allows (no '..', no part starting with '.', not starting with '-')"),
    "approvals": (lambda v: type(v) is list and all(_is_approval(a) for a in v),
                  "a list of approvals (mappings of reviewer, comment, plan_hash, at: strings)"),
    "decisions": (lambda v: type(v) is dict and all(x in ("approved", "changes_requested") for x in v.values()),
                  "a mapping of checkpoint ids to approved or changes_requested"),
    "times": (lambda v: type(v) is dict and all(type(x) is str and _is_time(x) for x in v.values()),
              "a mapping of names to RFC 3339 UTC times within years 1-9999"),
}

# What the fold and the commands read of each event type's `data` (other keys are kept and
# ignored). A `!` after the kind: the key must be there.
TASK_STATE = {
    "status": "status", "worker": "text?", "lease_until": "time?", "attempts": "count",
    "failures": "count", "retry_at": "time?", "last_error": "text?", "note": "text?",
    "files_modified": "texts", "skip_dependents": "bool", "wait_ok": "bool",
    "wait_next_at": "time?", "wait_checks": "count", "events": "count", "last_clock": "clock",
    "log_path": "text?", "code": "commit?",
}
PLAN_STATE = {
    "phase": "phase", "base_commit": "commit?", "accepted_hash": "text?", "halted_from": "text?",
    "failed_tasks": "texts", "approvals": "approvals", "checkpoints": "decisions",
    "schedules": "times", "signals_handled": "texts",
}
DATA: dict[str, dict[str, str]] = {
    "task.claimed": {"lease_until": "time?", "lease_seconds": "number?"},
    "task.started": {"lease_until": "time?"}, "task.heartbeat": {"lease_until": "time?"},
    "task.done": {"note": "text?", "files_modified": "texts?"},
    "task.failed": {"error": "text?", "retry_at": "time?", "attempt": "count?", "check": "text?"},
    "task.skipped": {"reason": "text?", "dependents": "bool?"},
    "task.released": {"reason": "text?"},
    "task.review": {"branch": "branch?", "commit": "commit?", "base": "branch?", "note": "text?"},
    "task.note": {"text": "text?"}, "task.log": {"path": "text?"},
    "task.wait": {"ok": "bool?", "next_at": "time?"}, "task.snapshot": {"state": "object!"},
    "task.retried": {"reason": "text?", "for": "text?"},
    "plan.created": {"title": "text?", "tasks": "count?", "parent": "text?"},
    "plan.phase": {"to": "phase", "from": "text?", "reason": "text?",
                   "plan_hash": "text?", "checkpoint": "text?"},
    "plan.approved": {"reviewer": "text?", "comment": "text?", "plan_hash": "text?"},
    "plan.rejected": {"reviewer": "text?", "comment": "text?"},
    "plan.task_failed": {"task": "text?", "error": "text?", "attempts": "count?"},
    "checkpoint.validation": {"checkpoint": "text?", "name": "text!", "argv": "texts?",
                              "exit_code": "int?", "duration": "number?", "output_tail": "text?"},
    "checkpoint.approved": {"checkpoint": "text?", "reviewer": "text?", "comment": "text?"},
    "checkpoint.changes_requested": {"checkpoint": "text?", "reviewer": "text?", "comment": "text?",
                                     "tasks": "texts?", "plan_hash": "text?"},
    "signal.received": {"name": "text?"},
    "signal.handled": {"signal": "text?", "outcome": "text?"},
    "schedule.ran": {"schedule": "text?", "slot": "time?"},
    "plan.snapshot": {"state": "object!"},
    "plan.migrated": {"state_branch": "text?", "requires": "text?", "note": "text?"},
    **{t: {"round": "count?", "ok": "bool?", "errors": "texts?"} for t in ("plan.explored", "plan.drafted")},
}
# in the data of any type, this version's or not (`code`: format 2's code commit, ADR 0011)
EVERY_TYPE = {"base_commit": "commit?", "code": "commit?"}
for _spec in DATA.values():
    _spec.update(EVERY_TYPE)
_NESTED = {"task.snapshot": TASK_STATE, "plan.snapshot": PLAN_STATE}


def _field_problems(values: Mapping[str, Any], spec: Mapping[str, str], where: str) -> list[str]:
    out = []
    for key, kind in spec.items():
        required, optional = kind.endswith("!"), kind.endswith("?")
        base = kind.rstrip("!?")
        if key not in values:
            if required:
                out.append(f"{where}: missing required key {key!r}")
            continue
        value = values[key]
        if value is None and optional:
            continue
        test, what = _KINDS[base]
        if test(value):
            continue
        if base in ("time", "time_text") and value is not None:
            try:
                event_time(value)
                detail = f"expected {what}, got {_got(value)}"
            except ValueError as exc:
                detail = str(exc)
        else:
            detail = f"expected {what}{' or null' if optional else ''}, got {_got(value)}"
        out.append(f"{where}.{key}: {detail}")
    return out


def check_event(obj: Any, limit: int = MAX_CLOCK) -> list[str]:
    """Every problem of one decoded event line, each "field: what is wrong" ([] when the line
    is sound). A type this version does not know is no problem: such events are kept and
    ignored; only their envelope is checked."""
    if type(obj) is dict and _sound(obj, limit):
        return []
    return _problems(obj, limit)


def _problems(obj: Any, limit: int = MAX_CLOCK) -> list[str]:
    if type(obj) is not dict:
        return [f"(top): expected a mapping, got {_got(obj)}"]
    out = [f"(top): missing required key {k!r}" for k in _REQUIRED if k not in obj]
    for key in obj:
        if key not in ENVELOPE and not (type(key) is str and key.startswith("x-")):
            out.append(f"{key}: unknown key {key!r} (allowed: {', '.join(ENVELOPE)}, x-*)")
    ident = obj.get("id")
    if "id" in obj and not (type(ident) is str and _ULID.match(ident)):
        out.append(f"id: expected a string, got {_got(ident)}" if type(ident) is not str else
                   f"id: invalid event id {_show(ident)}: use 26 characters of Crockford base32 "
                   "(digits and upper-case letters except I, L, O, U)")
    kind = obj.get("type")
    name = kind if type(kind) is str else ""  # for lookups: a list is no key
    if "type" in obj and not (type(kind) is str and _TYPE.match(kind)):
        out.append(f"type: expected a string, got {_got(kind)}" if type(kind) is not str else
                   f"type: invalid event type {_show(kind)}: use lower-case words joined by dots "
                   "(task.done)")
    if "plan" in obj:
        out += _id_problems("plan", obj["plan"])
    if "task" in obj:
        task = obj["task"]
        if task is None:
            if name.startswith("task."):
                out.append("task: expected the task id (task.* events name their task), got null")
        elif type(task) is not str:
            out.append(f"task: expected the task id, or null for plan-level events, got {_got(task)}")
        elif name in PLAN_EVENTS:
            out.append(f"task: expected null (plan-level events have no task), got {_got(task)}")
        else:
            out += _id_problems("task", task)
    if "actor" in obj:
        actor = obj["actor"]
        if type(actor) is not str:
            out.append(f"actor: expected a string, got {_got(actor)}")
        elif not actor:
            out.append("actor: must not be empty")
        elif len(actor) > MAX_ACTOR or any(c in actor for c in "\n\r\0"):
            out.append(f"actor: must be one line of at most {MAX_ACTOR} characters")
    if "at" in obj:
        at = obj["at"]
        if type(at) is not str:
            out.append("at: expected an RFC 3339 UTC time like 2026-11-22T10:00:00.000000Z, "
                       f"got {_got(at)}")
        else:
            try:
                event_time(at)
            except ValueError as exc:
                out.append(f"at: {exc}")
    if "clock" in obj:
        clock = obj["clock"]
        if type(clock) is not int:
            out.append(f"clock: expected an integer (Lamport clock), got {_got(clock)}")
        elif clock < 0:
            out.append(f"clock: must be >= 0, got {clock}")
        elif clock > limit:
            out.append(f"clock: must be <= {limit} (no log counts that far: written by hand), got {clock}")
    data = obj.get("data", {})
    if type(data) is not dict:
        out.append(f"data: expected a mapping, got {_got(data)}")
    else:
        out += _field_problems(data, DATA.get(name, EVERY_TYPE), "data")
        nested = _NESTED.get(name)
        if nested is not None and type(data.get("state")) is dict:
            out += _field_problems(data["state"], nested, "data.state")
    return out


# The fast path: a yes, without building messages, for the common well-formed line of a known
# type; it never says yes to a line the rest of `check_event` would refuse (anything unusual,
# such as a day after the 28th, goes the long way).
_ENV_SET = frozenset(ENVELOPE)
_REQ_SET = frozenset(_REQUIRED)
_EASY_TIME = re.compile(r"(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])T"
                        r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?Z\Z")
_GOOD_IDS: set[str] = set()


def _good_id(value: str) -> bool:
    if value in _GOOD_IDS:
        return True
    if not _ID.match(value) or ".." in value:
        return False
    if len(_GOOD_IDS) < 4096:
        _GOOD_IDS.add(value)
    return True


def _easy_time(value: Any) -> bool:
    if type(value) is str:
        return _EASY_TIME.match(value) is not None
    return type(value) in (int, float) and MIN_TIME <= value <= MAX_TIME


def _compiled(spec: Mapping[str, str]) -> tuple[tuple[str, Callable[[Any], bool], bool, bool], ...]:
    out = []
    for key, kind in spec.items():
        base = kind.rstrip("!?")
        test = _easy_time if base == "time" else _KINDS[base][0]
        out.append((key, test, kind.endswith("?"), kind.endswith("!")))
    return tuple(out)


_FAST = {kind: _compiled(spec) for kind, spec in DATA.items()}
_FAST_NESTED = {kind: _compiled(spec) for kind, spec in _NESTED.items()}


def _fields_sound(values: Mapping[str, Any], spec: tuple[tuple[str, Callable[[Any], bool], bool, bool], ...]) -> bool:
    for key, test, optional, required in spec:
        if key not in values:
            if required:
                return False
            continue
        value = values[key]
        if not (value is None and optional) and not test(value):
            return False
    return True


def _sound(obj: dict[str, Any], limit: int = MAX_CLOCK) -> bool:
    keys = obj.keys()
    if not _REQ_SET <= keys <= _ENV_SET:
        return False
    kind, ident, plan, task = obj["type"], obj["id"], obj["plan"], obj["task"]
    actor, clock = obj["actor"], obj["clock"]
    if type(kind) is not str or kind not in KNOWN_TYPES or type(ident) is not str \
            or _ULID.match(ident) is None:
        return False
    if type(plan) is not str or not _good_id(plan):
        return False
    if kind in TASK_EVENTS:
        if type(task) is not str or not _good_id(task):
            return False
    elif task is not None:
        return False
    if type(actor) is not str or not actor or len(actor) > MAX_ACTOR \
            or "\n" in actor or "\r" in actor or "\0" in actor:
        return False
    if type(obj["at"]) is not str or _EASY_TIME.match(obj["at"]) is None:
        return False
    if type(clock) is not int or not 0 <= clock <= limit:
        return False
    data = obj.get("data", {})
    if type(data) is not dict or not _fields_sound(data, _FAST[kind]):
        return False
    nested = _FAST_NESTED.get(kind)
    return nested is None or _fields_sound(data["state"], nested)


def _id_problems(name: str, value: Any) -> list[str]:
    if type(value) is not str:
        return [f"{name}: expected a string, got {_got(value)}"]
    if not _ID.match(value) or ".." in value:
        return [f"{name}: invalid id {_show(value)}: {ID_RULE}"]
    return []
