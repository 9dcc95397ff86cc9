"""Event logs are append-only: a staged log must start with exactly its HEAD content."""
from __future__ import annotations

from flowgit import git
from flowgit.store.repo import FlowRepo


def append_only_errors(repo: FlowRepo, changes: list[git.StagedChange]) -> list[str]:
    if git.head(repo.root) is None:
        return []
    logs = [c for c in changes if c.path.endswith(".jsonl") and c.status in "DM"]
    blobs = git.cat_blobs(repo.root, [sha for c in logs if c.status == "M" for sha in (c.old, c.new)])
    errors = []
    for change in logs:
        rel = change.path
        if change.status == "D":
            errors.append(f"{rel}: an event log was deleted: event logs are append-only; restore it "
                          f"with `git restore --staged --worktree {rel}`")
            continue
        if change.old not in blobs or change.new not in blobs:
            continue  # not in this repository (a partial clone): nothing to compare
        old, new = blobs[change.old], blobs[change.new]
        if new.startswith(old):
            continue
        old_lines = old.split(b"\n")
        new_lines = new.split(b"\n")
        for i, line in enumerate(old_lines[:-1]):
            if i >= len(new_lines) - 1 or new_lines[i] != line:
                what = "deleted" if i >= len(new_lines) - 1 else "edited"
                errors.append(f"{rel}:{i + 1}: event line {what}: event logs are append-only; "
                              "restore the line and append a new event instead")
                break
    return errors
