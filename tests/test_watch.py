"""`flowgit watch` as a real background process: moves appear by themselves, quickly, once;
nothing is written while git owns the index; bursts of file events do no harm; it stops
cleanly on signals and does not grow over a long run (issue 4)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from helpers import (Repo, Watcher, log_text, phase, state_branch, stop_cleanly, subjects, transitions, wait_for,
                     wait_seconds)

from flowgit.core.events import make_event
from flowgit.store.repo import FlowRepo

GATED = """\
id: g
title: Gated plan
tasks:
  - id: a
    title: Store
  - id: c
    title: Uses the reviewed store
    depends_on: [CP1]
  - id: d
    title: After the second review
    depends_on: [CP2]
checkpoints:
  - id: CP1
    after: [a]
  - id: CP2
    after: [c]
"""


def start(watchers: list[Watcher], repo: Repo, *args: str) -> Watcher:
    w = Watcher(repo, *args)
    watchers.append(w)
    return w


def flow_commits(repo: Repo) -> list[str]:
    return [s for s in subjects(repo, "--all") if s.startswith("flow(")]


def head_is(repo: Repo, subject: str) -> Callable[[], bool]:
    return lambda: subjects(repo, "-n", "1", transitions(repo))[0] == subject


def settle(seconds: float = 1.0) -> None:
    """Long enough for a debounce (200 ms) and a pass, several times over."""
    time.sleep(seconds)


def approve_behind_flowgits_back(repo: Repo, plan: str, cp: str) -> None:
    """A checkpoint approval that arrives as a plain commit (as from a pull), with no
    `advance` after it: only the watcher can move the phase on. Written under flowgit's
    lock, so it never interleaves with a watcher's own append-and-commit."""
    log = repo.path / ".flow" / "plans" / plan / "events" / "_plan.jsonl"
    flow = FlowRepo(repo.path)
    with flow.lock():
        text = log_text(repo, plan)
        clock = max(json.loads(line)["clock"] for line in text.splitlines()) + 1
        ev = make_event("checkpoint.approved", plan, None, "remote-reviewer", clock,
                        {"checkpoint": cp, "reviewer": "remote-reviewer", "comment": ""}, time.time())
        store = flow.state_store
        if store is not None:  # format 2: a state commit, as a sync brings one (ADR 0011)
            from flowgit.store.state import log_path

            store.commit({log_path(plan, "_plan"): (text + ev.to_line()).encode()},
                         "pull: checkpoint approved")
            return
        with log.open("a") as fh:
            fh.write(ev.to_line())
        repo.git("commit", "-q", "--no-verify", "-m", "pull: checkpoint approved", "--", str(log))


# ----- moves by themselves --------------------------------------------------------------------

def test_checkpoint_commit_within_two_seconds_and_resume(repo: Repo, watchers: list[Watcher]) -> None:
    repo.plan("g", GATED)
    repo.ok("claim", "g/a", "--worker", "w1")
    before = repo.commits()
    w = start(watchers, repo, "--interval", "5")
    settle(0.6)
    assert repo.commits() == before, "a settled plan gets no commit"

    repo.ok("done", "g/a", "--worker", "w1", "--note", "store done")
    took = wait_seconds(head_is(repo, "flow(g): phase checkpoint"), 2.0, "the checkpoint commit")
    assert took < 2.0
    wait_for(lambda: any("g: execute -> checkpoint" in line and "CP1" in line for line in w.lines), 2,
             "the decision's log line")

    # an approval from another process: execution resumes, with one phase commit only
    proc = repo.proc("checkpoint", "g", "--approve", "--reviewer", "rev")
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: phase(repo, "g") == "execute", 3, "execution to resume")
    settle(0.5)
    assert subjects(repo).count("flow(g): phase execute") == 1  # (the first claim entered execute itself)
    repo.ok("claim", "g/c", "--worker", "w1")
    repo.ok("done", "g/c", "--worker", "w1")
    wait_for(lambda: phase(repo, "g") == "checkpoint", 3, "the second checkpoint")

    # an approval that arrives as a plain commit: only the watcher moves the plan on
    approve_behind_flowgits_back(repo, "g", "CP2")
    wait_for(head_is(repo, "flow(g): phase execute"), 3, "the watcher to resume execution")
    repo.ok("claim", "g/d", "--worker", "w1")
    repo.ok("done", "g/d", "--worker", "w1")
    wait_for(head_is(repo, "flow(g): phase finish"), 3, "the finish phase")
    settle(0.5)
    assert subjects(repo, "-n", "1", transitions(repo)) == ["flow(g): phase finish"]
    assert repo.git("status", "--porcelain") == "", "the watcher writes nothing but its commits"
    stop_cleanly(w)


