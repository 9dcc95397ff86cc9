"""Long-running orchestration driven by the watcher: signals, scheduled discovery, outside
conditions re-checked with backoff, and automatic compaction. Each action is decided under
the repository lock and recorded as events, so two watchers never do it twice."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from flowgit import retry
from flowgit.errors import FlowError, IllegalTransition
from flowgit.events import PLAN_LOG, Event, canonical, make_event, parse_time
from flowgit.model import Plan, RetryPolicy, Validation, argv_of, parse_seconds, policy_for
from flowgit.pipeline import plan_clock, run_validation
from flowgit.state import PlanState
from flowgit.store import FlowRepo, commit_message
from flowgit.txn import transaction

Log = Callable[[str], None]


# ----- signals ---------------------------------------------------------------------------------

def pending_signals(events: list[Event]) -> list[Event]:
    handled = {e.data.get("signal") for e in events if e.type == "signal.handled"}
    return [e for e in canonical(events) if e.type == "signal.received" and e.id not in handled]


def handle_signals(repo: FlowRepo, plan_id: str, actor: str, log: Log) -> int:
    done = 0
    for sig in pending_signals(list(repo.plan_events(plan_id))):
        name = str(sig.data.get("name"))
        action = repo.config.signals.get(name)
        if action is None:
            outcome: dict[str, Any] = {"outcome": "ignored", "reason": f"no action configured for {name!r}"}
            _record_signal(repo, plan_id, sig, actor, outcome, {})
            log(f"{plan_id}: signal {name}: no action configured (recorded as ignored)")
            done += 1
            continue
        if not _start_signal(repo, plan_id, sig, actor):
            continue
        files: dict[Path, bytes] = {}
        try:
            if "builtin" in action:
                outcome, files = _builtin(repo, plan_id, str(action["builtin"]), sig.data.get("data") or {})
            else:
                v = Validation(name=name, argv=argv_of(action.get("run"), f"signals.{name}.run"),
                               timeout=float(action.get("timeout", 600)))
                env = {"FLOWGIT_PLAN": plan_id, "FLOWGIT_SIGNAL": name,
                       "FLOWGIT_SIGNAL_DATA": json.dumps(sig.data.get("data") or {})}
                r = run_validation(v, str(repo.root), env)
                outcome = {"outcome": "ok" if r.ok else "failed", "exit_code": r.exit_code,
                           "duration": r.duration, "output_tail": r.output_tail}
        except FlowError as exc:
            outcome = {"outcome": "failed", "error": exc.message}
        _record_signal(repo, plan_id, sig, actor, outcome, files)
        log(f"{plan_id}: signal {name}: {outcome['outcome']}")
        done += 1
    return done


def _start_signal(repo: FlowRepo, plan_id: str, sig: Event, actor: str) -> bool:
    """Take the signal under the lock, so only one watcher runs its action."""
    def decide(state: PlanState, now: float) -> Any:
        events = list(repo.plan_events(plan_id))
        if any(e.type == "signal.handled" and e.data.get("signal") == sig.id for e in events):
            return {}, {}, "", False
        ev = make_event("signal.handled", plan_id, None, actor, plan_clock(repo, plan_id),
                        {"signal": sig.id, "name": sig.data.get("name"), "outcome": "started"}, now)
        return {repo.log_file(plan_id, PLAN_LOG): [ev]}, {}, \
            commit_message(plan_id, None, f"signal {sig.data.get('name')} started", actor), True
    taken, _ = transaction(repo, plan_id, decide)
    return bool(taken)


def _record_signal(repo: FlowRepo, plan_id: str, sig: Event, actor: str, outcome: dict[str, Any],
                   files: Mapping[Path, bytes]) -> None:
    def decide(state: PlanState, now: float) -> Any:
        ev = make_event("signal.handled", plan_id, None, actor, plan_clock(repo, plan_id),
                        {"signal": sig.id, "name": sig.data.get("name"), **outcome}, now)
        return {repo.log_file(plan_id, PLAN_LOG): [ev]}, files, \
            commit_message(plan_id, None, f"signal {sig.data.get('name')} {outcome['outcome']}", actor), None
    transaction(repo, plan_id, decide)


def _builtin(repo: FlowRepo, plan_id: str, name: str, data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[Path, bytes]]:
    if name == "add_tasks":
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
    from flowgit.commands.plans import append_tasks, check_plan_text

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
    text = loaded.path.read_text(encoding="utf-8")
    if new:
        text = append_tasks(text, repo.rel(loaded.path), new)
        check_plan_text(repo, text, repo.rel(loaded.path), plan_id)
    return text, [t["id"] for t in new]


# ----- scheduled discovery ---------------------------------------------------------------------

def last_runs(events: list[Event]) -> dict[str, float]:
    out: dict[str, float] = {}
    for ev in canonical(events):
        if ev.type == "schedule.ran":
            out[str(ev.data.get("schedule"))] = ev.timestamp
        elif ev.type == "plan.snapshot":
            for k, v in ((ev.data.get("state") or {}).get("schedules") or {}).items():
                out[k] = parse_time(v)
    return out


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
        if not due_schedules([sched], last_runs(list(repo.plan_events(plan_id))), now):
            continue
        argv = argv_of(sched.get("run"), f"schedules.{sid}.run")
        code, out = run_discovery(argv, repo.root, float(sched.get("timeout", 600)),
                                  {"FLOWGIT_PLAN": plan_id, "FLOWGIT_SCHEDULE": sid})
        items, problems = parse_discovery(out)
        count += _apply_discovery(repo, plan_id, sid, actor, items, problems, code, log, now)
    return count


def run_discovery(argv: tuple[str, ...], cwd: Path, timeout: float, env: Mapping[str, str]) -> tuple[int, str]:
    """Run a discovery command (argv, never a shell) and return its exit code and stdout."""
    try:
        proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, timeout=timeout,
                              env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, ""
    except OSError:
        return 127, ""
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


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
    from flowgit import yamlio
    from flowgit.ids import is_valid_id

    def decide(state: PlanState, now: float) -> Any:
        runs = last_runs(list(repo.plan_events(plan_id)))
        sched = next(s for s in repo.config.schedules if str(s.get("id")) == sid)
        if not due_schedules([sched], runs, started):
            return {}, {}, "", None  # another watcher ran it meanwhile
        tasks = [i for i in items if i.get("kind", "task") == "task" and i.get("plan", plan_id) == plan_id]
        plans = [i for i in items if i.get("kind") == "plan"]
        files: dict[Path, bytes] = {}
        added: list[str] = []
        if tasks and code == 0:
            text, added = add_tasks_text(repo, plan_id, tasks)
            if added:
                files[repo.plan_file(plan_id)] = text.encode()
        created = []
        appends: dict[Path, list[Event]] = {}
        for p in plans if code == 0 else []:
            pid = p.get("id")
            if not is_valid_id(pid) or repo.plan_file(str(pid)).exists():
                continue
            data = {"id": pid, "title": p.get("title") or pid, "goal": p.get("goal") or "",
                    "tasks": p.get("tasks") or []}
            if p.get("parent"):
                data["parent"] = p["parent"]
            files[repo.plan_file(str(pid))] = yamlio.dump_new(data).encode()
            appends[repo.log_file(str(pid), PLAN_LOG)] = [make_event(
                "plan.created", str(pid), None, actor, 1, {"title": data["title"], "schedule": sid}, now)]
            created.append(str(pid))
        ev = make_event("schedule.ran", plan_id, None, actor, plan_clock(repo, plan_id),
                        {"schedule": sid, "exit_code": code, "tasks_added": added,
                         "plans_created": created, "problems": problems}, now)
        appends[repo.log_file(plan_id, PLAN_LOG)] = [ev]
        return appends, files, commit_message(plan_id, None, f"schedule {sid}", actor), (added, created)

    result, _ = transaction(repo, plan_id, decide)
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

        def decide(state: PlanState, now: float, task_id: str = task.id) -> Any:
            cur = state.tasks[task_id]
            if cur.waiting_on != ("wait",):
                return {}, {}, "", None
            ev = make_event("task.wait", plan_id, task_id, actor, cur.record.last_clock + 1,
                            {"ok": result.ok, "exit_code": result.exit_code,
                             "next_at": None if result.ok else now + delay}, now)
            return {repo.log_file(plan_id, task_id): [ev]}, {}, \
                commit_message(plan_id, task_id, "wait satisfied" if result.ok else "waiting", actor), None

        try:
            transaction(repo, plan_id, decide)
        except (FlowError, IllegalTransition) as exc:
            log(f"{plan_id}/{task.id}: wait check not recorded: {exc.message}")
            continue
        checked += 1
        log(f"{plan_id}/{task.id}: wait condition {'met' if result.ok else f'not met; next check in {delay:g}s'}")
    return checked


# ----- automatic compaction --------------------------------------------------------------------

def auto_compact(repo: FlowRepo, plan_id: str, actor: str, log: Log) -> int:
    threshold = repo.config.compact_threshold
    if threshold <= 0:
        return 0
    from flowgit.commands.compact import compact_plan

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
