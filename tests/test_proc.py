"""The process door (flowgit/proc.py): every command flowgit runs stops with everything it
started, including descendants that left its process group with `setsid`."""
from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers import Repo

from flowgit import proc

LINUX = Path("/proc/self/stat").exists()
needs_proc = pytest.mark.skipif(not LINUX, reason="descendants outside the group are found through /proc (Linux)")


def marker() -> str:
    """A number no other process has on its command line: `sleep 30.<marker>`."""
    return f"30.{uuid.uuid4().int % 10**9:09d}"


def alive(mark: str) -> list[int]:
    """Processes (zombies apart) whose command line holds `mark`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmd = Path("/proc", name, "cmdline").read_bytes()
            stat = Path("/proc", name, "stat").read_bytes()
        except OSError:
            continue
        if mark.encode() in cmd and stat[stat.rfind(b")") + 2:][:1] != b"Z" and int(name) != os.getpid():
            found.append(int(name))
    return found


def gone(mark: str, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(mark):
            return True
        time.sleep(0.05)
    return not alive(mark)


def py(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


@needs_proc
def test_a_timeout_stops_the_group_and_its_background_jobs() -> None:
    mark = marker()
    start = time.monotonic()
    res = proc.run(["sh", "-c", f"sleep {mark} & sleep {mark}"], timeout=1)
    assert res.returncode == proc.EXIT_TIMEOUT and res.timed_out
    assert "timed out after 1s" in res.text()
    assert time.monotonic() - start < 5
    assert gone(mark), alive(mark)


@needs_proc
def test_a_timeout_stops_a_grandchild_that_called_setsid() -> None:
    mark = marker()
    res = proc.run(py(f"""
        import os, time
        if os.fork() == 0:
            os.setsid()  # a session and group of its own: killpg no longer reaches it
            os.execvp("sleep", ["sleep", "{mark}"])
        time.sleep(60)
        """), timeout=1)
    assert res.timed_out
    assert gone(mark), alive(mark)


@needs_proc
def test_an_orphan_that_left_the_group_is_stopped_too() -> None:
    """fork, setsid, fork again and let the middle one exit: the sleeper is re-parented (to
    flowgit, its subreaper) and belongs to no tree under the command any more."""
    mark = marker()
    res = proc.run(py(f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "{mark}"])
            os._exit(0)
        time.sleep(60)
        """), timeout=1.5)
    assert res.timed_out
    assert gone(mark), alive(mark)


@needs_proc
def test_what_a_command_leaves_running_stops_when_it_exits() -> None:
    mark = marker()
    start = time.monotonic()
    res = proc.run(py(f"""
        import os, sys
        if os.fork() == 0:
            os.setsid()
            os.close(1); os.close(2)  # it holds no pipe of ours open: the exit is seen at once
            os.execvp("sleep", ["sleep", "{mark}"])
        print("done")
        """), timeout=30)
    assert res.returncode == 0 and res.text() == "done\n" and not res.timed_out
    assert time.monotonic() - start < 5
    assert gone(mark), alive(mark)


@needs_proc
def test_a_background_job_holding_the_output_open_does_not_hold_the_caller() -> None:
    mark = marker()
    start = time.monotonic()
    res = proc.run(["sh", "-c", f"sleep {mark} & echo started"], timeout=30)
    assert res.returncode == 0 and res.text() == "started\n"
    assert time.monotonic() - start < 5
    assert gone(mark)


@needs_proc
def test_a_stop_event_stops_the_tree() -> None:
    mark = marker()
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    start = time.monotonic()
    res = proc.run(["sh", "-c", f"sleep {mark} & sleep {mark}"], timeout=60, stop=stop)
    assert res.stopped and not res.ok and time.monotonic() - start < 5
    assert gone(mark)


