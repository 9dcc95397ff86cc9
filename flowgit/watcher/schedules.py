"""Scheduled discovery (the plan-writer's scanner): a configured command runs every interval and
the tasks and plans it prints are added, once per slot however many watchers run."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from flowgit import proc
from flowgit.clock import wall_now
from flowgit.core import commands
from flowgit.core.events import (
    PLAN_LOG,
    Event,
    canonical,
    format_time,
    load_line,
    make_event,
    parse_time,
)
from flowgit.core.model import argv_of, parse_seconds
from flowgit.errors import FlowError
from flowgit.formats import yamlio
from flowgit.ops.phases import plan_clock
from flowgit.store.planedit import append_task_text
from flowgit.store.plansplice import add_tasks_text
from flowgit.store.repo import FlowRepo
from flowgit.store.writing import Write, commit_message
from flowgit.watcher.signals import waiting_for_edits
from flowgit.watcher.trusted import untrusted

Log = Callable[[str], None]


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
    now = wall_now() if now is None else now
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
            if waiting_for_edits(repo, plan_id, f"schedule {sid}", log):
                continue
            argv = argv_of(sched.get("run"), f"schedules.{sid}.run")
            if argv and untrusted(repo, commands.schedule(sid, argv), None, f"schedule {sid}", log):
                continue  # stays due: it runs once trusted
            timeout = parse_seconds(sched.get("timeout", 600), f"schedules.{sid}.timeout")
            code, out = run_discovery(argv, repo.root, timeout, {"FLOWGIT_PLAN": plan_id, "FLOWGIT_SCHEDULE": sid})
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
            obj = load_line(line.encode())
        except ValueError:  # nesting too deep and non-finite numbers too
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
                edited, added = add_tasks_text(repo, plan_id, tasks)
                text = edited.text if edited is not None else ""
            except FlowError:
                text, added = yamlio.read_text(repo.load_plan(plan_id).path), []
                for t in tasks:
                    try:
                        text, more = append_task_text(repo, plan_id, text, t)
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
