"""Event logs are append-only: a staged log must start with exactly its HEAD content.

One exception: a line the event checker refuses (an unreadable line, which holds its task or
plan) may be fixed or removed, since that is the only way to free what it holds; what takes
its place is checked like any new line."""
from __future__ import annotations

import re
import shlex

from flowgit import git
from flowgit.core.events import PLAN_LOG, parse_log
from flowgit.store.repo import FlowRepo

_LOG = re.compile(r"^\.flow/plans/([^/]+)/events/([^/]+)\.jsonl\Z")


def unreadable_line(rel: str, raw: bytes) -> bool:
    """Whether the checker refuses this complete line of the log at `rel` (blank lines: no)."""
    m = _LOG.match(rel)
    if not raw.strip() or m is None:
        return False
    task = None if m.group(2) == PLAN_LOG else m.group(2)
    return bool(parse_log(raw + b"\n", rel, m.group(1), task).bad)


def _only_unreadable_changed(rel: str, old_lines: list[bytes], new_lines: list[bytes]) -> bool:
    """The new log keeps every sound line of the old one, in order, and adds lines only where
    an unreadable one was, or after the end."""
    sound = [x for x in old_lines if not unreadable_line(rel, x)]
    if len(sound) == len(old_lines):
        return False
    room = len(old_lines) - len(sound)
    i = 0
    for x in sound:
        while i < len(new_lines) and new_lines[i] != x:
            room -= 1
            i += 1
        if i == len(new_lines) or room < 0:
            return False
        i += 1
    return True


def append_only_errors(repo: FlowRepo, changes: list[git.StagedChange]) -> list[str]:
    cache = [f"{c.path}: the derived cache is this clone's alone (its files carry this clone's "
             "cache key): unstage it with `git rm -r --cached .flow/.cache`"
             for c in changes if c.path.startswith(".flow/.cache/") and c.status != "D"]
    if git.head(repo.root) is None:
        return cache
    logs = [c for c in changes if c.path.endswith(".jsonl") and c.status in "DM"]
    blobs = git.cat_blobs(repo.root, [sha for c in logs if c.status == "M" for sha in (c.old, c.new)])
    errors = cache
    for change in logs:
        rel = change.path
        if change.status == "D":
            errors.append(f"{rel}: an event log was deleted: event logs are append-only; restore it "
                          f"with `git restore --staged --worktree -- {shlex.quote(rel)}`")
            continue
        if change.old not in blobs or change.new not in blobs:
            continue  # not in this repository (a partial clone): nothing to compare
        old, new = blobs[change.old], blobs[change.new]
        if new.startswith(old):
            continue
        old_lines = old.split(b"\n")
        new_lines = new.split(b"\n")
        if _only_unreadable_changed(rel, old_lines[:-1], new_lines[:-1]):
            continue
        for i, line in enumerate(old_lines[:-1]):
            if i >= len(new_lines) - 1 or new_lines[i] != line:
                what = "deleted" if i >= len(new_lines) - 1 else "edited"
                errors.append(f"{rel}:{i + 1}: event line {what}: event logs are append-only; "
                              "restore the line and append a new event instead")
                break
    return errors


def append_only_since(repo: FlowRepo, rev: str) -> list[str]:
    """Every event the logs held at `rev` (a pull request's base) is still in the work tree,
    unchanged: a branch may add events, and merge logs (reordered by the merge driver), but
    never drop or edit one, except where a compaction snapshot now stands for it."""
    from flowgit.core.events import load_line
    from flowgit.errors import NotFound
    from flowgit.formats.jsonlmerge import event_sort_key, parse_lines

    base = git.resolve_commit(repo.root, rev, "--base")
    if base is None:
        raise NotFound(f"unknown revision {rev!r}: give the pull request's base (a commit, branch or tag)")
    ids = {p: sha for p, sha in git.tree_blob_ids(repo.root, base, ".flow/plans").items() if _LOG.match(p)}
    blobs = git.cat_blobs(repo.root, list(ids.values()))
    errors = []
    for rel, sha in sorted(ids.items()):
        path = repo.root / rel
        if path.is_symlink() or not path.is_file():
            errors.append(f"{rel}: an event log at {rev} is gone: event logs are append-only; restore "
                          f"it with `git checkout {base[:12]} -- {shlex.quote(rel)}`")
            continue
        try:
            new = parse_lines(path.read_bytes())
        except ValueError as exc:
            errors.append(f"{rel}: {exc}")
            continue
        old = []  # the base's sound events, by line: an unreadable one may be fixed or removed
        for n, raw in enumerate(blobs.get(sha, b"").split(b"\n")[:-1], start=1):
            if raw.strip() and not unreadable_line(rel, raw):
                old.append((n, load_line(raw)))
        now = {e["id"]: e for e in new}
        snapshots = [event_sort_key(e) for e in new if str(e.get("type", "")).endswith(".snapshot")]
        folded = max(snapshots, default=None)
        for n, ev in old:
            if ev["id"] in now:
                if now[ev["id"]] != ev:
                    errors.append(f"{rel}: event {ev['id']} (line {n} at {rev}) was edited: event logs "
                                  "are append-only; restore it and append a new event instead")
                    break
            elif folded is None or event_sort_key(ev) > folded:
                errors.append(f"{rel}: event {ev['id']} (line {n} at {rev}) was removed: event logs "
                              "are append-only; restore it and append a new event instead")
                break
    return errors