@needs_proc
def test_an_exception_in_the_waiting_thread_stops_the_tree() -> None:
    mark = marker()

    def tick() -> None:
        raise KeyboardInterrupt  # Ctrl-C while the caller waits, or a heartbeat that fails

    with pytest.raises(KeyboardInterrupt):
        proc.run(["sh", "-c", f"sleep {mark} & sleep {mark}"], timeout=60, tick=tick, tick_every=0.2)
    assert gone(mark)


def test_a_command_that_does_not_exist_is_a_result() -> None:
    res = proc.run(["flowgit-no-such-command", "x"], timeout=5)
    assert res.returncode == proc.EXIT_CANNOT_RUN and not res.ok
    assert res.error == "cannot run 'flowgit-no-such-command': No such file or directory"
    assert proc.run([], timeout=5).returncode == proc.EXIT_CANNOT_RUN


def test_a_directory_that_does_not_exist_is_a_result(tmp_path: Path) -> None:
    res = proc.run(["true"], cwd=tmp_path / "nowhere")
    assert res.returncode == proc.EXIT_CANNOT_RUN and "No such file or directory" in (res.error or "")


def test_output_tail_stdin_env_and_exit_code() -> None:
    res = proc.run(py("""
        import os, sys
        data = sys.stdin.read()
        sys.stdout.write("x" * 100000 + "|end " + data + " " + os.environ["FLOWGIT_TEST_VALUE"])
        sys.stderr.write(" and stderr")
        sys.exit(3)
        """), input=b"from stdin", extra_env={"FLOWGIT_TEST_VALUE": "v1"}, tail=40)
    assert res.returncode == 3 and not res.ok
    assert len(res.output) == 40 and res.text().endswith("|end from stdin v1 and stderr")
    apart = proc.run(py("import sys; print('out'); print('err', file=sys.stderr)"),
                     merge_stderr=False, keep="all")
    assert apart.output == b"out\n" and apart.stderr == b"err\n"


def test_all_of_stdout_is_kept_when_asked() -> None:
    res = proc.run(py("print('y' * 300000)"), keep="all")
    assert len(res.output) == 300001


def test_a_heartbeat_is_called_while_the_command_runs() -> None:
    beats: list[float] = []
    res = proc.run(["sleep", "0.7"], tick=lambda: beats.append(time.monotonic()), tick_every=0.2)
    assert res.ok and 2 <= len(beats) <= 4


def test_a_validation_that_times_out_leaves_nothing_running(repo: Repo) -> None:
    """End to end: a checkpoint validation whose background job outlives its timeout."""
    mark = marker()
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - {id: A, title: a}\ncheckpoints:\n  - id: CP\n"
                   "    after: [A]\n    validations:\n"
                   f"      - {{name: slow, run: [sh, -c, 'sleep {mark} & sleep {mark}'], timeout: 1}}\n")
    repo.ok("claim", "p", "--worker", "w")
    repo.ok("done", "A", "--worker", "w")
    out = repo.ok("--json", "advance", "p").json
    assert out["moves"][0]["validations"] == [{"name": "slow", "exit_code": 124}]
    if LINUX:
        assert gone(mark), alive(mark)


@needs_proc
def test_a_discovery_and_a_signal_action_that_time_out_leave_nothing_running(tmp_path: Path) -> None:
    """The case that started the door: `sh -c 'sleep 30 & sleep 30'` as a discovery command
    with a 1 s timeout left both sleeps running."""
    from flowgit.watcher.schedules import run_discovery
    from flowgit.watcher.signals import run_action

    mark = marker()
    code, out = run_discovery(("sh", "-c", f"sleep {mark} & sleep {mark}"), tmp_path, 1, {})
    assert (code, out) == (124, "")
    assert gone(mark), alive(mark)
    code, _duration, tail = run_action(("sh", "-c", f"cat; sleep {mark} & sleep {mark}"), tmp_path, 1,
                                       {}, "payload")
    assert code == 124 and tail.startswith("payload")
    assert gone(mark), alive(mark)
