"""`flowgit compact PLAN [--keep N]` and `flowgit signal PLAN NAME [--data JSON]`."""
from __future__ import annotations

from typing import Any

from flowgit.cli.app import App
from flowgit.core.events import PLAN_LOG, make_event
from flowgit.errors import UsageError
from flowgit.ids import check_id
from flowgit.ops.compact import compact_plan
from flowgit.ops.phases import plan_clock
from flowgit.store.repo import actor_for, automatic_actor
from flowgit.store.writing import commit_message


def compact(app: App, plan_id: str, keep: int | None) -> int:
    repo = app.repo
    check_id(plan_id, "plan id")
    repo.load_plan(plan_id)
    n = repo.config.compact_keep if keep is None else keep
    if n < 0:
        raise UsageError("--keep must be 0 or more")
    before = repo.state(plan_id)
    result = compact_plan(repo, plan_id, n, automatic_actor(repo))
    after = repo.state(plan_id)
    result["state_unchanged"] = {k: v.state for k, v in before.tasks.items()} == \
        {k: v.state for k, v in after.tasks.items()} and before.phase == after.phase
    text = (f"compacted {len(result['logs'])} log(s) of {plan_id} (kept the last {n} events each); "
            "full history: `flowgit events --from-git`") if result["logs"] else f"{plan_id}: nothing to compact"
    app.out.result(result, text)
    return 0


def signal(app: App, plan_id: str, name: str, data: str | None) -> int:
    repo = app.repo
    check_id(plan_id, "plan id")
    check_id(name, "signal name")
    payload: Any = {}
    if data:
        from flowgit.core.events import MAX_DEPTH, load_line, too_deep

        # it goes into an event line as its data's data: the line's own limits hold for it
        if too_deep(data.encode(), MAX_DEPTH - 2):
            raise UsageError(f"--data is nested deeper than {MAX_DEPTH - 2} levels: flatten it")
        try:
            payload = load_line(data.encode())
        except ValueError as exc:
            raise UsageError(f"--data is not valid JSON: {exc}") from None
    actor = actor_for(repo, None)
    repo.load_plan(plan_id)

    with repo.writing(plan_id) as w:
        ev = make_event("signal.received", plan_id, None, actor, plan_clock(repo, plan_id),
                        {"name": name, "data": payload}, w.now)
        w.append(PLAN_LOG, [ev])
        w.message = commit_message(plan_id, None, f"signal {name}", actor)
    ev_id, sha = ev.id, w.sha
    handled = name in repo.config.signals
    app.out.result({"plan": plan_id, "signal": name, "event": ev_id, "commit": sha, "configured": handled},
                   f"signal {name} sent to {plan_id}" + ("" if handled else
                   f" (no action configured for {name!r} in .flow/config.yaml signals:)"))
    return 0


__all__ = ["compact", "compact_plan", "signal"]