def test_poll_mode(repo: Repo, watchers: list[Watcher]) -> None:
    repo.plan("g", GATED)
    repo.ok("claim", "g/a", "--worker", "w1")
    w = start(watchers, repo, "--poll", "--interval", "30")
    assert "polling" in w.lines[0]
    repo.ok("done", "g/a", "--worker", "w1")
    wait_for(head_is(repo, "flow(g): phase checkpoint"), 5, "the checkpoint commit (polling)")
    stop_cleanly(w)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_stop_it_cleanly(repo: Repo, watchers: list[Watcher], sig: int) -> None:
    w = start(watchers, repo, "--interval", "5")
    begin = time.monotonic()
    stop_cleanly(w, sig)
    assert time.monotonic() - begin < 3


def test_a_stop_cuts_a_running_validation_short(repo: Repo, watchers: list[Watcher]) -> None:
    """SIGTERM must not wait for a checkpoint validation (up to its timeout), nor apply a
    move on validations that did not finish."""
    script = ("import os, pathlib, time; pathlib.Path('validation.pid').write_text(str(os.getpid())); "
              "time.sleep(30)")
    repo.plan("l", f"""\
id: l
title: Long check
tasks:
  - id: a
    title: A
checkpoints:
  - id: CP
    after: [a]
    validations: [{{name: long, run: [{sys.executable}, -c, "{script}"], timeout: 60}}]
""")
    repo.ok("claim", "l/a", "--worker", "w1")
    repo.ok("done", "l/a", "--worker", "w1")
    head = repo.git("rev-parse", "HEAD")
    w = start(watchers, repo, "--interval", "5")
    pidfile = repo.path / "validation.pid"
    wait_for(lambda: pidfile.exists() and pidfile.read_text() != "", 5, "the validation to start")
    begin = time.monotonic()
    stop_cleanly(w)
    assert time.monotonic() - begin < 3
    assert repo.git("rev-parse", "HEAD") == head, "no move on a validation cut short"
    assert any("cut short" in line for line in w.lines), w.output
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


# ----- git owns the index: hands off ----------------------------------------------------------

def _needs_a_move(repo: Repo) -> None:
    repo.plan("g", GATED)
    repo.ok("claim", "g/a", "--worker", "w1")
    repo.ok("done", "g/a", "--worker", "w1")  # CP1 reached; nothing has moved the phase yet
    assert phase(repo, "g") == "execute"


def test_silent_during_a_merge(repo: Repo, watchers: list[Watcher]) -> None:
    _needs_a_move(repo)
    repo.git("checkout", "-q", "-b", "other")
    repo.write("README.md", "theirs\n")
    repo.git("commit", "-q", "-am", "theirs")
    repo.git("checkout", "-q", "main")
    repo.write("README.md", "ours\n")
    repo.git("commit", "-q", "-am", "ours")
    merge = subprocess.run(["git", "merge", "other"], cwd=repo.path, capture_output=True, text=True)
    assert merge.returncode != 0 and (repo.path / ".git" / "MERGE_HEAD").exists()
    head = repo.git("rev-parse", "HEAD")
    status = repo.git("status", "--porcelain")

    w = start(watchers, repo, "--interval", "5")
    settle(1.2)
    assert repo.git("rev-parse", "HEAD") == head
    assert repo.git("status", "--porcelain") == status
    assert (repo.path / ".git" / "MERGE_HEAD").exists()
    assert any("merge" in line for line in w.lines), w.output

    repo.git("merge", "--abort")
    wait_for(head_is(repo, "flow(g): phase checkpoint"), 3, "the move after the merge was aborted")
    assert repo.git("rev-parse", "HEAD" if state_branch(repo) else "HEAD~1") == head  # format 2: on flow/state
    stop_cleanly(w)


