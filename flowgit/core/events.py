"""Event lines: ULIDs, canonical order, parsing. Pure; the files are `flowgit.store.files`."""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from flowgit.errors import InvalidFile

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

TASK_EVENTS = frozenset(
    {"task.claimed", "task.started", "task.heartbeat", "task.done", "task.failed",
     "task.skipped", "task.released", "task.note", "task.log", "task.wait", "task.snapshot"}
)
PLAN_EVENTS = frozenset(
    {"plan.created", "plan.phase", "plan.approved", "plan.rejected", "plan.task_failed",
     "checkpoint.validation", "checkpoint.approved", "checkpoint.changes_requested",
     "signal.received", "signal.handled", "schedule.ran", "plan.snapshot"}
)
KNOWN_TYPES = TASK_EVENTS | PLAN_EVENTS
PLAN_LOG = "_plan"


def new_ulid(now: float | None = None) -> str:
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def format_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Event:
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
        return parse_time(self.at)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "plan": self.plan, "task": self.task,
                "actor": self.actor, "at": self.at, "clock": self.clock, "data": dict(self.data)}

    def to_line(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> Event:
        if not isinstance(obj, dict):
            raise InvalidFile(f"{where}: an event line must be a JSON object")
        try:
            ev = cls(
                id=obj["id"], type=obj["type"], plan=obj["plan"], task=obj.get("task"),
                actor=obj["actor"], at=obj["at"], clock=obj["clock"], data=obj.get("data") or {},
            )
        except KeyError as exc:
            raise InvalidFile(f"{where}: event is missing {exc.args[0]!r}") from None
        if not isinstance(ev.clock, int) or not isinstance(ev.id, str) or not isinstance(ev.actor, str):
            raise InvalidFile(f"{where}: event has a wrong type for id, actor or clock")
        if ev.type not in KNOWN_TYPES:
            raise InvalidFile(f"{where}: unknown event type {ev.type!r}")
        return ev


def make_event(
    type_: str, plan: str, task: str | None, actor: str, clock: int,
    data: Mapping[str, Any] | None = None, now: float | None = None,
) -> Event:
    ts = time.time() if now is None else now
    return Event(new_ulid(ts), type_, plan, task, actor, format_time(ts), clock, dict(data or {}))


@dataclass(frozen=True)
class LogRead:
    events: tuple[Event, ...]
    torn: bool           # the last line had no newline: a crash mid-append
    good_bytes: int      # length of the complete part


def parse_log(data: bytes, display: str) -> LogRead:
    """Parse complete lines; a last line without '\\n' is reported as torn, never parsed."""
    end = data.rfind(b"\n") + 1
    torn = end < len(data)
    events: list[Event] = []
    for lineno, raw in enumerate(data[:end].split(b"\n")[:-1], start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidFile(
                f"{display}:{lineno}: not a JSON event line ({exc}): run flowgit doctor"
            ) from None
        events.append(Event.from_dict(obj, f"{display}:{lineno}"))
    return LogRead(tuple(events), torn, end)


def canonical(events: Iterable[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e.sort_key)


