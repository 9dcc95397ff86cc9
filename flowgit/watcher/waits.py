"""Outside conditions: a task's `wait.run` is checked again with backoff until it passes."""
from __future__ import annotations

from typing import Callable, Mapping

from flowgit.clock import wall_now
from flowgit.core import commands, retry
from flowgit.core.events import make_event
from flowgit.core.model import Plan, RetryPolicy, Validation, argv_of, parse_seconds, policy_for
from flowgit.errors import FlowError, IllegalTransition
from flowgit.ops.phases import run_validation
from flowgit.store.repo import FlowRepo
from flowgit.store.writing import Write, commit_message
from flowgit.watcher.trusted import say_once, untrusted

Log = Callable[[str], None]


def wait_policy(plan: Plan, repo: FlowRepo) -> RetryPolicy:
    """The plan's backoff policy for waiting: its retry policy if it sets a strategy, else
    fibonacci; waiting never runs out of attempts."""
    base = policy_for(plan, None, repo.config)
    explicit = isinstance(plan.retry, Mapping) and "strategy" in plan.retry
    return RetryPolicy("fibonacci" if not explicit else base.strategy, base.base, base.cap, 1 << 30)


def check_waits(repo: FlowRepo, plan_id: str, actor: str, log: Log) -> int:
    state = repo.state(plan_id)
    if state.phase not in ("execute", "checkpoint"):
        return 0
    plan = repo.load_plan(plan_id).plan
    now = wall_now()
    checked = 0
    for view in state.tasks.values():
        if view.waiting_on != ("wait",):
            continue
        rec = view.record
        if rec.wait_next_at is not None and rec.wait_next_at > now:
            continue
        task = plan.task(view.id)
        assert task is not None
        spec = task.wait if isinstance(task.wait, Mapping) else {"run": task.wait}
        try:  # a teammate's plan can say anything here: one bad wait must not stop the pass
            v = Validation(name=f"wait:{task.id}", argv=argv_of(spec.get("run"), f"{task.id}.wait.run"),
                           timeout=parse_seconds(spec.get("timeout", 60), f"tasks[{task.id}].wait.timeout"))
        except FlowError as exc:
            say_once(f"{plan_id}/{task.id}: wait condition not checked: {exc.message}: fix the plan", log)
            continue
        if v.argv and untrusted(repo, commands.task_wait(plan_id, task.id, v.argv), plan_id,
                                f"{plan_id}/{task.id}: wait condition", log):
            continue  # keeps waiting: checked once trusted
        result = run_validation(v, str(repo.root), {"FLOWGIT_PLAN": plan_id, "FLOWGIT_TASK": task.id})
        delay = retry.delay(wait_policy(plan, repo), rec.wait_checks + 1)

        def decide(w: Write, task_id: str = task.id) -> bool:
            cur = w.state.tasks.get(task_id)
            # gone, no longer waiting, or another watcher recorded a check meanwhile: the
            # backoff must advance once per check, not once per watcher
            if cur is None or cur.waiting_on != ("wait",) or cur.record.wait_checks != checks:
                return False
            w.append(task_id, [make_event("task.wait", plan_id, task_id, actor, cur.record.last_clock + 1,
                                          {"ok": result.ok, "exit_code": result.exit_code,
                                           "next_at": None if result.ok else w.now + delay}, w.now)])
            w.message = commit_message(plan_id, task_id, "wait satisfied" if result.ok else "waiting", actor)
            return True

        checks = rec.wait_checks
        try:
            recorded, _ = repo.write(plan_id, decide)
        except (FlowError, IllegalTransition) as exc:
            log(f"{plan_id}/{task.id}: wait check not recorded: {exc.message}")
            continue
        if not recorded:
            continue
        checked += 1
        log(f"{plan_id}/{task.id}: wait condition {'met' if result.ok else f'not met; next check in {delay:g}s'}")
    return checked
