"""Event logs are append-only: a staged log must start with exactly its HEAD content."""
from __future__ import annotations

from flowgit import git
from flowgit.store import FLOW, FlowRepo


def append_only_errors(repo: FlowRepo) -> list[str]:
    env = git.hook_index_env()
    out = git.run(["diff", "--cached", "--name-status", "-z", "--no-renames", "--", FLOW],
                  repo.root, env=env).stdout.decode().split("\0")
    errors = []
    pairs = list(zip(out[0::2], out[1::2]))
    if git.head(repo.root) is None:
        return []
    for status, rel in pairs:
        if not rel.endswith(".jsonl"):
            continue
        if status == "D":
            errors.append(f"{rel}: an event log was deleted: event logs are append-only; restore it "
                          f"with `git restore --staged --worktree {rel}`")
            continue
        if status != "M":
            continue
        old = git.show(repo.root, "HEAD", rel) or b""
        new = git.run(["show", f":{rel}"], repo.root, env=env).stdout
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
