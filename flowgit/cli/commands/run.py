"""`flowgit run PLAN -n N [--executor NAME]`."""
from __future__ import annotations

import signal
import time
from typing import Any

from flowgit import git
from flowgit.cli.app import App
from flowgit.clock import wall_now
from flowgit.core.lifecycle import CLAIMABLE_PHASES, approval_block, phase_gate
from flowgit.errors import Dirty, ExitCode, NeedsApproval, UsageError, WrongPhase
from flowgit.ids import check_id
from flowgit.runner.executors import by_name
from flowgit.runner.logfiles import refuse, symlinked_logs
from flowgit.runner.runner import Runner
from flowgit.store.repo import automatic_actor


def _check_startable(repo: Any, plan_id: str) -> None:
    """A plan still waiting for its approval (or halted) cannot run: say so instead of
    finishing at once with nothing done. phase_gate raises exactly the error `claim` gives."""
    state = repo.state(plan_id)
    if state.phase in CLAIMABLE_PHASES:
        blocked = approval_block(plan_id, state, repo.config, repo.load_plan(plan_id).hash)
        if blocked:
            raise NeedsApproval(blocked)
        return
    if state.phase not in ("draft", "plan_review", "halted"):
        return
    if state.phase == "halted":
        raise WrongPhase(f"plan {plan_id} is halted: nothing can run until "
                                f"`flowgit resume {plan_id}`")
    loaded = repo.load_plan(plan_id)
    phase_gate(loaded.plan, state, repo.config, "run", 0, wall_now(), None, loaded.hash)


def run(app: App, plan_id: str, workers: int, executor: str | None) -> int:
    repo = app.repo
    repo.require_init()
    check_id(plan_id, "plan id")
    repo.load_plan(plan_id)
    if workers < 1:
        raise UsageError("-n must be at least 1")
    if executor is not None:
        # a typo in --executor must not claim and fail every task of the plan
        by_name(repo.config, executor, "--executor")
    _check_startable(repo, plan_id)
    links = symlinked_logs(repo.root, plan_id)
    if links:  # before any claim: the executor's output would go where the link points
        raise refuse(links[0])
    # through the write door, writing nothing: a crashed write is recovered first, and another
    # run half-way through its merge (a staged index, a MERGE_HEAD that are not the user's) is
    # waited for or refused
    with repo.writing():
        staged = git.has_staged_changes(repo.root)
    if staged:
        raise Dirty("the work tree has staged changes: `flowgit run` merges task branches into it; "
                        "commit or unstage them first")
    tty = app.out.is_tty and not app.out.as_json
    last = [0.0]

    def log(line: str) -> None:
        if tty:
            app.out.out.write("\r\033[K")
        app.out.info(line)

    def progress(line: str) -> None:
        if tty and time.monotonic() - last[0] > 0.2:
            last[0] = time.monotonic()
            app.out.out.write("\r\033[K" + line)
            app.out.out.flush()

    runner = Runner(repo.root, [plan_id], workers, executor, log, progress if tty else None)

    def on_signal(signum: int, _frame: Any) -> None:
        log(f"stopping ({signal.Signals(signum).name}): executors stopped, claims released")
        runner.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = runner.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if tty:
        app.out.out.write("\r\033[K")
    moves = [] if code == ExitCode.INTERRUPTED else app.advance_after(plan_id, automatic_actor(repo))
    for m in moves:
        log(f"phase {m['from']} -> {m['to']} ({m['reason']})")
    state = repo.state(plan_id)
    result = {"plan": plan_id, "phase": state.phase, "done": runner.done, "failed": runner.failed,
              "counts": state.counts, "seconds": round(time.monotonic() - runner.start, 2),
              "interrupted": code == ExitCode.INTERRUPTED, "stopped": runner.halted, "moves": moves}
    app.out.result(result, f"{plan_id}: {runner.status_line()}; phase {state.phase}")
    return code
