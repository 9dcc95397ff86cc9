"""`flowgit run PLAN -n N [--executor NAME]`."""
from __future__ import annotations

import signal
import time
from typing import Any

from flowgit import git
from flowgit.cli.app import App
from flowgit.clock import wall_now
from flowgit.core.lifecycle import CLAIMABLE_PHASES, approval_block, phase_gate
from flowgit.errors import Dirty, ExitCode, FlowError, NeedsApproval, UsageError, WrongPhase
from flowgit.ids import check_id
from flowgit.runner.executors import by_name, commands_for
from flowgit.runner.logfiles import refuse, symlinked_logs
from flowgit.runner.runner import Runner
from flowgit.store.planpin import gate_hash
from flowgit.store.repo import automatic_actor


def _check_startable(repo: Any, plan_id: str) -> None:
    """A plan still waiting for its approval (or halted) cannot run: say so instead of
    finishing at once with nothing done. phase_gate raises exactly the error `claim` gives."""
    state = repo.state(plan_id)
    if state.phase in CLAIMABLE_PHASES:
        blocked = approval_block(plan_id, state, repo.config, gate_hash(repo, plan_id, state))
        if blocked:
            raise NeedsApproval(blocked)
        return
    if state.phase not in ("draft", "plan_review", "halted"):
        return
    if state.phase == "halted":
        raise WrongPhase(f"plan {plan_id} is halted: nothing can run until "
                                f"`flowgit resume {plan_id}`")
    loaded = repo.load_plan(plan_id)
    phase_gate(loaded.plan, state, repo.config, "run", 0, wall_now(), None, gate_hash(repo, plan_id, state))


def check_trusted(repo: Any, plan_id: str, executor: str | None) -> None:
    """Refuse before claiming anything when a task left to run would run a command (or give
    the plan's text to an agent) that this clone does not trust."""
    from flowgit.ops import trust

    plan = repo.load_plan(plan_id).plan
    state = repo.state(plan_id)
    problems: list[str] = []
    plan_needed = False
    for task in plan.tasks:
        view = state.tasks.get(task.id)
        if view is not None and view.state in ("done", "skipped", "failed"):
            continue
        try:
            commands, agent = commands_for(repo.config, plan, task, executor)
        except FlowError:
            continue  # an unknown executor: that task fails with its own message
        plan_needed = plan_needed or agent
        problems += [w for w in (trust.why_untrusted(repo, c, plan_id) for c in commands)
                     if w and w not in problems]
    if plan_needed:
        why = trust.why_plan_untrusted(repo, plan_id)
        if why:
            problems.append(why)
    if problems:
        more = f" (and {len(problems) - 1} more: `flowgit trust {plan_id}` lists them)" if len(problems) > 1 else ""
        raise trust.Untrusted(f"not running {problems[0]}{more}")


def run(app: App, plan_id: str, workers: int, executor: str | None, trust_now: bool = False,
        hooks: bool = False, land: str | None = None) -> int:
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
    if trust_now:
        from flowgit.ops import trust

        trust.for_this_run(repo, [plan_id])
    check_trusted(repo, plan_id, executor)
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

    from flowgit.runner.review import land_reviewed

    for ref in land_reviewed(repo, automatic_actor(repo), [plan_id]):  # pull requests merged since
        log(f"{ref} done: its reviewed branch reached the base")
    runner = Runner(repo.root, [plan_id], workers, executor, log, progress if tty else None,
                    commit_hooks=hooks, land=land)

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
              "interrupted": code == ExitCode.INTERRUPTED, "stopped": runner.halted, "moves": moves,
              "review": runner.reviews,
              "executors": [{"task": ref, "executor": name, "why": why}
                            for ref, (name, why) in sorted(runner.chosen.items())]}
    in_review = f"; {runner.reviews} in review" if runner.reviews else ""
    app.out.result(result, f"{plan_id}: {runner.status_line()}{in_review}; phase {state.phase}")
    return code
