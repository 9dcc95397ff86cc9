"""One transaction: lock, recover a crashed write, read state, decide, append, commit."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from flowgit.core.events import Event
from flowgit.core.fold import PlanState
from flowgit.store.repo import FlowRepo

Decided = tuple[Mapping[Path, Sequence[Event]], Mapping[Path, bytes], str, Any]


def transaction(repo: FlowRepo, plan_id: str,
                decide: Callable[[PlanState, float], Decided]) -> tuple[Any, str | None]:
    """`decide(state, now)` returns (appends, files, commit message, result) or raises."""
    with repo.lock():
        repo.recover()
        repo.forget(plan_id)
        now = time.time()
        state = repo.state(plan_id, now)
        appends, files, message, result = decide(state, now)
        sha = repo.commit(appends, files, message) if (appends or files) else None
    return result, sha