def test_silent_while_index_lock_exists(repo: Repo, watchers: list[Watcher]) -> None:
    _needs_a_move(repo)
    lock = repo.path / ".git" / "index.lock"
    lock.write_text("")
    head = repo.git("rev-parse", "HEAD")
    w = start(watchers, repo, "--interval", "5")
    settle(1.0)
    assert repo.git("rev-parse", "HEAD") == head
    said = [line for line in w.lines if "index.lock" in line]
    assert len(said) == 1, f"the wait is logged once, not on every look:\n{w.output}"
    lock.unlink()
    wait_for(head_is(repo, "flow(g): phase checkpoint"), 3, "the move after index.lock went away")
    stop_cleanly(w)


def test_no_commit_on_a_detached_head(repo: Repo, watchers: list[Watcher]) -> None:
    """Looking at an old commit (where a move was still due) must not grow a commit there."""
    _needs_a_move(repo)
    repo.ok("advance")
    repo.git("checkout", "-q", "--detach", "HEAD~1")
    old = repo.git("rev-parse", "HEAD")
    w = start(watchers, repo, "--interval", "5")
    settle(1.0)
    assert repo.git("rev-parse", "HEAD") == old, f"a move was committed on a detached HEAD:\n{w.output}"
    assert any("detached" in line for line in w.lines), w.output
    main = repo.git("rev-parse", "main")
    repo.git("checkout", "-q", "main")
    settle(0.6)
    assert repo.git("rev-parse", "HEAD") == main
    stop_cleanly(w)


def test_checkout_storm_and_rebase(repo: Repo, watchers: list[Watcher]) -> None:
    repo.plan("g", GATED)
    repo.ok("claim", "g/a", "--worker", "w1")  # settled: execute, a in progress
    # a branch with 300 files, some of them under .flow/
    repo.git("checkout", "-q", "-b", "big")
    for i in range(250):
        repo.write(f"src/pkg{i % 10}/mod{i}.py", f"x = {i}\n")
    for i in range(50):
        repo.write(f".flow/plans/g/notes/n{i}.txt", f"note {i}\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "--no-verify", "-m", "300 files")
    # a small branch to rebase onto a moved main
    repo.git("checkout", "-q", "-b", "feature", "main")
    for i in range(3):
        repo.write(f"feature{i}.txt", f"{i}\n")
        repo.git("add", f"feature{i}.txt")
        repo.git("commit", "-q", "-m", f"feature {i}")
    repo.git("checkout", "-q", "main")
    repo.write("main.txt", "main moved\n")
    repo.git("add", "main.txt")
    repo.git("commit", "-q", "-m", "main moves")
    flow_before = flow_commits(repo)

    w = start(watchers, repo, "--interval", "5")
    for _ in range(3):
        repo.git("checkout", "-q", "big")
        repo.git("checkout", "-q", "main")
    repo.git("checkout", "-q", "feature")
    repo.git("rebase", "-q", "main")
    repo.git("checkout", "-q", "big")
    repo.git("checkout", "-q", "main")
    settle(1.0)
    assert w.proc.poll() is None, w.output
    assert flow_commits(repo) == flow_before, w.output
    assert repo.git("status", "--porcelain") == ""
    assert "Traceback" not in w.output and "error" not in w.output.lower(), w.output
    # and it still works
    repo.ok("done", "g/a", "--worker", "w1")
    wait_for(head_is(repo, "flow(g): phase checkpoint"), 2.5, "the checkpoint commit after the storm")
    stop_cleanly(w)


def test_two_watchers_never_duplicate_a_move(repo: Repo, watchers: list[Watcher]) -> None:
    repo.plan("g", GATED)
    repo.ok("claim", "g/a", "--worker", "w1")
    w1 = start(watchers, repo, "--interval", "5")
    w2 = start(watchers, repo, "--interval", "5")
    repo.ok("done", "g/a", "--worker", "w1")
    wait_for(head_is(repo, "flow(g): phase checkpoint"), 3, "the checkpoint commit")
    # three racing for the next move: the approving command and both watchers
    approve_behind_flowgits_back(repo, "g", "CP1")
    proc = repo.proc("advance", "g")
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: phase(repo, "g") == "execute", 3, "execution to resume")
    repo.ok("claim", "g/c", "--worker", "w1")
    repo.ok("done", "g/c", "--worker", "w1")
    wait_for(lambda: phase(repo, "g") == "checkpoint", 3, "the second checkpoint")
    settle(1.0)
    subs = subjects(repo)
    assert subs.count("flow(g): phase checkpoint") == 2, subs
    assert subs.count("flow(g): phase execute") == 1, subs  # (the first claim entered execute itself)
    events = log_text(repo, "g").splitlines()
    phases = [json.loads(e)["data"]["to"] for e in events if json.loads(e)["type"] == "plan.phase"]
    assert phases == ["execute", "checkpoint", "execute", "checkpoint"]
    moved = [line for w in (w1, w2) for line in w.lines if "->" in line]
    assert len(moved) <= 3, moved
    stop_cleanly(w1)
    stop_cleanly(w2)


