"""Long-running orchestration driven by the watcher: signals, scheduled discovery, outside
conditions re-checked with backoff, and automatic compaction. Each action is decided under
the repository lock and recorded as events, so two watchers never do it twice."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from flowgit import proc
from flowgit.core import retry
from flowgit.core.events import PLAN_LOG, Event, canonical, format_time, make_event, parse_time
from flowgit.core.model import Plan, RetryPolicy, Validation, argv_of, parse_seconds, policy_for
from flowgit.errors import FlowError, IllegalTransition
from flowgit.formats import yamlio
from flowgit.ops.phases import OUTPUT_TAIL, plan_clock, run_validation
from flowgit.store.repo import FlowRepo
from flowgit.store.writing import Write, commit_message

Log = Callable[[str], None]


# ----- signals ---------------------------------------------------------------------------------

def pending_signals(events: list[Event]) -> list[Event]:
    from flowgit.core.compaction import handled_signal_ids

    handled = handled_signal_ids(events)
    return [e for e in canonical(events) if e.type == "signal.received" and e.id not in handled]


def _is_handled(events: Sequence[Event], sig_id: str) -> bool:
    from flowgit.core.compaction import handled_signal_ids

    return sig_id in handled_signal_ids(events)


def handle_signals(repo: FlowRepo, plan_id: str, actor: str, log: Log) -> int:
    done = 0
    for sig in pending_signals(list(repo.plan_events(plan_id))):
        name = str(sig.data.get("name"))
        action = repo.config.signals.get(name)
        if action is None:
            outcome: dict[str, Any] = {"outcome": "ignored", "reason": f"no action configured for {name!r}"}
            # under the lock and only if still unhandled: two watchers record it once
            if _record_signal(repo, plan_id, sig, actor, outcome, {}, only_if_unhandled=True):
                log(f"{plan_id}: signal {name}: no action configured (recorded as ignored)")
                done += 1
            continue
        if not isinstance(action, Mapping):
            action = {}
        if "builtin" in action and _plan_edited(repo, plan_id, f"signal {name}", log):
            continue  # stays pending: handled once the user's edits are committed
        if not _start_signal(repo, plan_id, sig, actor):
            continue
        files: dict[Path, bytes] = {}
        data = sig.data.get("data")
        try:
            if "builtin" in action:
                outcome, files = _builtin(repo, plan_id, str(action["builtin"]),
                                          {} if data is None else data)
            else:
                argv = argv_of(action.get("run"), f"signals.{name}.run")
                payload = json.dumps({} if data is None else data)
                env = {"FLOWGIT_PLAN": plan_id, "FLOWGIT_SIGNAL": name, "FLOWGIT_SIGNAL_DATA": payload}
                code, duration, tail = run_action(argv, repo.root, float(action.get("timeout", 600)),
                                                  env, payload)
                outcome = {"outcome": "ok" if code == 0 else "failed", "exit_code": code,
                           "duration": duration, "output_tail": tail}
        except FlowError as exc:
            outcome = {"outcome": "failed", "error": exc.message}
        except (TypeError, ValueError) as exc:
            outcome = {"outcome": "failed", "error": f"signals.{name}: {exc}"}
        _record_signal(repo, plan_id, sig, actor, outcome, files)
        log(f"{plan_id}: signal {name}: {outcome['outcome']}")
        done += 1
    return done


def _plan_edited(repo: FlowRepo, plan_id: str, what: str, log: Log) -> bool:
    """The user has uncommitted edits in plan.yaml: writing it now would commit them as ours."""
    rel = repo.plan_edited(plan_id)
    if rel is None:
        return False
    log(f"{plan_id}: {what}: waiting: {rel} has uncommitted changes")
    return True


def _start_signal(repo: FlowRepo, plan_id: str, sig: Event, actor: str) -> bool:
    """Take the signal under the lock, so only one watcher runs its action."""
    with repo.writing(plan_id) as w:
        if _is_handled(repo.plan_events(plan_id), sig.id):
            return False
        w.append(PLAN_LOG, [make_event("signal.handled", plan_id, None, actor, plan_clock(repo, plan_id),
                                       {"signal": sig.id, "name": sig.data.get("name"),
                                        "outcome": "started"}, w.now)])
        w.message = commit_message(plan_id, None, f"signal {sig.data.get('name')} started", actor)
    return True


def _record_signal(repo: FlowRepo, plan_id: str, sig: Event, actor: str, outcome: dict[str, Any],
                   files: Mapping[Path, bytes], only_if_unhandled: bool = False) -> bool:
    with repo.writing(plan_id) as w:
        if only_if_unhandled and _is_handled(repo.plan_events(plan_id), sig.id):
            return False
        w.append(PLAN_LOG, [make_event("signal.handled", plan_id, None, actor, plan_clock(repo, plan_id),
                                       {"signal": sig.id, "name": sig.data.get("name"), **outcome}, w.now)])
        for path, data in files.items():
            w.replace(path, data)
        w.message = commit_message(plan_id, None, f"signal {sig.data.get('name')} {outcome['outcome']}", actor)
    return True


def run_action(argv: tuple[str, ...], cwd: Path, timeout: float, env: Mapping[str, str],
               stdin: str) -> tuple[int, float, str]:
    """Run a signal's argv action (never a shell) with the signal's data on stdin: its exit
    code, duration and the tail of its output."""
    result = proc.run(argv, cwd=cwd, extra_env=env, timeout=timeout, input=stdin.encode("utf-8"))
    return result.returncode, result.duration, result.text(OUTPUT_TAIL)


def _builtin(repo: FlowRepo, plan_id: str, name: str, data: Any) -> tuple[dict[str, Any], dict[Path, bytes]]:
    if name == "add_tasks":
        if not isinstance(data, Mapping):
            raise FlowError('add_tasks: --data must be a JSON object like {"tasks": [{"id": ..., "title": ...}]}')
        tasks = data.get("tasks") or []
        if not isinstance(tasks, list):
            raise FlowError("add_tasks: data.tasks must be a list of tasks")
        text, added = add_tasks_text(repo, plan_id, tasks)
        if not added:
            return {"outcome": "ok", "added": []}, {}
        return {"outcome": "ok", "added": added}, {repo.plan_file(plan_id): text.encode()}
    raise FlowError(f"unknown builtin signal action {name!r} (known: add_tasks)")


def add_tasks_text(repo: FlowRepo, plan_id: str, tasks: list[Any]) -> tuple[str, list[str]]:
    """The plan text with these tasks appended, skipping ids it already has (idempotent)."""
    from flowgit.store.planedit import append_tasks, check_plan_text

    loaded = repo.load_plan(plan_id)
    existing = set(loaded.plan.node_ids())
    new = []
    for t in tasks:
        if not isinstance(t, dict) or "id" not in t or "title" not in t:
            raise FlowError(f"plan {plan_id}: a task to add needs an id and a title: {t!r}")
        if t["id"] in existing:
            continue
        existing.add(t["id"])
        new.append({k: v for k, v in t.items() if k != "kind" and k != "plan"})
    text = yamlio.read_text(loaded.path)
    if new:
        text = append_tasks(text, repo.rel(loaded.path), new)
        plan = check_plan_text(repo, text, repo.rel(loaded.path), plan_id)
        _refuse_cross_plan_cycle(repo, plan)
    return text, [t["id"] for t in new]


def _append_to(repo: FlowRepo, plan_id: str, text: str, task: Any) -> tuple[str, list[str]]:
    """`text` with one more task, checked like `add_tasks_text` (the same id twice: unchanged)."""
    from flowgit.store.planedit import append_tasks, check_plan_text

    if not isinstance(task, dict) or "id" not in task or "title" not in task:
        raise FlowError(f"a task to add needs an id and a title: {task!r}")
    display = repo.rel(repo.plan_file(plan_id))
    current = Plan.from_dict(yamlio.loads(text, display), display)
    if task["id"] in set(current.node_ids()):
        return text, []
    new = append_tasks(text, display, [{k: v for k, v in task.items() if k not in ("kind", "plan")}])
    plan = check_plan_text(repo, new, display, plan_id)
    _refuse_cross_plan_cycle(repo, plan)
    return new, [str(task["id"])]


def _refuse_cross_plan_cycle(repo: FlowRepo, plan: Plan) -> None:
    """`validate` rejects plans that wait on each other in a cycle: never write one."""
    from flowgit.core.semantic import cross_plan_cycle

    plans: dict[str, Plan] = {}
    for pid in repo.plan_ids():
        if pid == plan.id:
            continue
        try:
            plans[pid] = repo.load_plan(pid).plan
        except FlowError:
            continue
    plans[plan.id] = plan
    cycle = cross_plan_cycle(plans)
    if cycle:
        raise FlowError(f"plan {plan.id}: the new tasks would make plans wait on each other in a "
                        f"cycle {' -> '.join(cycle)}")


# ----- scheduled discovery ---------------------------------------------------------------------

def last_runs(events: list[Event]) -> dict[str, float]:
    out: dict[str, float] = {}
    for ev in canonical(events):
        if ev.type == "schedule.ran":
            out[str(ev.data.get("schedule"))] = slot_of(ev)
        elif ev.type == "plan.snapshot":
            for k, v in ((ev.data.get("state") or {}).get("schedules") or {}).items():
                out[k] = parse_time(v)
    return out


def slot_of(ev: Event) -> float:
    """The time a `schedule.ran` event ran for: its `slot` (the pass's clock), else its time."""
    slot = ev.data.get("slot")
    if isinstance(slot, str):
        try:
            return parse_time(slot)
        except ValueError:
            pass
    return ev.timestamp


def due_schedules(schedules: list[Mapping[str, Any]], runs: Mapping[str, float], now: float) -> list[Mapping[str, Any]]:
    """A schedule is due once its interval has passed since its last run: a watcher that was
    down for many slots runs it once, not once per missed slot."""
    due = []
    for sched in schedules:
        every = parse_seconds(sched.get("every", "1h"), f"schedules.{sched.get('id')}.every")
        last = runs.get(str(sched.get("id")))
        if last is None or now - last >= every:
            due.append(sched)
    return due


def run_schedules(repo: FlowRepo, actor: str, log: Log, now: float | None = None) -> int:
    now = time.time() if now is None else now
    count = 0
    for sched in repo.config.schedules:
        if not isinstance(sched, Mapping) or not sched.get("plan"):
            continue
        plan_id = str(sched["plan"])
        sid = str(sched.get("id"))
        # one bad schedule (unknown plan, bad interval or argv) is logged and skipped: it
        # must not stop the watcher's pass, nor the other schedules
        try:
            repo.load_plan(plan_id)
            if not due_schedules([sched], last_runs(list(repo.plan_events(plan_id))), now):
                continue
            if _plan_edited(repo, plan_id, f"schedule {sid}", log):
                continue
            argv = argv_of(sched.get("run"), f"schedules.{sid}.run")
            code, out = run_discovery(argv, repo.root, float(sched.get("timeout", 600)),
                                      {"FLOWGIT_PLAN": plan_id, "FLOWGIT_SCHEDULE": sid})
            items, problems = parse_discovery(out)
            count += _apply_discovery(repo, plan_id, sid, actor, items, problems, code, log, now)
        except FlowError as exc:
            log(f"schedule {sid}: skipped: {exc.message}")
        except (TypeError, ValueError) as exc:
            log(f"schedule {sid}: skipped: {exc}")
    return count


def run_discovery(argv: tuple[str, ...], cwd: Path, timeout: float, env: Mapping[str, str]) -> tuple[int, str]:
    """Run a discovery command (argv, never a shell) and return its exit code and stdout
    (none after a timeout: a cut-off list of tasks is not the list)."""
    result = proc.run(argv, cwd=cwd, extra_env=env, timeout=timeout, merge_stderr=False, keep="all")
    if result.timed_out or result.error:
        return result.returncode, ""
    return result.returncode, result.text()


def parse_discovery(output: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Each JSON object line is a task (default) or, with "kind": "plan", a plan to create."""
    items: list[dict[str, Any]] = []
    problems: list[str] = []
    for n, line in enumerate(output.splitlines(), start=1):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            problems.append(f"line {n}: not JSON")
            continue
        if isinstance(obj, dict):
            items.append(obj)
    return items, problems


def _apply_discovery(repo: FlowRepo, plan_id: str, sid: str, actor: str, items: list[dict[str, Any]],
                     problems: list[str], code: int, log: Log, started: float) -> int:
    from flowgit.ids import is_valid_id

    def decide(w: Write) -> tuple[list[str], list[str]] | None:
        now = w.now
        runs = last_runs(list(repo.plan_events(plan_id)))
        sched = next(s for s in repo.config.schedules if str(s.get("id")) == sid)
        if not due_schedules([sched], runs, started):
            return None  # another watcher ran it meanwhile
        from flowgit.store.planedit import check_plan_text

        issues = list(problems)
        tasks = [i for i in items if i.get("kind", "task") == "task" and i.get("plan", plan_id) == plan_id]
        plans = [i for i in items if i.get("kind") == "plan"]
        added: list[str] = []
        if tasks and code == 0:
            # a bad item is reported and skipped; it must not keep the good ones out forever
            try:
                text, added = add_tasks_text(repo, plan_id, tasks)
            except FlowError:
                text, added = yamlio.read_text(repo.load_plan(plan_id).path), []
                for t in tasks:
                    try:
                        text, more = _append_to(repo, plan_id, text, t)
                        added += more
                    except FlowError as exc:
                        issues.append(f"task {t.get('id')!r}: {exc.message}")
            if added:
                w.replace(repo.plan_file(plan_id), text.encode())
        created = []
        for p in plans if code == 0 else []:
            pid = p.get("id")
            if not is_valid_id(pid) or repo.plan_file(str(pid)).exists():
                if not is_valid_id(pid):
                    issues.append(f"plan {pid!r}: not a valid plan id")
                continue
            data = {"id": pid, "title": p.get("title") or pid, "goal": p.get("goal") or "",
                    "tasks": [{k: v for k, v in t.items() if k not in ("kind", "plan")}
                              if isinstance(t, dict) else t for t in p.get("tasks") or []]}
            if p.get("parent"):
                data["parent"] = p["parent"]
            rendered = yamlio.dump_new(data)
            try:
                check_plan_text(repo, rendered, repo.rel(repo.plan_file(str(pid))), str(pid))
            except FlowError as exc:
                issues.append(f"plan {pid!r}: {exc.message}")
                continue
            w.replace(repo.plan_file(str(pid)), rendered.encode())
            w.append(PLAN_LOG, [make_event("plan.created", str(pid), None, actor, 1,
                                           {"title": data["title"], "schedule": sid}, now)], plan_id=str(pid))
            created.append(str(pid))
        # `slot` is the time the schedule ran for (the pass's clock): the next run is due an
        # interval after it, however long the watcher was down before
        ev = make_event("schedule.ran", plan_id, None, actor, plan_clock(repo, plan_id),
                        {"schedule": sid, "slot": format_time(started),
                         "outcome": "ok" if code == 0 else "failed", "exit_code": code,
                         "tasks_added": added, "plans_created": created, "problems": issues}, now)
        w.append(PLAN_LOG, [ev])
        w.message = commit_message(plan_id, None, f"schedule {sid}", actor)
        return added, created

    result, _ = repo.write(plan_id, decide)
    if result is None:
        return 0
    added, created = result
    log(f"{plan_id}: schedule {sid} ran (exit {code}): +{len(added)} task(s), {len(created)} plan(s)")
    return 1


# ----- outside conditions ----------------------------------------------------------------------

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
    now = time.time()
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
        v = Validation(name=f"wait:{task.id}", argv=argv_of(spec.get("run"), f"{task.id}.wait.run"),
                       timeout=float(spec.get("timeout", 60)))
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


# ----- automatic compaction --------------------------------------------------------------------

def auto_compact(repo: FlowRepo, plan_id: str, actor: str, log: Log) -> int:
    threshold = repo.config.compact_threshold
    if threshold <= 0:
        return 0
    from flowgit.ops.compact import compact_plan

    events_dir = repo.safe("plans", plan_id, "events")
    big = [p for p in events_dir.glob("*.jsonl")
           if os.path.getsize(p) > 0 and _count_lines(p) > threshold] if events_dir.is_dir() else []
    if not big:
        return 0
    result = compact_plan(repo, plan_id, repo.config.compact_keep, actor, threshold)
    if result["logs"]:
        log(f"{plan_id}: compacted {len(result['logs'])} log(s) past {threshold} events")
    return len(result["logs"])


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def next_wake(repo: FlowRepo, now: float) -> float | None:
    """The earliest time something falls due without any file changing: a schedule, a wait
    condition's next check, a retry, a lease running out. The watcher sleeps until then
    (or its rescan) instead of finding it on a later pass."""
    times: list[float] = []
    for sched in repo.config.schedules:
        try:
            every = parse_seconds(sched.get("every", "1h"), "schedule")
            last = last_runs(list(repo.plan_events(str(sched["plan"])))).get(str(sched.get("id")))
        except (FlowError, KeyError, TypeError, AttributeError):
            continue
        if last is not None:
            times.append(last + every)
    for pid in repo.plan_ids():
        try:
            state = repo.state(pid, now)
        except FlowError:
            continue
        for view in state.tasks.values():
            if view.waiting_on == ("wait",) and view.record.wait_next_at is not None:
                times.append(view.record.wait_next_at)
            times += [t for t in (view.retry_at, view.lease_until) if t is not None]
    future = [t for t in times if t > now]  # what is due now was this pass's work
    return min(future) if future else None


def watcher_extras(repo: FlowRepo, actor: str, log: Log) -> None:
    """Everything the watcher does besides the phase rules, once per pass."""
    run_schedules(repo, actor, log)
    for pid in repo.plan_ids():
        try:
            handle_signals(repo, pid, actor, log)
            check_waits(repo, pid, actor, log)
            auto_compact(repo, pid, actor, log)
        except FlowError as exc:
            log(f"{pid}: {exc.message}")
