"""Merging JSONL event logs: the union of both sides, de-duplicated by event id, in
``(clock, actor, id)`` order, each line kept byte for byte as it was committed.

``merge_driver_main`` is the git merge driver (``.gitattributes``: ``*.jsonl merge=flowgit``;
``.git/config``: ``driver = python -m flowgit.jsonlmerge %O %A %B``).

Deletions: an event that was in the common ancestor (``base``) and is gone from one side was
removed on purpose (compaction, ``rollback``, ``doctor --fix``), so it stays removed; every other
event of either side is kept. With an empty or unrelated base this is the plain union.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from flowgit.core.events import MAX_DEPTH, too_deep

__all__ = ["event_sort_key", "merge_driver_main", "merge_logs", "parse_lines", "union_logs"]


def _split(data: bytes) -> list[tuple[int, bytes]]:
    """(line number, line bytes without '\\n') of complete, non-blank lines; a last line
    without its '\\n' is a torn write and is dropped."""
    pieces = data.split(b"\n")
    pieces.pop()  # b"" after a final '\n', or the torn last line
    return [(i, line) for i, line in enumerate(pieces, 1) if line.strip()]


def _parse_line(number: int, line: bytes) -> dict[str, Any]:
    if too_deep(line):  # the parser recurses: check before handing it the line
        raise ValueError(f"line {number}: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"line {number}: not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"line {number}: not a JSON object")  # noqa: TRY004
    ident = obj.get("id")
    if not isinstance(ident, str) or not ident:
        raise ValueError(f"line {number}: event without an 'id'")
    return obj


def _parse_raw(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    return [(_parse_line(n, line), line) for n, line in _split(data)]


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    """The events of a JSONL log. Blank lines are skipped; a last line without '\\n' (a torn
    write) is dropped; any other line that is not a JSON object with a string ``id`` raises
    ValueError naming its 1-based line number."""
    return [event for event, _ in _parse_raw(data)]


def event_sort_key(ev: Mapping[str, Any]) -> tuple[int, str, str]:
    """``(clock, actor, id)``: the order a stream folds in on every machine. A missing or
    non-integer clock counts as 0, a missing actor as ''."""
    clock = ev.get("clock")
    if isinstance(clock, bool) or not isinstance(clock, int):
        clock = 0
    actor = ev.get("actor")
    ident = ev.get("id")
    return (
        clock,
        actor if isinstance(actor, str) else ("" if actor is None else str(actor)),
        ident if isinstance(ident, str) else ("" if ident is None else str(ident)),
    )


def merge_logs(base: bytes, ours: bytes, theirs: bytes, *, keep_deleted: bool = False) -> bytes:
    """Merge three versions of one log. Raises ValueError ("ours: line 3: ...") on a bad line.

    The result holds every event of ``ours`` and ``theirs`` once (by id; when both sides have
    an id with different bytes, ours wins), minus events of ``base`` that one side deleted
    (unless ``keep_deleted``), sorted by ``event_sort_key``, each line byte-identical to its
    source and ``\\n``-terminated.
    """
    sides: list[tuple[str, list[tuple[dict[str, Any], bytes]]]] = []
    for name, data in (("base", base), ("ours", ours), ("theirs", theirs)):
        try:
            sides.append((name, _parse_raw(data)))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    base_ids = {ev["id"] for ev, _ in sides[0][1]}
    ours_ids = {ev["id"] for ev, _ in sides[1][1]}
    theirs_ids = {ev["id"] for ev, _ in sides[2][1]}
    deleted: set[str] = set()
    if not keep_deleted:
        deleted = (base_ids - ours_ids) | (base_ids - theirs_ids)
    merged: dict[str, tuple[tuple[int, str, str], bytes]] = {}
    for _, events in sides[1:]:
        for ev, line in events:
            ident = ev["id"]
            if ident in merged or ident in deleted:
                continue
            merged[ident] = (event_sort_key(ev), line)
    ordered = sorted(merged.values(), key=lambda item: item[0])
    return b"".join(line + b"\n" for _, line in ordered)


SNAPSHOTS = frozenset({"task.snapshot", "plan.snapshot"})


def union_logs(versions: Sequence[bytes], *, drop_snapshots: bool = False) -> tuple[bytes, list[str]]:
    """The state branch's merge (ADR 0011): every event of every version once, by id, in
    ``event_sort_key`` order; nothing is ever dropped for having been deleted on one side.
    An id carried with different bytes keeps the smallest bytes, so every merge order keeps
    the same line; those ids are returned to be reported. Lines that are no event (a torn or
    broken line) are kept too, once, at the end: the fold holds their task rather than lose
    them. ``drop_snapshots``: the versions are a log's whole history, so its compaction
    snapshots are left out (the fold of the full history needs none)."""
    merged: dict[str, tuple[tuple[int, str, str], bytes]] = {}
    conflicts: set[str] = set()
    broken: dict[bytes, None] = {}
    for data in versions:
        for number, line in _split(data):
            try:
                ev = _parse_line(number, line)
            except ValueError:
                broken[line] = None
                continue
            if drop_snapshots and ev.get("type") in SNAPSHOTS:
                continue
            ident = ev["id"]
            have = merged.get(ident)
            if have is None:
                merged[ident] = (event_sort_key(ev), line)
            elif have[1] != line:
                conflicts.add(ident)
                if line < have[1]:
                    merged[ident] = (event_sort_key(ev), line)
        tail = data[data.rfind(b"\n") + 1:]
        if tail.strip():
            broken[tail] = None
    ordered = sorted(merged.values(), key=lambda item: item[0])
    out = b"".join(line + b"\n" for _, line in ordered) + b"".join(line + b"\n" for line in broken)
    return out, sorted(conflicts)


def has_snapshot(data: bytes) -> bool:
    return b'.snapshot"' in data and any(
        ev.get("type") in SNAPSHOTS for ev in _events_or_none(data))


def event_ids(data: bytes) -> list[str]:
    """The ids of a log's events, its compaction snapshots left out (they are a cache)."""
    return [ev["id"] for ev in _events_or_none(data) if ev.get("type") not in SNAPSHOTS]


def _events_or_none(data: bytes) -> list[dict[str, Any]]:
    out = []
    for number, line in _split(data):
        try:
            out.append(_parse_line(number, line))
        except ValueError:
            continue
    return out


def _write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    import tempfile  # only a merge writes: not on every write's import of union_logs

    fd, tmp = tempfile.mkstemp(prefix=".flowgit-merge-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        except OSError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def merge_driver_main(argv: Sequence[str]) -> int:
    """git merge driver: ``argv = [base_path, ours_path, theirs_path, ...]`` (%O %A %B; extra
    arguments such as %P are ignored). Writes the merge to ours_path and returns 0; returns 1
    with one line on stderr when an input cannot be read or parsed, 2 on a usage error."""
    if len(argv) < 3:
        print("usage: python -m flowgit.jsonlmerge BASE OURS THEIRS", file=sys.stderr)
        return 2
    base_path, ours_path, theirs_path = argv[0], argv[1], argv[2]
    label = argv[3] if len(argv) > 3 else ours_path
    try:
        data = [_read(p) for p in (base_path, ours_path, theirs_path)]
        merged = merge_logs(data[0], data[1], data[2])
        _write_atomic(ours_path, merged)
    except ValueError as exc:
        print(f"flowgit merge driver: {label}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"flowgit merge driver: {label}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(merge_driver_main(sys.argv[1:]))
