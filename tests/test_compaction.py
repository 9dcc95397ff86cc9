"""Compaction (issue 7): a long log becomes a snapshot plus its last N events and folds to the
same state, on random histories; the CLI rewrites the logs in one commit, the full history
stays replayable from git, and the watcher compacts past a configured threshold."""
from __future__ import annotations

import random
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from helpers import Repo, events, log_path, status

from flowgit.core.compaction import compact_plan_log, compact_task_log
from flowgit.core.events import Event, canonical, format_time, make_event, parse_log
from flowgit.core.fold import TaskRecord, checkpoint_decisions, phase_of, reduce_task
from flowgit.watcher import schedules, signals
from flowgit.watcher import observer as watch

T0 = 1_800_000_000.0
ACTORS = ("w1", "w2", "alice")  # on both sides of the compactor's name in the sort order
HISTORIES = 200


pytestmark = pytest.mark.usefixtures("venv_on_path")  # the git hook calls `flowgit`


# ----- random histories ---------------------------------------------------------------------------

class Clock:
    """Lamport clocks and wall times that move on, sometimes not at all (ties)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.clock = 1
        self.t = T0 + rng.random() * 1000

    def tick(self) -> tuple[int, float]:
        r = self.rng.random()
        if r < 0.3:
            pass  # a tie: two machines wrote with the same clock
        elif r < 0.9:
            self.clock += 1
        else:
            self.clock += self.rng.randint(2, 4)
        self.t += self.rng.choice([0.0, 0.0, 0.001, 1.0, 30.0, 400.0, 1000.0])
        return self.clock, self.t


def _time(rng: random.Random, t: float) -> Any:
    """A lease or retry time as flowgit writes it (a string), or as a number."""
    return format_time(t) if rng.random() < 0.7 else t


def random_task_events(rng: random.Random, n: int, clk: Clock | None = None) -> list[Event]:
    clk = clk or Clock(rng)
    kinds = ["task.claimed"] * 5 + ["task.heartbeat"] * 4 + ["task.started"] * 3 + \
        ["task.failed"] * 3 + ["task.released"] * 2 + ["task.done"] * 2 + ["task.skipped"] + \
        ["task.note"] * 2 + ["task.log", "task.wait", "task.wait"]
    out = []
    for _ in range(n):
        clock, t = clk.tick()
        actor = rng.choice(ACTORS)
        kind = rng.choice(kinds)
        data: dict[str, Any] = {}
        if kind in ("task.claimed", "task.heartbeat", "task.started") and rng.random() < 0.9:
            data["lease_until"] = _time(rng, t + rng.choice([5.0, 60.0, 900.0, 5000.0]))
        elif kind == "task.failed":
            data["error"] = rng.choice(["boom", "timeout", None])
            if rng.random() < 0.6:
                data["retry"] = True
                data["retry_at"] = _time(rng, t + rng.choice([1.0, 2.0, 64.0]))
        elif kind == "task.done":
            data = {"note": rng.choice(["done", None, ""]), "files_modified": rng.sample(["a", "b", "c"], rng.randint(0, 2))}
        elif kind == "task.skipped":
            data = {"reason": rng.choice(["obsolete", None]), "dependents": rng.random() < 0.5}
        elif kind == "task.released":
            data = {"reason": "handing over"}
        elif kind == "task.note":
            data = {"text": rng.choice(["n1", "n2", ""])}
        elif kind == "task.log":
            data = {"path": rng.choice(["logs/1.txt", "logs/2.txt"])}
        elif kind == "task.wait":
            ok = rng.random() < 0.3
            data = {"ok": ok, "exit_code": 0 if ok else 1, "next_at": None if ok else t + rng.choice([1, 2, 3, 5])}
        out.append(make_event(kind, "p", "t", actor, clock, data, t))
    return out


def random_plan_events(rng: random.Random, n: int) -> list[Event]:
    clk = Clock(rng)
    kinds = ["plan.phase"] * 5 + ["plan.approved"] * 3 + ["plan.rejected", "plan.task_failed", "plan.task_failed",
             "checkpoint.validation", "checkpoint.approved", "checkpoint.approved",
             "checkpoint.changes_requested", "signal.received", "signal.received",
             "signal.handled", "signal.handled", "schedule.ran", "schedule.ran", "plan.created"]
    phases = ["draft", "plan_review", "execute", "checkpoint", "finish", "complete", "halted"]
    out: list[Event] = []
    received: list[str] = []
    for _ in range(n):
        clock, t = clk.tick()
        actor = rng.choice(ACTORS)
        kind = rng.choice(kinds)
        data: dict[str, Any] = {}
        if kind == "plan.phase":
            data = {"to": rng.choice(phases), "reason": "r"}
            if rng.random() < 0.5:
                data["base_commit"] = rng.choice(["c1", "c2", "c3"]) * 20  # full ids, as events hold
            if rng.random() < 0.5:
                data["plan_hash"] = rng.choice(["h1", "h2"])
            if rng.random() < 0.3:
                data["checkpoint"] = rng.choice(["CP1", "CP2"])
        elif kind == "plan.approved":
            data = {"reviewer": rng.choice(["r1", "r2", "r3"]), "comment": rng.choice(["", "lgtm"]),
                    "plan_hash": rng.choice(["h1", "h2", ""])}
        elif kind == "plan.rejected":
            data = {"reviewer": "r1", "comment": "no"}
        elif kind == "plan.task_failed":
            data = {"task": rng.choice(["t1", "t2", "t3"]), "error": "x"}
        elif kind == "checkpoint.validation":
            data = {"checkpoint": "CP1", "name": "tests", "exit_code": 0}
        elif kind in ("checkpoint.approved", "checkpoint.changes_requested"):
            data = {"checkpoint": rng.choice(["CP1", "CP2", "CP3"]), "reviewer": "r1"}
            if rng.random() < 0.5:
                data["plan_hash"] = rng.choice(["h1", "h3"])
        elif kind == "signal.received":
            data = {"name": rng.choice(["scan", "add"]), "data": {}}
        elif kind == "signal.handled":
            if not received:
                kind, data = "signal.received", {"name": "scan", "data": {}}
            else:
                data = {"signal": rng.choice(received), "outcome": rng.choice(["started", "ok", "ignored"])}
        elif kind == "schedule.ran":
            data = {"schedule": rng.choice(["s1", "s2"]), "exit_code": 0}
            if rng.random() < 0.5:
                data["slot"] = format_time(t - rng.choice([0.0, 5.0]))
        ev = make_event(kind, "p", None, actor, clock, data, t)
        if kind == "signal.received":
            received.append(ev.id)
        out.append(ev)
    return out


def roundtrip(events: list[Event]) -> list[Event]:
    """As written to the log file and read back."""
    return list(parse_log("".join(e.to_line() for e in events).encode(), "log").events)


def union(*logs: list[Event]) -> list[Event]:
    """What the merge driver keeps: every event once, by id."""
    seen: dict[str, Event] = {}
    for log in logs:
        for ev in log:
            seen.setdefault(ev.id, ev)
    return list(seen.values())


# ----- properties: task logs -------------------------------------------------------------------------

def test_compacted_task_log_folds_to_the_same_record() -> None:
    compacted = 0
    for i in range(HISTORIES):
        rng = random.Random(1000 + i)
        events = random_task_events(rng, rng.choice([0, 1, 2, 3, 5, 8, 13, 20, 35, 60]))
        if rng.random() < 0.3:
            rng.shuffle(events)  # logs merged from two machines are not in file order
        want = reduce_task(events)
        for keep in range(11):
            new = compact_task_log(events, keep, T0 + 10**6)
            if new is None:
                assert len(events) - keep < 2 or len({e.clock for e in events}) < len(events), (i, keep)
                continue
            compacted += 1
            new = roundtrip(new)
            got = reduce_task(new)
            assert got == want, (i, keep, _diff(got, want))
            ordered = canonical(new)
            assert ordered[0].type == "task.snapshot"
            assert sum(e.type == "task.snapshot" for e in new) == 1
            assert all(e.clock > ordered[0].clock for e in ordered[1:])  # no clock straddles the cut
            assert len(new) <= len(events)
            tail = len(new) - 1
            assert tail >= min(keep, len(events))
            if len({e.clock for e in events}) == len(events):
                assert tail == keep  # with no ties, exactly the last N are kept
            # a second compaction of the compacted log still folds the same
            again = compact_task_log(new, rng.randint(0, 3), T0 + 2 * 10**6)
            if again is not None:
                assert reduce_task(roundtrip(again)) == want, (i, keep, "twice")
    assert compacted > HISTORIES * 4


def test_compaction_then_more_events_then_compaction_again() -> None:
    for i in range(HISTORIES // 2):
        rng = random.Random(5000 + i)
        clk = Clock(rng)
        first = random_task_events(rng, rng.randint(2, 30), clk)
        clk.clock += 1  # a writer appends after the compaction: its clock is above the log's
        later = random_task_events(rng, rng.randint(0, 30), clk)
        k1, k2 = rng.randint(0, 10), rng.randint(0, 10)
        mid = compact_task_log(first, k1, T0 + 10**6) or first
        log = roundtrip(mid) + later
        want = reduce_task(first + later)
        assert reduce_task(log) == want, (i, "after the first")
        end = compact_task_log(log, k2, T0 + 2 * 10**6)
        if end is not None:
            assert reduce_task(roundtrip(end)) == want, (i, k1, k2, _diff(reduce_task(end), want))


def test_merging_a_compacted_log_with_an_old_copy_folds_the_same() -> None:
    """A branch that still has the long log merges with the compacted one (the merge driver
    keeps the union by id): the events the snapshot replaced must not be applied twice."""
    for i in range(HISTORIES):
        rng = random.Random(9000 + i)
        events = random_task_events(rng, rng.randint(2, 40))
        want = reduce_task(events)
        keep = rng.randint(0, 10)
        new = compact_task_log(events, keep, T0 + 10**6)
        if new is None:
            continue
        merged = union(roundtrip(new), events)
        got = reduce_task(merged)
        assert got == want, (i, keep, _diff(got, want))


def _diff(a: TaskRecord, b: TaskRecord) -> dict[str, Any]:
    da, db = asdict(a), asdict(b)
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}


# ----- properties: plan logs ---------------------------------------------------------------------

def plan_view(events: list[Event]) -> dict[str, Any]:
    return {"phase": phase_of(events), "checkpoints": checkpoint_decisions(events),
            "pending_signals": sorted(e.id for e in signals.pending_signals(events)),
            "schedules": schedules.last_runs(events)}


def test_compacted_plan_log_gives_the_same_phase_checkpoints_signals_and_schedules() -> None:
    compacted = 0
    for i in range(HISTORIES):
        rng = random.Random(2000 + i)
        events = random_plan_events(rng, rng.choice([0, 1, 2, 3, 5, 8, 13, 20, 35, 60]))
        want = plan_view(events)
        for keep in range(11):
            new = compact_plan_log(events, keep, T0 + 10**6)
            if new is None:
                continue
            compacted += 1
            new = roundtrip(new)
            assert plan_view(new) == want, (i, keep)
            assert sum(e.type == "plan.snapshot" for e in new) == 1
            again = compact_plan_log(new, rng.randint(0, 3), T0 + 2 * 10**6)
            if again is not None:
                assert plan_view(roundtrip(again)) == want, (i, keep, "twice")
            merged = union(roundtrip(new), events)
            assert plan_view(merged) == want, (i, keep, "merged with an old copy")
    assert compacted > HISTORIES * 4


def test_handled_signals_do_not_keep_the_plan_log_long() -> None:
    """A service woken by thousands of signals: compaction must still bound its plan log."""
    events: list[Event] = []
    clock = 1
    for n in range(300):
        sig = make_event("signal.received", "p", None, "scanner", clock, {"name": "scan", "data": {"n": n}}, T0 + n)
        done = make_event("signal.handled", "p", None, "watcher", clock + 1, {"signal": sig.id, "outcome": "ok"}, T0 + n)
        events += [sig, done]
        clock += 2
    pending = make_event("signal.received", "p", None, "scanner", clock, {"name": "scan", "data": {}}, T0 + 999)
    events.append(pending)
    events += [make_event("plan.phase", "p", None, "w1", clock + 1 + k, {"to": "execute"}, T0 + 1000 + k)
               for k in range(5)]
    new = compact_plan_log(events, 3, T0 + 10**6)
    assert new is not None
    assert len(new) <= 3 + 1 + 1, len(new)  # the snapshot, the pending signal, the last 3
    assert [e.id for e in signals.pending_signals(new)] == [pending.id]
    assert plan_view(roundtrip(new)) == plan_view(events)


def test_compaction_during_a_checkpoint_review_keeps_what_the_review_shows() -> None:
    """The checkpoint review lists the validation results recorded since the plan entered the
    checkpoint: compacting the plan log then must not make them disappear."""
    events = [make_event("plan.phase", "p", None, "w1", 1, {"to": "execute"}, T0),
              make_event("plan.phase", "p", None, "watcher", 2, {"to": "checkpoint", "checkpoint": "cp1"}, T0 + 1)]
    events += [make_event("checkpoint.validation", "p", None, "watcher", 3 + i,
                          {"checkpoint": "cp1", "name": f"v{i}", "argv": ["true"], "exit_code": i,
                           "duration": 0.1, "output_tail": ""}, T0 + 2) for i in range(3)]
    events += [make_event("schedule.ran", "p", None, "w1", 6 + i, {"schedule": "s", "slot": format_time(T0 + 60 * i)}, T0 + 3) for i in range(4)]
    new = compact_plan_log(events, 1, T0 + 10**6)
    assert new is not None
    kept = [e for e in canonical(roundtrip(new)) if e.type in ("plan.phase", "checkpoint.validation")]
    assert [e.data.get("name") for e in kept[1:]] == ["v0", "v1", "v2"]
    assert kept[0].data["checkpoint"] == "cp1"
    assert plan_view(roundtrip(new)) == plan_view(events)
    # once the plan has left the checkpoint, the old review is history (in git) only
    events.append(make_event("plan.phase", "p", None, "w1", 10, {"to": "execute"}, T0 + 4))
    events += [make_event("schedule.ran", "p", None, "w1", 11 + i, {"schedule": "s", "slot": format_time(T0 + 600 + 60 * i)}, T0 + 5) for i in range(2)]
    later = compact_plan_log(events, 1, T0 + 10**6)
    assert later is not None
    assert not any(e.type == "checkpoint.validation" for e in later)


# ----- the command line ----------------------------------------------------------------------------

PLAN = """\
id: p
title: Long-lived
tasks:
  - id: t
    title: A task with a long history
  - id: u
    title: After t
    depends_on: [t]
