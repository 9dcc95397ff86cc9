"""Warnings about what a command read (an unreadable event line, say): each said once per
command, as one line naming the file and line, to whoever the command reports to."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from flowgit.core.events import LogRead

Sink = Callable[[str], None]

_lock = threading.Lock()
_sink: list[Sink | None] = [None]
_said: set[str] = set()


@contextmanager
def reporting(sink: Sink) -> Iterator[None]:
    """Warnings during the block go to `sink`, each once (a nested command, as `flowgit mcp`
    runs them, says its own and hands back)."""
    with _lock:
        outer, outer_said = _sink[0], set(_said)
        _sink[0] = sink
        _said.clear()
    try:
        yield
    finally:
        with _lock:
            _sink[0] = outer
            _said.clear()
            _said.update(outer_said)


def say(key: str, line: str) -> None:
    with _lock:
        sink = _sink[0]
        if sink is None or key in _said:
            return
        _said.add(key)
    sink(line)


def unreadable(read: LogRead, holds: str) -> None:
    """Name each line of `read` the checker refused, and what it holds."""
    for bad in read.bad:
        say(bad.where, f"unreadable event at {bad.where} ({bad.problem}): {holds} until the line "
                       "is fixed or removed")
