"""Warnings about what a command read (an unreadable event line, say): each said once per
command, as one line naming the file and line, to whoever the command reports to.

They wait until the command next prints something (`flush`), so a command that then fails
because of the same line says it once, in its error, instead of twice."""
from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    from flowgit.core.events import LogRead

Sink = Callable[[str], None]

_lock = threading.Lock()
_sink: list[Sink | None] = [None]
_said: set[str] = set()
_pending: list[tuple[str, str]] = []


@contextmanager
def reporting(sink: Sink) -> Iterator[None]:
    """Warnings during the block go to `sink`, each once (a nested command, as `flowgit mcp`
    runs them, says its own and hands back). What is still pending at the end is said then."""
    with _lock:
        outer = (_sink[0], set(_said), list(_pending))
        _sink[0] = sink
        _said.clear()
        _pending.clear()
    try:
        yield
    finally:
        flush()
        with _lock:
            _sink[0] = outer[0]
            _said.clear()
            _said.update(outer[1])
            _pending[:] = outer[2]


def say(key: str, line: str) -> None:
    with _lock:
        if _sink[0] is None or key in _said:
            return
        _said.add(key)
        _pending.append((key, line))


def flush(unless: str = "") -> None:
    """Say what is pending, except what `unless` (an error about to be shown) names."""
    with _lock:
        pending, sink = list(_pending), _sink[0]
        _pending.clear()
    for key, line in pending:
        if sink is not None and not (unless and re.search(re.escape(key) + r"(?!\d)", unless)):
            sink(line)


def unreadable(read: LogRead, holds: str) -> None:
    """Name each line of `read` the checker refused, and what it holds."""
    for bad in read.bad:
        say(bad.where, f"unreadable event at {bad.where} ({bad.problem}): {holds} until the line "
                       "is fixed or removed")


def symlinked(where: str, holds: str) -> None:
    """Name a log that is a symlink (never followed, never read), and what it holds."""
    say(where, f"{where} is a symlink: flowgit never follows symlinks in .flow/: {holds} until it "
               "is replaced by the log itself or removed")
