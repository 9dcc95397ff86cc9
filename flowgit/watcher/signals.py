"""Signals sent to a plan (`flowgit signal`): the watcher runs the configured action once, however
many watchers run, and records its outcome. Built in: `add_tasks`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from flowgit import proc
from flowgit.core import commands
from flowgit.core.commands import Command
from flowgit.core.events import PLAN_LOG, Event, canonical, make_event
from flowgit.core.model import argv_of, parse_seconds
from flowgit.errors import FlowError
from flowgit.formats import yamlio
from flowgit.ops.phases import OUTPUT_TAIL, plan_clock
from flowgit.store import plansplice
from flowgit.store.repo import FlowRepo
from flowgit.store.writing import commit_message
from flowgit.watcher.trusted import untrusted

Log = Callable[[str], None]


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
        if "builtin" in action and waiting_for_edits(repo, plan_id, f"signal {name}", log):
            continue  # stays pending: handled once the user's edits are committed
        if "builtin" not in action and untrusted(repo, _signal_command(name, action), plan_id,
                                                 f"{plan_id}: signal {name}", log):
            continue  # stays pending: handled once trusted
        if not _start_signal(repo, plan_id, sig, actor):
            continue
        files: dict[Path, bytes] = {}
        data = sig.data.get("data")
        try:
            if "builtin" in action:
                _after.clear()
                outcome, files = _builtin(repo, plan_id, str(action["builtin"]),
                                          {} if data is None else data)
            else:
                argv = argv_of(action.get("run"), f"signals.{name}.run")
                payload = json.dumps({} if data is None else data)
                env = {"FLOWGIT_PLAN": plan_id, "FLOWGIT_SIGNAL": name, "FLOWGIT_SIGNAL_DATA": payload}
                timeout = parse_seconds(action.get("timeout", 600), f"signals.{name}.timeout")
                code, duration, tail = run_action(argv, repo.root, timeout, env, payload)
                outcome = {"outcome": "ok" if code == 0 else "failed", "exit_code": code,
                           "duration": duration, "output_tail": tail}
        except FlowError as exc:
            outcome = {"outcome": "failed", "error": exc.message}
        except (TypeError, ValueError) as exc:
            outcome = {"outcome": "failed", "error": f"signals.{name}: {exc}"}
        _record_signal(repo, plan_id, sig, actor, outcome, files)
        while _after:
            _after.pop(0)()
        log(f"{plan_id}: signal {name}: {outcome['outcome']}")
        done += 1
    return done


def _signal_command(name: str, action: Mapping[str, Any]) -> Command | None:
    try:
        argv = argv_of(action.get("run"), f"signals.{name}.run")
    except FlowError:
        return None  # said by the action itself when it runs
    return commands.signal(name, argv) if argv else None


def waiting_for_edits(repo: FlowRepo, plan_id: str, what: str, log: Log) -> bool:
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


_after: list[Callable[[], None]] = []  # what a builtin does once its files are written


def _builtin(repo: FlowRepo, plan_id: str, name: str, data: Any) -> tuple[dict[str, Any], dict[Path, bytes]]:
    if name == "add_tasks":
        if not isinstance(data, Mapping):
            raise FlowError('add_tasks: --data must be a JSON object like {"tasks": [{"id": ..., "title": ...}]}')
        tasks = data.get("tasks") or []
        if not isinstance(tasks, list):
            raise FlowError("add_tasks: data.tasks must be a list of tasks")
        before = repo.load_plan(plan_id).hash
        edited, added = plansplice.add_tasks_text(repo, plan_id, tasks)
        if edited is None:
            return {"outcome": "ok", "added": []}, {}
        plansplice.store_version(repo, edited, yamlio.read_text(repo.load_plan(plan_id).path))
        _after.append(lambda: plansplice.remember(repo, edited, before, added))  # the next read parses nothing
        return {"outcome": "ok", "added": added}, {repo.plan_file(plan_id): edited.text.encode()}
    raise FlowError(f"unknown builtin signal action {name!r} (known: add_tasks)")


