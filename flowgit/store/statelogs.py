"""Every event log on the state branch checked line by line, as `validate` checks the files of
format 1: what a fetch or a hand-made state commit brought is named by path:line (`validate`,
`doctor`, `sync`)."""
from __future__ import annotations

from flowgit.store.repo import FlowRepo


def check_state_logs(repo: FlowRepo) -> tuple[int, list[str], list[str]]:
    """Format 2: every event log on the state branch, checked line by line as the files of
    format 1 are (what a fetch or a hand-made commit brought is reported here, by path:line).
    A blob found clean at a path once is clean there for good: only the others are read."""
    from flowgit.core.events import PLAN_LOG, parse_log
    from flowgit.store import plansplice

    store = repo.state_store
    assert store is not None
    count, errors, warnings = 0, [], []
    clean = plansplice.store(repo).entry("logs")
    for pid in sorted(set(repo.plan_ids()) | set(store.plan_ids())):
        listing = store.blobs(pid)
        count += len(listing)
        was: dict[str, str] = clean.get(pid) or {}
        now = {stream: blob for stream, blob in listing.items() if was.get(stream) == blob}
        todo = sorted(stream for stream in listing if stream not in now)
        contents = store.read_many([listing[stream] for stream in todo])
        for stream in todo:
            blob = listing[stream]
            read = parse_log(contents.get(blob, b""), store.display(pid, stream), pid,
                             None if stream == PLAN_LOG else stream)
            errors += [f"{bad.where}: {bad.problem}" for bad in read.bad]
            warnings += [f"{bad.where}: {bad.problem}" for bad in read.unknown]
            if blob in contents and not (read.bad or read.unknown):
                now[stream] = blob
        if now != was:
            clean[pid] = now
            plansplice.store(repo).changed("logs")
    return count, errors, warnings
