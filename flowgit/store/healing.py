"""Event logs are append-only against HEAD: a torn last line is cut, committed lines that were
cut or edited come back from HEAD, complete lines appended since are kept."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from flowgit import git
from flowgit.errors import RaceLost
from flowgit.store.files import repair_torn, write_atomic

if TYPE_CHECKING:
    from flowgit.store.repo import FlowRepo


def ensure_log_intact(repo: FlowRepo, path: Path, then: str = "run the command again") -> None:
    """Before appending to (or rewriting) a log: a torn line is cut; committed lines that
    were cut or edited come back from HEAD, and the caller, whose decision was made on the
    damaged log, stops (exit 4)."""
    if log_needs_care(repo, path) and heal_log(repo, path) == "restored":
        raise RaceLost(f"{repo.rel(path)}: committed events had been cut or edited and are "
                       f"restored from HEAD; {then}")


def log_needs_care(repo: FlowRepo, path: Path) -> bool:
    """A torn last line, or fewer bytes than git's index recorded for the file (lines cut
    since it was last committed): both cheap to see, no subprocess."""
    size = path.stat().st_size
    if size:
        with open(path, "rb") as fh:
            fh.seek(size - 1)
            if fh.read(1) != b"\n":
                return True
    recorded = git.indexed_size(repo.dirs, repo.rel(path))
    return recorded is not None and size < recorded


def heal_log(repo: FlowRepo, path: Path) -> str | None:
    """Make a log append-only again: cut a torn last line (a crash mid-append), but never
    into what HEAD has; committed lines that were cut or edited come back from HEAD, and
    complete lines appended after them are kept. Says what it did: "torn", "restored"."""
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    head = git.show_blob(repo.root, "HEAD", repo.rel(path)) or b""
    committed = head[: head.rfind(b"\n") + 1]  # a torn line committed by hand is no event
    if whole.startswith(committed):
        if len(whole) == len(data):
            return None
        repair_torn(path, len(whole))
        return "torn"
    # lines past HEAD's count that are whole events HEAD lacks were appended since: keep them
    known = {event_id(line) for line in committed.splitlines()}
    extra = [line + b"\n" for line in whole.splitlines()[committed.count(b"\n"):]
             if (ident := event_id(line)) is not None and ident not in known]
    write_atomic(path, committed + b"".join(extra))
    return "restored"


def event_id(line: bytes) -> str | None:
    """The id of one event line; None for a fragment or anything else that is no event."""
    try:
        ident = json.loads(line).get("id")
    except (ValueError, AttributeError):
        return None
    return ident if isinstance(ident, str) else None