"""


def long_history(repo: Repo, n: int, worker: str = "w1") -> list[str]:
    """A claim, a start and `n - 2` heartbeats written straight to the log (as a long-running
    worker would over weeks), committed as a pull would bring them. Returns the event ids."""
    path = log_path(repo, "p", "t")
    plan_clock = max(e["clock"] for e in events(repo, "p", "_plan"))
    clock = max([e["clock"] for e in events(repo, "p", "t")] if path.exists() else [plan_clock]) + 1
    import time as _time
    now = _time.time() - n
    lease = format_time(_time.time() + 86400)
    evs = [make_event("task.claimed", "p", "t", worker, clock, {"lease_until": lease, "lease_seconds": 86400}, now),
           make_event("task.started", "p", "t", worker, clock + 1, {"lease_until": lease}, now + 0.5)]
    evs += [make_event("task.heartbeat", "p", "t", worker, clock + 2 + k, {"lease_until": lease}, now + 1 + k)
            for k in range(n - 2)]
    with path.open("a") as fh:
        fh.write("".join(e.to_line() for e in evs))
    repo.git("add", str(path))
    repo.git("commit", "-q", "--no-verify", "-m", "pull: worker history")
    return [e.id for e in evs]


@pytest.mark.format1
def test_compact_cli_one_commit_same_state_full_history_in_git(repo: Repo) -> None:
    repo.plan("p", PLAN)
    repo.ok("submit", "p")
    ids = long_history(repo, 500)
    assert len(events(repo, "p", "t")) == 500
    before_status = status(repo, "p")
    before_all = repo.ok("status", "--json").json
    commits = repo.commits()

    res = repo.ok("compact", "p", "--keep", "10", "--json").json
    assert repo.commits() == commits + 1
    assert res["state_unchanged"] is True
    assert [(x["log"], x["before"], x["after"]) for x in res["logs"]] == [(".flow/plans/p/events/t.jsonl", 500, 11)]
    msg = repo.git("log", "-1", "--format=%B")
    assert "Flow-Event: compact" in msg
    assert repo.git("show", "--name-only", "--format=", "HEAD").split() == [".flow/plans/p/events/t.jsonl"]
    assert repo.git("status", "--porcelain", "--", ".flow") == ""
    lines = events(repo, "p", "t")
    assert len(lines) == 11
    assert lines[0]["type"] == "task.snapshot" and lines[0]["data"]["replaces"] == 490
    assert [x["id"] for x in lines[1:]] == ids[-10:]
    assert status(repo, "p") == before_status
    assert repo.ok("status", "--json").json == before_all

    # the current log shows the snapshot; --from-git replays every original event, once
    current = repo.ok("events", "p", "t", "--json").json["events"]
    assert len(current) == 11 and current[0]["type"] == "task.snapshot"
    replay = repo.ok("events", "p", "t", "--from-git", "--json").json["events"]
    assert [e["id"] for e in replay] == ids
    assert not any(e["type"] == "task.snapshot" for e in replay)
    plan_replay = repo.ok("events", "p", "--from-git", "--json").json["events"]
    assert {e["id"] for e in plan_replay} >= set(ids)
    assert len(plan_replay) == len({e["id"] for e in plan_replay})

    # validate and doctor are happy with the rewritten log
    assert repo.run("validate").code == 0
    doc = repo.run("doctor", "--json")
    assert doc.code == 0, doc.out + doc.err

    # work goes on: the holder's lease and attempts survived
    repo.ok("heartbeat", "p/t", "--worker", "w1")
    assert repo.run("claim", "p/t", "--worker", "w2").code != 0
    repo.ok("done", "p/t", "--worker", "w1", "--note", "finally")
    row = next(x for x in status(repo, "p")["tasks"] if x["id"] == "t")
    assert row["state"] == "done" and row["attempts"] == 1
    assert status(repo, "p")["ready"] == ["u"]

    # a second compaction: the replay still has every event once, and no snapshot
    after_ids = [x["id"] for x in events(repo, "p", "t")[-2:]]
    repo.ok("compact", "p", "--keep", "0")
    assert len(events(repo, "p", "t")) == 1
    replay = repo.ok("events", "p", "t", "--from-git", "--json").json["events"]
    assert [e["id"] for e in replay] == ids + after_ids
    assert not any(e["type"] == "task.snapshot" for e in replay)
    assert status(repo, "p")["ready"] == ["u"]
    assert repo.run("validate").code == 0
    assert repo.run("doctor").code == 0


def test_compact_nothing_to_do_and_bad_keep(repo: Repo) -> None:
    repo.plan("p", PLAN)
    commits = repo.commits()
    res = repo.ok("compact", "p", "--json").json
    assert res["logs"] == [] and res["commit"] is None
    assert repo.commits() == commits
    assert repo.run("compact", "p", "--keep", "-1").code == 2
    assert repo.run("compact", "nope").code != 0
    assert repo.run("compact", "../x").code != 0


@pytest.mark.format1
def test_auto_compaction_by_the_watcher(repo: Repo) -> None:
    cfg = repo.path / ".flow" / "config.yaml"
    cfg.write_text(cfg.read_text() + "compact: {threshold: 50, keep: 5}\n")
    repo.git("commit", "-q", "--no-verify", "-am", "config")
    repo.plan("p", PLAN)
    repo.ok("submit", "p")
    ids = long_history(repo, 40)
    lines: list[str] = []
    watch.one_pass(repo.path, lines.append, watch.extras(None, []))
    assert len(events(repo, "p", "t")) == 40, lines  # below the threshold: untouched
    ids += long_history(repo, 20)
    before = status(repo, "p")
    commits = repo.commits()
    plan_log = log_path(repo, "p", "_plan").read_text()
    watch.one_pass(repo.path, lines.append, watch.extras(None, []))
    assert repo.commits() == commits + 1, lines
    assert "Flow-Event: compact" in repo.git("log", "-1", "--format=%B")
    new = events(repo, "p", "t")
    assert len(new) == 6 and new[0]["type"] == "task.snapshot"
    assert log_path(repo, "p", "_plan").read_text() == plan_log
    assert status(repo, "p") == before
    watch.one_pass(repo.path, lines.append, watch.extras(None, []))
    assert repo.commits() == commits + 1  # nothing more to do
    replay = repo.ok("events", "p", "t", "--from-git", "--json").json["events"]
    assert [e["id"] for e in replay] == ids
    assert repo.run("validate").code == 0


def test_plan_log_compaction_keeps_pending_signals_and_schedule_times(repo: Repo, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    script = tmp_path / "action.py"
    script.write_text(f"import sys\nopen({str(marker)!r}, 'a').write(sys.stdin.read() + '\\n')\n")
    disc = tmp_path / "disc.py"
    disc.write_text(f"open({str(tmp_path / 'disc.count')!r}, 'a').write('x')\n")
    cfg = repo.path / ".flow" / "config.yaml"
    cfg.write_text(cfg.read_text() + f"signals:\n  ping: {{run: [{sys.executable}, {script}]}}\n"
                   f"schedules:\n  - {{id: s, every: 1h, plan: p, run: [{sys.executable}, {disc}]}}\n")
    repo.git("commit", "-q", "--no-verify", "-am", "config")
    repo.ok("trust")  # the schedule written by hand runs once trusted in this clone
    repo.plan("p", PLAN)
    for i in range(3):
        repo.ok("signal", "p", "ping", "--data", str(i))
    watch.one_pass(repo.path, lambda line: None, watch.extras(None, []))
    assert marker.read_text().split() == ["0", "1", "2"]
    assert (tmp_path / "disc.count").read_text() == "x"
    repo.ok("signal", "p", "ping", "--data", "3")  # not handled yet
    before = repo.ok("status", "p", "--json").json
    n = len(events(repo, "p", "_plan"))
    repo.ok("compact", "p", "--keep", "0")
    after = events(repo, "p", "_plan")
    assert [e["type"] for e in after] == ["plan.snapshot", "signal.received"], after
    assert len(after) < n
    assert repo.ok("status", "p", "--json").json == before
    watch.one_pass(repo.path, lambda line: None, watch.extras(None, []))
    assert marker.read_text().split() == ["0", "1", "2", "3"]  # handled ones are not run again
    assert (tmp_path / "disc.count").read_text() == "x"  # the schedule's last run survived
    replay = repo.ok("events", "p", "--from-git", "--json").json["events"]
    assert sum(e["type"] == "signal.received" for e in replay) == 4
    assert not any(e["type"].endswith("snapshot") for e in replay)
    assert repo.run("validate").code == 0
