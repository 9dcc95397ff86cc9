"""Event log files on disk: fsynced appends and torn-line repair, never through a symlink."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from flowgit.core.events import Event


def _open_nofollow(path: Path, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)


def repair_torn(path: Path, good_bytes: int) -> None:
    fd = _open_nofollow(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, good_bytes)
        os.fsync(fd)
    finally:
        os.close(fd)


def append(path: Path, events: Iterable[Event]) -> None:
    """Append lines and fsync them (and the directory for a new file) before returning."""
    payload = "".join(e.to_line() for e in events).encode("utf-8")
    created = not path.exists()
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
