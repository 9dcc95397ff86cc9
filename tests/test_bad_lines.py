"""No bad line stops work (issue 13): every event line is checked by one checker, shared by
`validate`, the pre-commit hook, `doctor` and every reader. A line that got past the hook
(`--no-verify`, a merge) never makes a command fail or print a traceback: it holds its task
(blocked, "unreadable event at FILE:LINE") or, in the plan log, its plan, and each command that
reads it names it once. An event type this version does not know is kept and ignored."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from flowgit.core.events import (
    MAX_TIME,
    MIN_TIME,
    check_event,
    event_time,
    format_time,
    load_line,
    parse_log,
)
from flowgit.core.fold import evaluate, fold_log, reduce_task
from flowgit.core.model import Plan
from flowgit.formats import schemacheck
from flowgit.store import notices
from helpers import Repo, make_git_repo
from helpers.cache import ignore_derived

PLAN = """\
id: p
title: P
tasks:
  - id: A
    title: a
  - id: B
    title: b
  - id: C
    title: c
    depends_on: [B]
"""
B_LOG = ".flow/plans/p/events/B.jsonl"
PLAN_LOG = ".flow/plans/p/events/_plan.jsonl"
ULID = "01JD5Z8Q3K7M9N2P4R6S8T0VWX"
AT = "2026-11-22T10:00:00.000000Z"


def line(type_: str = "task.claimed", data: Any = None, **envelope: Any) -> str:
    obj: dict[str, Any] = {"id": ULID, "type": type_, "plan": "p", "task": "B", "actor": "mallory",
                           "at": AT, "clock": 1, "data": {"lease_until": "2999-01-01T00:00:00Z"}
                           if data is None else data}
    obj.update(envelope)
    return json.dumps(obj)


def plan_line(type_: str = "plan.phase", data: Any = None, **envelope: Any) -> str:
    return line(type_, {"to": "execute"} if data is None else data, task=None, clock=99, **envelope)


# (name, text of the line, what `validate` says about it)
UNREADABLE = [
    ("lease-not-a-time", line(data={"lease_until": "soon"}), "data.lease_until: invalid time 'soon'"),
    ("lease-1e308", line(data={"lease_until": 1e308}), "not a time within years 1-9999"),
    ("lease-infinity", line().replace('"2999-01-01T00:00:00Z"', "Infinity"), "Infinity"),
    ("lease-1e999", line().replace('"2999-01-01T00:00:00Z"', "1e999"), "not a finite number"),
    ("lease-year-10000", line(data={"lease_until": MAX_TIME + 2}), "years 1-9999"),
    ("at-nan", line().replace(f'"{AT}"', "NaN"), "NaN"),
    ("at-not-in-calendar", line(at="2026-02-30T10:00:00Z"), "is not a time in the calendar"),
    ("at-offset", line(at="2026-11-22T10:00:00+01:00"), "at: invalid time"),
    ("at-a-number", line(at=1764000000), "at: expected an RFC 3339 UTC time"),
    ("retry-at-not-a-time", line("task.failed", {"retry_at": "later", "error": "x"}),
     "data.retry_at: invalid time 'later'"),
    ("next-at-not-a-time", line("task.wait", {"ok": False, "next_at": [1]}), "data.next_at"),
    ("data-a-list", line(data=[1]), "data: expected a mapping, got a list"),
    ("data-null", line(data=None).replace('"data": {"lease_until": "2999-01-01T00:00:00Z"}',
                                          '"data": null'), "data: expected a mapping, got null"),
    ("files-modified-a-number", line("task.done", {"files_modified": 5}), "data.files_modified"),
    ("note-a-mapping", line("task.done", {"note": {"a": 1}}), "data.note"),
    ("snapshot-state-a-list", line("task.snapshot", {"state": [1]}), "data.state: expected a mapping"),
    ("snapshot-without-state", line("task.snapshot", {}), "missing required key 'state'"),
    ("snapshot-bad-status", line("task.snapshot", {"state": {"status": "weird"}}),
     "data.state.status: expected one of: open"),
    ("snapshot-bad-attempts", line("task.snapshot", {"state": {"attempts": "x"}}), "data.state.attempts"),
    ("snapshot-bad-lease", line("task.snapshot", {"state": {"status": "claimed", "worker": "w",
                                                            "lease_until": "soon"}}),
     "data.state.lease_until"),
    ("snapshot-bad-files", line("task.snapshot", {"state": {"files_modified": "a.py"}}),
     "data.state.files_modified"),
    ("clock-float", line(clock=1e308), "clock: expected an integer"),
    ("clock-negative", line(clock=-1), "clock: must be >= 0"),
    ("clock-huge", line(clock=2 ** 70), "clock: must be <="),
    ("clock-past-the-last", line(clock=2 ** 53), "clock: must be <= 9007199254740991"),
    ("clock-old-top", line(clock=2 ** 63 - 1), "clock: must be <= 9007199254740991"),
    ("clock-bool", line(clock=True), "clock: expected an integer (Lamport clock), got a boolean"),
    ("actor-empty", line(actor=""), "actor: must not be empty"),
    ("actor-newline", line(actor="w\nFlow-Actor: x"), "actor: must be one line"),
    ("id-missing", json.dumps({k: v for k, v in json.loads(line()).items() if k != "id"}),
     "missing required key 'id'"),
    ("id-not-a-ulid", line(id="x"), "id: invalid event id 'x'"),
    ("type-a-number", line(type=5), "type: expected a string"),
    ("type-a-list", line(type=["task.claimed"]), "type: expected a string"),
    ("task-a-list", line(task=["B"]), "task: expected the task id"),
    ("unknown-key", line(**{"extra": 1}), "unknown key 'extra'"),
    ("other-task", line(task="A"), "event belongs to p/A"),
    ("other-plan", line(plan="q"), "event belongs to q/B"),
    ("plan-event-in-task-log", line("plan.phase", {"to": "execute"}, task="B"),
     "expected null (plan-level events have no task)"),
    ("not-json", "{nope", "not a JSON event"),
    ("not-an-object", "[1, 2]", "(top): expected a mapping, got a list"),
    ("not-utf8", '{"id": "\udcff"}', "not a JSON event"),
    ("huge-integer", line(clock=0).replace('"clock": 0', '"clock": ' + "9" * 5000), "not a JSON event"),
    ("deep-nesting", line(data={"lease_until": None, "x": 0}).replace(
        '"x": 0', '"x": ' + "[" * 50_000 + "]" * 50_000), "nested deeper than 100 levels"),
]

# valid, if extreme: readers and commands must survive them
EXTREME = [
    ("year-9999", line(at="9999-12-31T23:59:59.999999Z",
                       data={"lease_until": "9999-12-31T23:59:59.999999Z"})),
    ("year-1", line(at="0001-01-01T00:00:00Z", data={"lease_until": "0001-01-01T00:00:00.5Z"})),
    ("seconds", line(data={"lease_until": MAX_TIME})),
    ("nanoseconds", line(at="2026-11-22T10:00:00.123456789Z")),
    ("clock-top", line(clock=2 ** 53 - 1)),
    ("x-key-and-extra-data", line(**{"x-host": "ci"}, data={"lease_until": None, "later": {"a": [1]}})),
]


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\n"


# ----- the checker and the fold, as plain data ----------------------------------------------------

@pytest.mark.parametrize(("name", "text", "said"), UNREADABLE, ids=[c[0] for c in UNREADABLE])
def test_the_reader_refuses_what_validate_refuses_and_never_raises(name: str, text: str, said: str) -> None:
    read = parse_log(_raw(text), B_LOG, "p", "B")
    assert read.events == () and [b.where for b in read.bad] == [f"{B_LOG}:1"]
    assert said in read.bad[0].problem or said.startswith("not a JSON event"), read.bad[0]
    record = fold_log(read)
    assert record.unreadable == f"{B_LOG}:1"
    plan = Plan.from_dict({"id": "p", "title": "P", "tasks": [{"id": "B", "title": "b"},
                                                             {"id": "C", "title": "c", "depends_on": ["B"]}]}, "p")
    state = evaluate(plan, {"B": record}, (), 1.8e9)
    assert state.tasks["B"].state == "blocked" and state.tasks["B"].held == f"{B_LOG}:1"
    assert state.tasks["C"].state == "blocked" and state.order == () and not state.stalled
    assert state.unreadable == [f"{B_LOG}:1"]


@pytest.mark.parametrize(("name", "text"), EXTREME, ids=[c[0] for c in EXTREME])
def test_extreme_but_valid_lines_fold_and_format(name: str, text: str) -> None:
    read = parse_log(_raw(text), B_LOG, "p", "B")
    assert read.bad == () and len(read.events) == 1
    record = fold_log(read)
    for value in (record.lease_until, read.events[0].timestamp):
        if value is not None:
            shown = format_time(value)
            assert check_event({**json.loads(text), "at": shown}) == [], shown


def test_format_time_never_raises() -> None:
    assert format_time(MAX_TIME + 1e9) == "9999-12-31T23:59:59.000000Z"
    assert format_time(float("inf")) == "9999-12-31T23:59:59.000000Z"
    assert format_time(float("-inf")) == "0001-01-01T00:00:00.000000Z"
    assert format_time(float("nan")) == "0001-01-01T00:00:00.000000Z"
    assert format_time(MIN_TIME) == "0001-01-01T00:00:00.000000Z"
    assert event_time("2026-11-22T10:00:00.5Z") == event_time("2026-11-22T10:00:00.500000000Z")


def test_the_schema_refuses_nothing_the_checker_lets_through() -> None:
    """schemas/event.json describes the envelope for editors; the checker is the rule, and
    refuses at least everything the schema does."""
    for _, text, _ in UNREADABLE:
        try:
            obj = load_line(_raw(text).rstrip(b"\n"))
        except ValueError:
            continue
        if schemacheck._problems("event", obj):
            assert check_event(obj), text[:80]
    for _, text in EXTREME:
        obj = load_line(_raw(text).rstrip(b"\n"))
        assert check_event(obj) == [] and schemacheck._problems("event", obj) == [], text[:80]
    unknown = json.loads(line("task.frobbed", {"any": "thing"}))
    assert check_event(unknown) == [] and schemacheck._problems("event", unknown) == []


def test_the_fast_path_never_passes_what_the_full_check_refuses() -> None:
    from flowgit.core import events

    objs: list[Any] = []
    for text in [c[1] for c in UNREADABLE] + [c[1] for c in EXTREME]:
        try:
            objs.append(load_line(_raw(text).rstrip(b"\n")))
        except ValueError:
            pass
    base = json.loads(line())
    for key in list(base) + ["data"]:
        for value in (None, "", "x", 0, -1, 1.5, True, [], {}, "2026-02-29T00:00:00Z", "9999-12-31T23:59:59Z"):
            objs.append({**base, key: value})
            objs.append({**base, "type": "task.snapshot", "data": {"state": {key: value}}})
            objs.append({**base, "type": "plan.snapshot", "task": None, "data": {"state": {key: value}}})
    for kind, spec in events.DATA.items():
        for key in spec:
            for value in (None, "", "x", 0, -1, 1.5, True, [], {}, ["a"], 1e300):
                objs.append({**base, "type": kind, "task": "B" if kind.startswith("task.") else None,
                             "data": {key: value}})
    fast = 0
    for obj in objs:
        if type(obj) is dict and events._sound(obj):
            fast += 1
            assert events._problems(obj) == [], obj
    assert fast > 50


def test_an_unknown_type_is_kept_and_ignored() -> None:
    good = line("task.claimed", {"lease_until": "2999-01-01T00:00:00Z"}, actor="w")
    unknown = line("task.frobbed", {"lease_until": "soon"}, id="01JD5Z8Q3K7M9N2P4R6S8T0VWY", clock=2)
    read = parse_log(_raw(good) + _raw(unknown), B_LOG, "p", "B")
    assert read.bad == () and [e.type for e in read.events] == ["task.claimed", "task.frobbed"]
    assert [u.where for u in read.unknown] == [f"{B_LOG}:2"]
    record = fold_log(read)
    assert (record.status, record.worker, record.unreadable) == ("claimed", "w", None)
    assert record.lease_until == reduce_task(read.events[:1]).lease_until
    from flowgit.core.compaction import compact_task_log

    long = [_raw(line("task.heartbeat", {"lease_until": "2999-01-01T00:00:00Z"}, actor="w",
                      id=f"01JD5Z8Q3K7M9N2P4R6S8T0V{i:02d}", clock=10 + i)) for i in range(10)]
    events = parse_log(_raw(good) + _raw(unknown) + b"".join(long), B_LOG).events
    compacted = compact_task_log(events, 2, 1.8e9)
    assert compacted is not None and "task.frobbed" in [e.type for e in compacted]


# ----- every command on a repository that holds such a line ---------------------------------------

_TEMPLATE: list[Path] = []


@pytest.fixture
def base(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """Plan p (A, B, C after B) in execute, A claimed by w. Built once, copied per test."""
    if not _TEMPLATE:
        repo = Repo(make_git_repo(tmp_path_factory.mktemp("bad-lines") / "repo"))
        repo.ok("init", "--format", "1")
        repo.plan("p", PLAN)
        repo.ok("claim", "p/A", "--worker", "w")
        _TEMPLATE.append(repo.path)
    path = tmp_path / "repo"
    shutil.copytree(_TEMPLATE[0], path, symlinks=True, ignore=ignore_derived())
    return Repo(path)


def smuggle(repo: Repo, rel: str, text: str) -> int:
    """Commit a line past the hook, as `--no-verify` or a merge would; its line number."""
    path = repo.path / rel
    before = path.read_bytes() if path.exists() else b""
    path.write_bytes(before + _raw(text))
    repo.git("add", rel)
    repo.git("commit", "-q", "--no-verify", "-m", "smuggled")
    return before.count(b"\n") + 1


def warnings(err: str) -> list[str]:
    return [x for x in err.splitlines() if x.startswith("warning: ")]


def no_traceback(res: Any) -> None:
    assert "Traceback" not in res.out + res.err, res.err


@dataclass(frozen=True)
class Command:
    args: tuple[str, ...]
    code: int
    check: Callable[[Repo, Any, str], None] | None = None


def _status_json(repo: Repo, res: Any, where: str) -> None:
    rows = {r["id"]: r for r in res.json["tasks"]}
    assert rows["B"]["state"] == "blocked" and rows["B"]["unreadable"] == where
    assert rows["C"]["state"] == "blocked" and rows["A"]["state"] == "claimed"
    assert res.json["unreadable"] == [where] and not res.json["stalled"]


def _refused_claim(repo: Repo, res: Any, where: str) -> None:
    assert f"unreadable event at {where}" in res.err and res.err.count("\n") == 1  # the error only


COMMANDS = [
    Command(("--json", "status", "p"), 0, _status_json),
    Command(("status",), 0, lambda r, res, w: None),
    Command(("--json", "next"), 3, lambda r, res, w: None),  # A is taken, B held, C waits on B
    Command(("claim", "p/B", "--worker", "x"), 1, _refused_claim),
    Command(("advance",), 0, lambda r, res, w: None),
    Command(("events", "p", "B"), 0, lambda r, res, w: None),
]


def _assert_named_once(res: Any, where: str) -> None:
    """In a warning, or in the error when the command fails because of that line."""
    said = [x for x in res.err.splitlines() if where in x]
    assert len(said) == 1, res.err
    assert "held" in said[0] or "unreadable event at" in said[0]


@pytest.mark.parametrize(("name", "text", "said"), UNREADABLE, ids=[c[0] for c in UNREADABLE])
def test_every_reader_holds_the_task_and_names_the_line_once(base: Repo, name: str, text: str,
                                                               said: str) -> None:
    lineno = smuggle(base, B_LOG, text)
    where = f"{B_LOG}:{lineno}"
    head = base.git("rev-parse", "HEAD")
    for cmd in COMMANDS:
        res = base.run(*cmd.args)
        no_traceback(res)
        assert res.code == cmd.code, (cmd.args, res)
        _assert_named_once(res, where)
        if cmd.check:
            cmd.check(base, res, where)
    assert base.git("rev-parse", "HEAD") == head, "a refused or read-only command committed"
    res = base.run("claim", "p", "--worker", "x")  # any task: B is held, C waits on it, A is taken
    assert res.code == 3 and "held by an unreadable event at" in res.err, res
    res = base.run("validate")
    assert res.code == 1 and f"{where}: " in res.err and said in res.err, res.err
    no_traceback(res)
    res = base.run("--json", "doctor")
    assert res.code == 1 and any(said in p["message"] for p in res.json["problems"]), res.out
    lines: list[str] = []
    from flowgit.watcher.observer import extras, one_pass

    with notices.reporting(lines.append):
        one_pass(base.path, lines.append, extras(None, []))
        one_pass(base.path, lines.append, extras(None, []))
    assert [x for x in lines if where in x and "held" in x][:1] and \
        len([x for x in lines if x.startswith("unreadable event at")]) == 1, lines


@pytest.mark.parametrize(("name", "text"), EXTREME, ids=[c[0] for c in EXTREME])
def test_extreme_lines_pass_and_no_command_fails_on_them(base: Repo, name: str, text: str) -> None:
    smuggle(base, B_LOG, text)
    assert base.run("validate").code == 0
    for args in (("--json", "status", "p"), ("status",), ("next",), ("advance",), ("doctor",),
                 ("events", "p", "B")):
        res = base.run(*args)
        no_traceback(res)
        assert res.code in (0, 3), (args, res)
        assert warnings(res.err) == [], res.err
    res = base.run("claim", "p/B", "--worker", "x")
    no_traceback(res)
    assert res.code in (0, 1) and res.err.count("\n") <= 1, res


def test_a_held_task_is_not_freed_by_a_bad_line_after_its_claim(base: Repo) -> None:
    # w's claim ran out long ago; its heartbeat, which extended it, is unreadable: were it
    # skipped, B would be free and x could take it while w still works on it
    smuggle(base, B_LOG, line(actor="w", data={"lease_until": "2000-01-01T00:00:00Z"}))
    smuggle(base, B_LOG, line("task.heartbeat", {"lease_until": "next week"}, actor="w", clock=2,
                              id="01JD5Z8Q3K7M9N2P4R6S8T0VWZ"))
    res = base.run("claim", "p/B", "--worker", "x")
    assert res.code == 1 and "unreadable event at" in res.err, res
    res = base.run("done", "p/B", "--worker", "w")
    assert res.code == 1 and "unreadable event at" in res.err, res


def test_an_unreadable_line_in_the_plan_log_holds_the_plan(base: Repo) -> None:
    lineno = smuggle(base, PLAN_LOG, plan_line(data={"to": "limbo"}))
    where = f"{PLAN_LOG}:{lineno}"
    head = base.git("rev-parse", "HEAD")
    res = base.run("--json", "status", "p")
    assert res.code == 0 and res.json["unreadable"] == [where], res
    assert {r["id"]: r["state"] for r in res.json["tasks"]} == {"A": "blocked", "B": "blocked", "C": "blocked"}
    _assert_named_once(res, where)
    res = base.run("claim", "p", "--worker", "x")
    assert res.code == 3 and "held by an unreadable event" in res.err
    assert base.run("claim", "p/B", "--worker", "x").code == 1
    assert base.run("advance").code == 0
    assert base.git("rev-parse", "HEAD") == head
    res = base.run("validate")
    assert res.code == 1 and f"{where}: data.to: expected one of: draft" in res.err


def test_an_unknown_type_is_a_warning_and_changes_nothing(base: Repo) -> None:
    lineno = smuggle(base, B_LOG, line("task.frobbed", {"lease_until": "soon"}))
    smuggle(base, PLAN_LOG, plan_line("plan.frobbed", {"to": "nowhere"}, id="01JD5Z8Q3K7M9N2P4R6S8T0VWY"))
    res = base.run("validate")
    assert res.code == 0, res
    assert f"warning: {B_LOG}:{lineno}: unknown event type 'task.frobbed': kept and ignored" in res.err
    assert "'plan.frobbed'" in res.err
    res = base.run("--json", "validate")
    assert res.code == 0 and len(res.json["warnings"]) == 2
    doc = base.run("doctor")
    assert doc.code == 0 and "[info]" in doc.out, doc
    res = base.run("--json", "status", "p")
    assert res.code == 0 and warnings(res.err) == [] and res.json["unreadable"] == []
    assert base.run("claim", "p/B", "--worker", "x").code == 0
    assert "task.frobbed" in (base.path / B_LOG).read_text()


# ----- the pre-commit hook: what the checker refuses never gets in -------------------------------

def _hook_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


HOOKED = [c for c in UNREADABLE if c[0] in (
    "lease-not-a-time", "lease-infinity", "at-nan", "snapshot-bad-status", "data-a-list",
    "clock-float", "other-task", "not-json", "deep-nesting", "lease-year-10000")]


@pytest.mark.parametrize(("name", "text", "said"), HOOKED, ids=[c[0] for c in HOOKED])
def test_the_hook_refuses_the_line(base: Repo, name: str, text: str, said: str) -> None:
    path = base.path / B_LOG
    path.write_bytes(_raw(text))
    base.git("add", B_LOG)
    proc = subprocess.run(["git", "commit", "-q", "-m", "bad"], cwd=base.path, capture_output=True,
                          text=True, env=_hook_env(), check=False)
    assert proc.returncode == 1, proc
    assert f"{B_LOG}:1: " in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_the_hook_lets_an_unknown_type_through_with_a_warning(base: Repo) -> None:
    (base.path / B_LOG).write_bytes(_raw(line("task.frobbed")))
    base.git("add", B_LOG)
    proc = subprocess.run(["git", "commit", "-q", "-m", "newer"], cwd=base.path, capture_output=True,
                          text=True, env=_hook_env(), check=False)
    assert proc.returncode == 0, proc
    assert "unknown event type 'task.frobbed'" in proc.stderr


# ----- a held plan decides nothing; an unreadable line can be fixed without --no-verify ---------------

@pytest.mark.parametrize("args", [
    ("approve", "p", "--reviewer", "r"), ("reject", "p", "--reviewer", "r", "--comment", "no"),
    ("halt", "p", "--reason", "x"), ("resume", "p"), ("submit", "p"),
    ("checkpoint", "p", "CP", "--approve", "--reviewer", "r"),
    ("checkpoint", "p", "CP", "--request-changes", "more", "--reviewer", "r"),
    ("checkpoint", "p", "CP", "--validate"),
], ids=lambda a: "-".join(a[:1] + tuple(x for x in a[1:] if x.startswith("--"))[:1]))
def test_a_held_plan_refuses_every_decision_and_writes_nothing(tmp_path: Path, args: tuple[str, ...]) -> None:
    """The phase, the approvals and the checkpoint decisions are in doubt while the plan log
    holds an unreadable line: the checkpoint view refuses, and so does every decision."""
    repo = Repo(make_git_repo(tmp_path / "repo"))
    repo.ok("init", "--format", "1")
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - {id: A, title: a}\n  - {id: B, title: b, depends_on: [CP]}\n"
                   "checkpoints:\n  - {id: CP, after: [A]}\n")
    repo.ok("submit", "p")
    repo.ok("claim", "p/A", "--worker", "w")
    repo.ok("done", "p/A", "--worker", "w")
    repo.ok("advance")
    where = f"{PLAN_LOG}:{smuggle(repo, PLAN_LOG, plan_line(data={'to': 'limbo'}))}"
    if args[0] == "finish":  # a plan whose last readable move took it to finish
        smuggle(repo, PLAN_LOG, plan_line(data={"to": "finish"}, id="01JD5Z8Q3K7M9N2P4R6S8T0VX1", clock=99))
    head = repo.git("rev-parse", "HEAD")
    res = repo.run(*args)
    assert res.code == 1, res
    assert [x for x in res.err.splitlines() if where in x] == [res.err.strip()], res.err  # once, in the error
    assert "flowgit: error: plan p is held by an unreadable event at" in res.err
    no_traceback(res)
    assert repo.git("rev-parse", "HEAD") == head and repo.git("status", "--porcelain") == ""


def _commit_with_hook(repo: Repo, message: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "commit", "-q", "-m", message], cwd=repo.path, capture_output=True,
                          text=True, env=_hook_env(), check=False)


@pytest.mark.parametrize("how", ["remove", "fix"])
def test_an_unreadable_line_can_be_removed_or_fixed_through_the_hook(base: Repo, how: str) -> None:
    """What holds a task is freed by fixing or removing its line: the hook lets that through
    (no --no-verify), checks what takes its place, and still refuses touching a sound line."""
    sound = line("task.note", {"text": "kept"}, id="01JD5Z8Q3K7M9N2P4R6S8T0VWY", actor="w")
    smuggle(base, B_LOG, sound)
    bad = line(data={"lease_until": "soon"})
    smuggle(base, B_LOG, bad)
    smuggle(base, B_LOG, line("task.note", {"text": "after"}, id="01JD5Z8Q3K7M9N2P4R6S8T0VWZ", actor="w", clock=3))
    assert base.ok("--json", "status", "p").json["tasks"][1]["state"] == "blocked"
    path = base.path / B_LOG
    text = path.read_text()
    fixed = line(data={"lease_until": "2000-01-01T00:00:00Z"}) if how == "fix" else None
    path.write_text(text.replace(bad + "\n", "" if fixed is None else fixed + "\n"))
    base.git("add", B_LOG)
    proc = _commit_with_hook(base, "free B")
    assert proc.returncode == 0, proc.stderr
    rows = {r["id"]: r["state"] for r in base.ok("--json", "status", "p").json["tasks"]}
    assert rows["B"] == "ready", rows
    # the line put in its place is checked like any other; a sound line stays append-only
    path.write_text(path.read_text().replace(sound + "\n", ""))
    base.git("add", B_LOG)
    proc = _commit_with_hook(base, "drop a sound line")
    assert proc.returncode == 1 and f"{B_LOG}:1: event line edited: event logs are append-only" in proc.stderr
    base.git("reset", "-q", "--hard")
    path.write_text(path.read_text() + line(data={"lease_until": "later"}, id="01JD5Z8Q3K7M9N2P4R6S8T0VX0") + "\n")
    base.git("add", B_LOG)
    assert _commit_with_hook(base, "another bad line").returncode == 1


def test_the_gate_lets_a_pull_request_remove_an_unreadable_line(base: Repo) -> None:
    """`validate --base`: an event the base had may go only if the checker refuses it."""
    smuggle(base, B_LOG, line(data={"lease_until": "soon"}))
    base.path.joinpath(B_LOG).write_bytes(b"{not json\n")
    base.git("commit", "-qam", "worse", "--no-verify")
    base_rev = base.git("rev-parse", "HEAD")
    base.path.joinpath(B_LOG).write_text("")
    base.git("commit", "-qam", "fixed", "--no-verify")
    assert base.run("validate", "--base", base_rev).code == 0
    res = base.run("validate", "--base", "HEAD~3")  # before the smuggling: A's claim is still there
    assert res.code == 0, res.err


def test_mcp_results_carry_the_warnings(base: Repo) -> None:
    """An agent working through `flowgit mcp` hears what a person at a shell hears on stderr:
    the line that holds a task, under "warnings" in the tool's result."""
    pytest.importorskip("mcp")
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    where = f"{B_LOG}:{smuggle(base, B_LOG, line(data={'lease_until': 'soon'}))}"
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "flowgit", "--repo", str(base.path), "mcp"],
                                   env=dict(os.environ), cwd=str(base.path))
    results: list[Any] = []
    errors: list[str] = []

    async def main() -> None:
        with anyio.fail_after(60):
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    for name, args in (("status", {"plan": "p"}), ("graph", {"plan": "p"})):
                        res = await session.call_tool(name, args)
                        assert not res.is_error, (name, res)
                        results.append(json.loads(res.content[0].text))  # type: ignore[union-attr]
                    res = await session.call_tool("next", {})  # A is taken, B held, C waits on B
                    assert res.is_error
                    errors.append(res.content[0].text)  # type: ignore[union-attr]

    anyio.run(main)
    for data in results:
        assert [w for w in data["warnings"] if where in w] == data["warnings"], data
        assert "task p/B is held" in data["warnings"][0]
    assert results[0]["unreadable"] == [where]
    [error] = errors  # a failing tool says it in its one line
    assert "[nothing_ready, exit 3] no ready task (warning: unreadable event at " + where in error
    assert "\n" not in error