# ----- a long run -----------------------------------------------------------------------------

def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
@pytest.mark.stress
def test_no_growth_over_a_long_run(repo: Repo, watchers: list[Watcher]) -> None:
    repo.plan("g", GATED)
    repo.ok("claim", "g/a", "--worker", "w1")
    cfg = repo.path / ".flow" / "config.yaml"
    cfg.write_text(cfg.read_text() + "watch: {debounce_ms: 5, rescan_seconds: 30}\n")
    repo.git("commit", "-q", "--no-verify", "-m", "fast watch", "--", ".flow/config.yaml")
    w = start(watchers, repo)
    pid = w.proc.pid
    notes = repo.path / ".flow" / "plans" / "g" / "notes.txt"
    marks: dict[int, tuple[int, int, int]] = {}
    for i in range(1, 201):
        notes.write_text(f"pass {i}\n")
        time.sleep(0.025)  # > debounce + one pass (~20 ms): about one pass per write
        if i in (50, 200):
            time.sleep(0.1)
            marks[i] = (_rss_kb(pid), _fds(pid), _cpu_ticks(pid))
    assert w.proc.poll() is None, w.output
    (rss50, fds50, cpu50), (rss200, fds200, cpu200) = marks[50], marks[200]
    assert cpu200 > cpu50, "the watcher did no work between the marks: no passes ran"
    assert fds200 <= fds50 + 2, (fds50, fds200)
    assert rss200 - rss50 < 3 * 1024, f"VmRSS grew from {rss50} kB to {rss200} kB over 150 passes"
    assert repo.git("log", "-1", "--format=%s") == "fast watch", "touching a note decides nothing"
    stop_cleanly(w)


def test_falls_back_to_polling_when_native_events_cannot_start(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a network filesystem, or with inotify's watch limit reached."""
    import watchdog.observers

    from flowgit import git
    from flowgit.watcher import observer as watch

    class NoInotify:
        def schedule(self, *args: object, **kw: object) -> None:
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watchdog.observers, "Observer", NoInotify)
    lines: list[str] = []
    trigger = watch.Trigger(0.05)
    observer, mode = watch.start_observer(repo.path, git.find_dirs(repo.path), trigger, False, lines.append)
    try:
        assert mode == "polling"
        assert any("polling instead" in line and "watch limit" in line for line in lines), lines
        repo.plan("p", "id: p\ntitle: P\ntasks: []\n")
        assert trigger.wait(10, threading.Event()), "the polling observer saw no change"
    finally:
        observer.stop()
        observer.join()


def test_a_commit_made_by_renaming_a_ref_lock_wakes_it(repo: Repo, watchers: list[Watcher]) -> None:
    """Tools that commit without `git commit` (libgit2, scripts) write HEAD's ref as a lock
    file renamed into place: that rename alone must wake the watcher."""
    _needs_a_move(repo)
    plan = repo.path / ".flow/plans/g/plan.yaml"
    plan.write_text(plan.read_text().replace("title: Gated plan", "title: Gated plan, edited"))
    w = start(watchers, repo, "--interval", "60")
    wait_for(lambda: any("uncommitted changes" in line for line in w.lines), 5, "the wait logged")
    repo.git("add", ".flow/plans/g/plan.yaml")
    tree = repo.git("write-tree")
    sha = repo.git("commit-tree", tree, "-p", "HEAD", "-m", "edit, committed by a script")
    repo.git("update-ref", "refs/heads/main", sha)
    wait_for(head_is(repo, "flow(g): phase checkpoint"), 5, "the move after a scripted commit")
    stop_cleanly(w)
