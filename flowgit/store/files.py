"""Files under `.flow/` on disk: fsynced appends, torn-line repair and atomic replacement,
never through a symlink."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from flowgit.core.events import Event
from flowgit.errors import InvalidFile


def _open_nofollow(path: Path, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)


def line_of(path: Path, field: str, value: object) -> int | None:
    """The last line of a log whose event carries `data[field] == value`: where a bad value
    came from, for the one line that refuses it (only on that error path)."""
    found = None
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError:
        return None
    for lineno, raw in enumerate(lines, start=1):
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        data = obj.get("data") if isinstance(obj, dict) else None
        if isinstance(data, dict) and data.get(field) == value:
            found = lineno
    return found


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
        _write_all(fd, payload)
        os.fsync(fd)
    except OSError as exc:
        exc.filename = exc.filename or str(path)  # a full disk: say which file it was
        raise
    finally:
        os.close(fd)
    if created:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_atomic(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        raise InvalidFile(f"{path}: is a symlink: flowgit never writes through one")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        try:
            _write_all(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk, say: the old file stands, and no temporary is left
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp)):
            exc.filename = str(path)
        raise


def _write_all(fd: int, data: bytes) -> None:
    """A write can be short (a disk filling up): go on until all is written or it fails."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
