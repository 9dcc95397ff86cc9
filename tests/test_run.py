"""`flowgit run` and `watch --run` with real executors (issue 6): small Python scripts configured
under `executors:` run in a worktree per task, and the results are merged back with `done`.

Every run is a real `flowgit` process; the executors report what they saw to a control
directory (events.jsonl, pid files) so the tests can check overlap, cwd, env and cleanup."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from helpers.clock import WallClock
from helpers import Repo, flowgit_proc, state_branch, states, status, wait_for

PRELUDE = '''\
import json, os, signal, subprocess, sys, time
from pathlib import Path
CTL = Path(sys.argv[1])
TASK = os.environ["FLOWGIT_TASK"]
(CTL / f"{TASK}.{os.getpid()}.pid").write_text(str(os.getpid()))


def log(kind, **kw):
    with open(CTL / "events.jsonl", "a") as f:
        f.write(json.dumps({"task": TASK, "kind": kind, "t": time.time(), **kw}) + "\\n")


def wait_until(cond, timeout=20):
    deadline = time.time() + timeout
    while not cond() and time.time() < deadline:
        time.sleep(0.02)


def started(*tasks):
    return lambda: all((CTL / f"{t}.started").exists() for t in tasks)


(CTL / f"{TASK}.started").write_text("")


def spawn_child():
    child = subprocess.Popen(["sleep", "60"])
    (CTL / f"{TASK}.{child.pid}.child").write_text(str(child.pid))
    return child

'''


# ----- helpers --------------------------------------------------------------------------------

def use_executor(repo: Repo, tmp_path: Path, body: str, *, timeout: float = 60,
                 lease: float | None = None, extra: str = "") -> Path:
    """Write the executor script, make it the default executor `script`, commit the config."""
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    script = tmp_path / "executor.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    argv = [sys.executable, str(script), str(ctl), "{task}", "{title}", "{worktree}", "{prompt_file}", "{repo}"]
    cfg = repo.path / ".flow" / "config.yaml"
    text = cfg.read_text().replace("executors: {}\n", "")
    text = re.sub(r"(?m)^default_executor: .*$", "default_executor: script", text)
    if lease is not None:
        text = re.sub(r"(?m)^lease_seconds: .*$", f"lease_seconds: {lease}", text)
    text += (f"executors:\n  script:\n    argv: {json.dumps(argv)}\n    timeout: {timeout}\n"
             f"  alt:\n    argv: {json.dumps(argv + ['alt'])}\n    env: {{TEST_EXECUTOR: alt}}\n" + extra)
    cfg.write_text(text)
    repo.git("commit", "-q", "-am", "test: use the script executor")
    repo.ok("trust")  # an executor written by hand runs once trusted in this clone
    return ctl


def records(ctl: Path) -> list[dict[str, Any]]:
    path = ctl / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def interval(ctl: Path, task: str) -> tuple[float, float]:
    recs = records(ctl)
    start = [r["t"] for r in recs if r["task"] == task and r["kind"] == "start"]
    end = [r["t"] for r in recs if r["task"] == task and r["kind"] == "end"]
    assert len(start) == 1 and len(end) == 1, recs
    return start[0], end[0]


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, just not reaped
    except OSError:
        return False


def pids(ctl: Path, suffix: str, task: str | None = None) -> list[int]:
    return [int(p.read_text()) for p in ctl.glob(f"{task or '*'}.*.{suffix}")]


def events(repo: Repo, task: str, plan: str = "p") -> list[dict[str, Any]]:
    return json.loads(repo.ok("events", plan, task, "--json").out)["events"]


def done_commit(repo: Repo, task: str, plan: str = "p") -> str:
    """The code commit a task's `done` went with: the commit that changed its log (format 1),
    the commit its `done` names (format 2, ADR 0011)."""
    if state_branch(repo):
        return str(events(repo, task, plan)[-1]["data"]["code"])
    return repo.git("log", "-1", "--format=%H", "--", f".flow/plans/{plan}/events/{task}.jsonl")


def assert_clean(repo: Repo) -> None:
    """Only the main work tree, no task branches, nothing half-merged, nothing uncommitted."""
    porcelain = repo.git("worktree", "list", "--porcelain")
    trees = [line for line in porcelain.splitlines() if line.startswith("worktree ")]
    assert trees == [f"worktree {repo.path}"], porcelain
    common = Path(repo.git("rev-parse", "--path-format=absolute", "--git-common-dir"))
    leftover = [p for p in (common / "flowgit-worktrees").rglob("*") if p.is_file()] \
        if (common / "flowgit-worktrees").exists() else []
    assert leftover == []
    assert not (common / "MERGE_HEAD").exists()
    assert repo.git("status", "--porcelain") == ""
    repo.ok("validate")  # every event the runner wrote is well-formed


@pytest.fixture
def reaper(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Whatever a test leaves running (flowgit processes, orphaned executors) is killed after it."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ctl = tmp_path / "ctl"
    if ctl.exists():
        for pid in pids(ctl, "pid") + pids(ctl, "child"):
            try:  # only our own executors and their `sleep` children (never a reused pid)
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if alive(pid) and (b"sleep" in cmdline or str(tmp_path).encode() in cmdline):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def plan_yaml(*tasks: str, extra: str = "") -> str:
    return "id: p\ntitle: Run test\ngoal: Exercise flowgit run\n" + extra + "tasks:\n" + "".join(
        f"  - {t}\n" for t in tasks)


# ----- a parallel run -------------------------------------------------------------------------

PARALLEL = """\
head = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True, text=True).stdout.strip()
log("start", cwd=os.getcwd(), argv=sys.argv[2:], branch=head,
    env={k: v for k, v in os.environ.items() if k.startswith(("FLOWGIT_", "TEST_"))},
    prompt_exists=Path(os.environ["FLOWGIT_PROMPT_FILE"]).is_file())
wait_until(started("A", "B", "C"))  # released only if all three run at once
time.sleep(0.1)
Path(f"{TASK}.txt").write_text(f"{TASK}\\nsecond line\\n")
if TASK == "B":  # names git would quote (space, non-ASCII)
    Path("données").mkdir()
    Path("données/é b.txt").write_text("x\\n")
print(f"hello from {TASK}")
if TASK == "C":  # an executor may commit its own work
    subprocess.run(["git", "add", "C.txt"], check=True)
    subprocess.run(["git", "commit", "-q", "--no-verify", "-m", "C committed by its executor"], check=True)
log("end")
"""


def test_parallel_run_merges_every_task_and_cleans_up(repo: Repo, tmp_path: Path) -> None:
    ctl = use_executor(repo, tmp_path, PARALLEL)
    repo.plan("p", plan_yaml("{id: A, title: Alpha}", "{id: B, title: Beta task}", "{id: C, title: Gamma}"))
    t0 = time.monotonic()
    res = repo.proc("run", "p", "-n", "3", "--json", timeout=60)
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    assert elapsed < 30
    result = json.loads(res.stdout)  # stdout is one JSON object; progress lines went to stderr
    assert (result["plan"], result["done"], result["failed"], result["interrupted"]) == ("p", 3, 0, False)
    assert "claimed p/A" in res.stderr

    # all three ran at the same time
    spans = {t: interval(ctl, t) for t in "ABC"}
    assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values()), spans

    common = Path(repo.git("rev-parse", "--path-format=absolute", "--git-common-dir"))
    titles = {"A": "Alpha", "B": "Beta task", "C": "Gamma"}
    for rec in (r for r in records(ctl) if r["kind"] == "start"):
        t = rec["task"]
        # cwd is the task's own worktree on its own branch; placeholders and env are filled
        assert rec["cwd"] == str(common / "flowgit-worktrees" / "p" / t)
        assert rec["branch"] == f"flow/p/{t}"
        assert rec["argv"][:3] == [t, titles[t], rec["cwd"]]
        assert rec["env"]["FLOWGIT_PLAN"] == "p" and rec["env"]["FLOWGIT_TASK"] == t
        assert rec["env"]["FLOWGIT_TITLE"] == titles[t]
        assert rec["env"]["FLOWGIT_WORKTREE"] == rec["cwd"]
        assert rec["env"]["FLOWGIT_PROMPT_FILE"] == rec["argv"][3] and rec["prompt_exists"]
        assert rec["env"]["FLOWGIT_ACTOR"].startswith("run-")
        assert "TEST_EXECUTOR" not in rec["env"]

    # everything is merged into main, each done in a merge commit
    for t in "ABC":
        assert (repo.path / f"{t}.txt").read_text() == f"{t}\nsecond line\n"
        assert repo.git("show", f"main:{t}.txt") == f"{t}\nsecond line"
    assert "C committed by its executor" in repo.git("log", "--format=%s", "main")
    st = status(repo, "p")
    assert st["counts"]["done"] == 3 and st["progress"] == 100

    for t in "ABC":
        evs = events(repo, t)
        types = [e["type"] for e in evs]
        assert types == ["task.claimed", "task.started", "task.log", "task.done"], types
        done = evs[-1]["data"]
        if t == "B":
            assert sorted(done["files_modified"]) == ["B.txt", "données/é b.txt"]
            assert (done["lines_added"], done["lines_removed"]) == (3, 0)
        else:
            assert done["files_modified"] == [f"{t}.txt"]
            assert (done["lines_added"], done["lines_removed"]) == (2, 0)
        logs = {e["data"].get("log") for e in evs if e["data"].get("log")}
        logs |= {e["data"].get("path") for e in evs if e["type"] == "task.log"}
        assert len(logs) == 1 and None not in logs, evs
        log_file = repo.path / logs.pop()
        assert log_file.is_file() and f"hello from {t}" in log_file.read_text()
        # the commit that recorded done is the merge of the task branch (format 2: the merge
        # `done` names, recorded on the state branch)
        sha = done_commit(repo, t)
        parents = repo.git("log", "-1", "--format=%P", sha).split()
        assert len(parents) == 2, (t, parents)
        if not state_branch(repo):
            body = repo.git("log", "-1", "--format=%B", sha)
            assert f"Flow-Task: {t}" in body and "Flow-Event: done" in body.replace("task.done", "done")
        assert repo.git("show", f"{sha}:{t}.txt") == f"{t}\nsecond line"

    assert repo.git("branch", "--list", "flow/*/*") == ""
    assert_clean(repo)


def test_prompt_file_and_executor_override(repo: Repo, tmp_path: Path) -> None:
    """The prompt file carries goal, scope, spec, ADRs, acceptance, files and the notes of the
    dependencies; `--executor` chooses another configured executor (its env included)."""
    ctl = use_executor(repo, tmp_path, """\
        Path(CTL / f"{TASK}.prompt.md").write_text(Path(sys.argv[5]).read_text())
        log("start", argv=sys.argv[2:], env=os.environ.get("TEST_EXECUTOR"))
        if TASK == "A":  # a note for the tasks that depend on this one
            Path(os.environ["FLOWGIT_NOTE_FILE"]).write_text("table webhooks(id, url) in migration 0007\\n")
            Path("schema.sql").write_text("create table webhooks(id, url);\\n")
        else:
            Path("store.go").write_text("package store\\n")
        log("end")
        """)
    repo.write(".flow/adrs/ADR-0001-sqlite-retry-table.yaml", textwrap.dedent("""\
        id: ADR-0001
        title: SQLite-backed retry table
        status: accepted
        date: 2026-11-22
        plans: []
        context: Deliveries must survive restarts
        decision: Keep pending deliveries in SQLite
        """))
    repo.git("add", ".flow/adrs")
    repo.git("commit", "-q", "-m", "adr")
    repo.plan("p", plan_yaml(
        "{id: A, title: Schema}",
        "{id: B, title: WebhookStore, depends_on: [A], files: [store.go], "
        "acceptance: ['CRUD is tested'], description: Store the hooks}",
        extra="adrs: [ADR-0001]\nscope: {included: [HTTP delivery], excluded: [gRPC push]}\n"))
    repo.write(".flow/plans/p/spec.yaml", textwrap.dedent("""\
        plan: p
        requirements:
          - id: R1
            kind: event_driven
            text: When job.completed fires, the system shall deliver to all registered hooks
            tasks: [B]
        """))
    repo.git("add", ".flow/plans/p/spec.yaml")
    repo.git("commit", "-q", "-m", "spec")
    repo.ok("trust", "p")  # the spec written by hand becomes the agent's prompt: trusted here
    res = repo.proc("run", "p", "-n", "2", "--executor", "alt", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    recs = [r for r in records(ctl) if r["kind"] == "start"]
    assert [r["task"] for r in recs] == ["A", "B"]
    assert all(r["argv"][-1] == "alt" and r["env"] == "alt" for r in recs), recs
    assert events(repo, "A")[-1]["data"]["note"] == "table webhooks(id, url) in migration 0007"
    assert "table webhooks" not in (ctl / "A.prompt.md").read_text()
    prompt = (ctl / "B.prompt.md").read_text()
    for expected in ("WebhookStore", "Exercise flowgit run", "HTTP delivery", "gRPC push", "Store the hooks",
                     "When job.completed fires, the system shall deliver to all registered hooks",
                     "ADR-0001", "SQLite-backed retry table", "Keep pending deliveries in SQLite",
                     "CRUD is tested", "store.go", "table webhooks(id, url) in migration 0007"):
        assert expected in prompt, (expected, prompt)
    assert states(repo, "p") == {"A": "done", "B": "done"}


def test_bad_executor_override_or_staged_changes_are_refused_before_any_claim(repo: Repo, tmp_path: Path) -> None:
    use_executor(repo, tmp_path, "log('start')\n")
    repo.plan("p", plan_yaml("{id: A, title: Alpha}", "{id: B, title: Beta}"))
    before = repo.commits()
    res = repo.proc("run", "p", "-n", "2", "--executor", "nope", timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    err = res.stderr + res.stdout
    assert "nope" in err and "script" in err and "shell" in err and "Traceback" not in err
    assert states(repo, "p") == {"A": "ready", "B": "ready"}
    assert repo.commits() == before
    # staged changes of the user's: refused too (run merges into this work tree)
    repo.write("mine.txt", "staged\n")
    repo.git("add", "mine.txt")
    res = repo.proc("run", "p", "-n", "2", timeout=60)
    assert res.returncode == 1 and "staged changes" in res.stderr, res.stdout + res.stderr
    assert states(repo, "p") == {"A": "ready", "B": "ready"} and repo.commits() == before


def test_run_on_a_plan_waiting_for_approval_says_so(repo: Repo, tmp_path: Path) -> None:
    use_executor(repo, tmp_path, "log('start')\n")
    cfg = repo.path / ".flow" / "config.yaml"
    cfg.write_text(re.sub(r"required: 0", "required: 1", cfg.read_text()))
    repo.git("commit", "-q", "-am", "one approval")
    repo.plan("p", plan_yaml("{id: A, title: Alpha}"))
    res = repo.proc("run", "p", "-n", "1", timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "approv" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "ctl" / "events.jsonl").exists()


def test_run_on_a_halted_plan_says_so(repo: Repo, tmp_path: Path) -> None:
    use_executor(repo, tmp_path, "log('start')\n")
    repo.plan("p", plan_yaml("{id: A, title: Alpha}", "{id: B, title: Beta, depends_on: [A]}"))
    repo.ok("claim", "p/A", "--worker", "w")
    repo.ok("fail", "p/A", "--worker", "w", "--error", "boom")
    repo.ok("advance", "p")
    assert status(repo, "p")["phase"] == "halted"
    res = repo.proc("run", "p", "-n", "1", timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "halted" in res.stderr and "flowgit resume p" in res.stderr
    assert not (tmp_path / "ctl" / "events.jsonl").exists()


def test_a_terminal_gets_a_live_progress_line(repo: Repo, tmp_path: Path) -> None:
    import pty

    use_executor(repo, tmp_path, """\
        time.sleep(0.6)
        Path(f"{TASK}.txt").write_text(TASK)
        """)
    repo.plan("p", plan_yaml("{id: A, title: a}", "{id: B, title: b}"))
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "flowgit", "--repo", str(repo.path), "run", "p", "-n", "1"],
                            stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    out = b"".join(chunks).decode("utf-8", "replace")
    assert "\r\x1b[K" in out, out
    assert re.search(r"done 0 \| running 1 \| ready 1 \| failed 0 \| \d+\.\ds", out), out
    assert "p/A done" in out and "p/B done" in out


def test_one_worker_reuses_its_worktree_yet_every_task_starts_pristine(repo: Repo, tmp_path: Path) -> None:
    """The worktree moves from task to task: each task still gets it at its own path, on its
    own branch, exactly at its commit (nothing left of the last task: changes, untracked or
    ignored files), and the run leaves no worktree or finished branch behind."""
    with open(repo.path / ".gitignore", "a") as f:
        f.write("build/\n")
    repo.git("add", ".gitignore")
    repo.git("commit", "-q", "-m", "ignore build/")
    ctl = use_executor(repo, tmp_path, """\
        def git_out(*args):
            return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()
        log("start", cwd=os.getcwd(), status=git_out("status", "--porcelain", "--ignored"),
            branch=git_out("rev-parse", "--abbrev-ref", "HEAD"), gitdir=Path(".git").read_text().strip())
        Path("build").mkdir()
        Path("build/out.o").write_text(TASK)  # ignored: never merged
        if TASK == "B" and not (CTL / "B.failed").exists():
            (CTL / "B.failed").write_text("")
            Path("junk.txt").write_text("half done\\n")
            Path("README.md").write_text("clobbered\\n")
            sys.exit(1)
        if TASK != "C":  # C changes nothing
            Path(f"{TASK}.txt").write_text(TASK + "\\n")
        """)
    repo.plan("p", plan_yaml("{id: A, title: a}", "{id: B, title: b}", "{id: C, title: c}", "{id: D, title: d}",
                             extra="retry: {strategy: fixed, base: 0.2, max_attempts: 2}\n"))
    res = repo.proc("run", "p", "-n", "1", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    starts = [r for r in records(ctl) if r["kind"] == "start"]
    assert sorted(r["task"] for r in starts) == ["A", "B", "B", "C", "D"]
    common = Path(repo.git("rev-parse", "--path-format=absolute", "--git-common-dir"))
    for rec in starts:
        assert rec["status"] == "", rec
        assert rec["cwd"] == str(common / "flowgit-worktrees" / "p" / rec["task"])
        assert rec["branch"] == f"flow/p/{rec['task']}"
    assert len({rec["gitdir"] for rec in starts}) == 1, starts  # one worktree, moved along

    assert set(states(repo, "p").values()) == {"done"}
    assert (repo.path / "README.md").read_text() == "hello\n"
    assert not (repo.path / "junk.txt").exists() and not (repo.path / "build").exists()

    def parents(task: str) -> int:
        sha = done_commit(repo, task)
        return len(repo.git("log", "-1", "--format=%P", sha).split())

    # C changed nothing: no merge, its done is a plain commit (format 2: it names the tip it
    # found, another task's merge, and adds none of its own)
    if state_branch(repo):
        assert {t: parents(t) for t in "ABD"} == {"A": 2, "B": 2, "D": 2}
        assert len({done_commit(repo, t) for t in "ABCD"}) == 3
    else:
        assert {t: parents(t) for t in "ABCD"} == {"A": 2, "B": 2, "C": 1, "D": 2}
    assert events(repo, "C")[-1]["data"]["files_modified"] == []
    assert repo.git("branch", "--list", "flow/*/*") == ""
    assert_clean(repo)


def test_changes_staged_during_a_run_stop_it_and_stay_the_users(repo: Repo, tmp_path: Path) -> None:
    """git refuses to merge over staged changes, and would again on every retry: the run
    releases the task (its branch kept) and stops; the staged file is neither committed nor
    unstaged; once the user unstages it, the next run merges."""
    ctl = use_executor(repo, tmp_path, """\
        main = Path(sys.argv[6])
        if not (CTL / "staged").exists():  # the user stages a file while the task runs
            (CTL / "staged").write_text("")
            (main / "mine.txt").write_text("the user's\\n")
            subprocess.run(["git", "-C", str(main), "add", "mine.txt"], check=True)
        log("ran")
        Path("A.txt").write_text("A\\n")
        """)
    repo.plan("p", plan_yaml("{id: A, title: a}"))
    res = repo.proc("--json", "run", "p", "-n", "1", timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "staged changes" in json.loads(res.stdout)["stopped"]
    assert len([r for r in records(ctl) if r["kind"] == "ran"]) == 1  # not re-run in a loop
    (released,) = [e for e in events(repo, "A") if e["type"] == "task.released"]
    assert "staged changes" in released["data"]["reason"]
    assert states(repo, "p") == {"A": "ready"}
    assert repo.git("diff", "--cached", "--name-only") == "mine.txt"
    assert repo.git("log", "--format=%H", "--", "mine.txt") == ""
    repo.git("reset", "-q", "--", "mine.txt")
    repo.ok("run", "p", "-n", "1")
    assert states(repo, "p") == {"A": "done"} and (repo.path / "A.txt").read_text() == "A\n"
    (repo.path / "mine.txt").unlink()
    assert_clean(repo)


def test_a_merge_waits_for_someone_elses_index_lock(repo: Repo, tmp_path: Path) -> None:
    use_executor(repo, tmp_path, """\
        lock = Path(sys.argv[6], ".git", "index.lock")
        lock.write_text("")  # an editor's git command, busy for a moment
        Path("A.txt").write_text("A")
        """)
    lock = repo.path / ".git" / "index.lock"

    def editor() -> None:  # outside the executor's tree: what it leaves running is stopped
        deadline = time.time() + 30
        while not lock.exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)
        lock.unlink(missing_ok=True)

    import threading
    t = threading.Thread(target=editor, daemon=True)
    t.start()
    repo.plan("p", plan_yaml("{id: A, title: a}"))
    repo.ok("run", "p", "-n", "1")
    t.join()
    assert states(repo, "p") == {"A": "done"} and (repo.path / "A.txt").read_text() == "A"


def test_a_halt_lets_the_other_running_tasks_finish(repo: Repo, tmp_path: Path) -> None:
    use_executor(repo, tmp_path, """\
        if TASK != "A":
            wait_until(lambda: (CTL / "A.ended").exists())
            time.sleep(1.0)  # still running when A's merge is refused
        Path(f"{TASK}.txt").write_text(TASK)
        if TASK == "A":
            (CTL / "A.ended").write_text("")
        """)
    repo.plan("p", plan_yaml("{id: A, title: a}", "{id: B, title: b}", "{id: C, title: c}"))
    (repo.path / "A.txt").write_text("the user's, untracked")
    res = repo.proc("--json", "run", "p", "-n", "3", timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "(A.txt)" in json.loads(res.stdout)["stopped"]
    assert states(repo, "p") == {"A": "ready", "B": "done", "C": "done"}


# ----- failures -------------------------------------------------------------------------------

def test_failing_task_is_retried_then_succeeds(repo: Repo, tmp_path: Path) -> None:
    ctl = use_executor(repo, tmp_path, """\
        attempt = len(list(CTL.glob(f"{TASK}.attempt.*"))) + 1
        (CTL / f"{TASK}.attempt.{attempt}").write_text(os.getcwd())
        if attempt == 1:
            Path("half.txt").write_text("half done\\n")
            print("failing on purpose")
            sys.exit(3)
        Path("r.txt").write_text("ok\\n")
        """)
    repo.plan("p", plan_yaml("{id: A, title: Flaky}",
                             extra="retry: {strategy: fixed, base: 0.2, max_attempts: 3}\n"))
    res = repo.proc("run", "p", "-n", "1", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(list(ctl.glob("A.attempt.*"))) == 2
    evs = events(repo, "A")
    types = [e["type"] for e in evs]
    assert types.count("task.claimed") == 2 and types[-1] == "task.done", types
    (failed,) = [e for e in evs if e["type"] == "task.failed"]
    assert failed["data"]["retry"] and failed["data"]["retry_at"]
    assert "exit 3" in failed["data"]["error"]
    logs = [e["data"]["log"] for e in evs if e["type"] == "task.started"]
    assert len(set(logs)) == 2
    assert "failing on purpose" in (repo.path / logs[0]).read_text()
    assert (status(repo, "p")["tasks"][0]["attempts"], states(repo, "p")["A"]) == (2, "done")
    # the failed attempt's half-done work was thrown away with its worktree
    assert (repo.path / "r.txt").exists() and not (repo.path / "half.txt").exists()
    assert events(repo, "A")[-1]["data"]["files_modified"] == ["r.txt"]
    assert_clean(repo)


def test_timeout_kills_the_whole_process_group(repo: Repo, tmp_path: Path) -> None:
    """Attempt 1 dies on SIGTERM; attempt 2 ignores it (and so does its child), so only the
    SIGKILL that follows ends them. Both attempts fail and the retry policy fails the task."""
    ctl = use_executor(repo, tmp_path, """\
        attempt = len(list(CTL.glob(f"{TASK}.attempt.*"))) + 1
        (CTL / f"{TASK}.attempt.{attempt}").write_text("")
        if attempt == 2:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        spawn_child()
        print("sleeping", flush=True)
        time.sleep(60)
        """, timeout=1.5)
    repo.plan("p", plan_yaml("{id: A, title: Sleeper}",
                             extra="retry: {strategy: fixed, base: 0.1, max_attempts: 2}\n"))
    t0 = time.monotonic()
    res = repo.proc("run", "p", "-n", "1", timeout=60)
    elapsed = time.monotonic() - t0
    assert res.returncode == 1, res.stdout + res.stderr
    assert elapsed < 15
    executors, children = pids(ctl, "pid", "A"), pids(ctl, "child", "A")
    assert len(executors) == 2 and len(children) == 2
    for pid in executors + children:
        assert not alive(pid), f"process {pid} survived the timeout"
    evs = [e for e in events(repo, "A") if e["type"] == "task.failed"]
    assert len(evs) == 2
    assert all("timed out after 1.5s" in e["data"]["error"] for e in evs)
    assert evs[0]["data"]["retry_at"] and evs[1]["data"]["retry_at"] is None
    row = status(repo, "p")["tasks"][0]
    assert (row["state"], row["attempts"]) == ("failed", 2)
    assert "timed out" in row["error"]
    assert_clean(repo)
    assert repo.git("branch", "--list", "flow/*/*") == ""


def test_merge_conflict_fails_the_task_and_keeps_its_branch(repo: Repo, tmp_path: Path) -> None:
    repo.write("shared notes.txt", "base line\n")
    repo.git("add", "shared notes.txt")
    repo.git("commit", "-q", "-m", "shared file")
    use_executor(repo, tmp_path, """\
        wait_until(started("A", "B"))  # both branch from the same base
        Path("shared notes.txt").write_text(f"changed by {TASK}\\n")
        if TASK == "B":  # A merges first; B then conflicts
            wait_until(lambda: Path(sys.argv[6], "shared notes.txt").read_text() == "changed by A\\n")
        """)
    # no declared files, so both run at once from the same base
    repo.plan("p", plan_yaml("{id: A, title: Edit shared}", "{id: B, title: Edit shared too}"))
    res = repo.proc("run", "p", "-n", "2", timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    assert states(repo, "p") == {"A": "done", "B": "failed"}
    row = [t for t in status(repo, "p")["tasks"] if t["id"] == "B"][0]
    assert "merge conflict" in row["error"] and "shared notes.txt" in row["error"] and "flow/p/B" in row["error"]
    assert (repo.path / "shared notes.txt").read_text() == "changed by A\n"
    # the branch is kept with B's work on it, nothing is half-merged
    assert repo.git("branch", "--list", "flow/*/*").split() == ["flow/p/B"]
    assert repo.git("show", "flow/p/B:shared notes.txt") == "changed by B"
    assert_clean(repo)


def test_overlapping_files_never_run_together(repo: Repo, tmp_path: Path) -> None:
    ctl = use_executor(repo, tmp_path, """\
        log("start")
        if TASK.startswith("Y"):  # ends early only if the other Y runs meanwhile
            wait_until(started("Y1", "Y2"), 10)
        time.sleep(0.3)
        Path(f"{TASK}.out").write_text(TASK + "\\n")
        log("end")
        """)
    repo.plan("p", plan_yaml(
        "{id: X1, title: x1, files: [cfg/app.yaml, x1.txt]}",
        "{id: X2, title: x2, files: [cfg/app.yaml]}",
        "{id: X3, title: x3, files: [x1.txt]}",
        "{id: Y1, title: y1, files: [y1.txt]}",
        "{id: Y2, title: y2, files: [y2.txt]}"))
    res = repo.proc("run", "p", "-n", "4", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    spans = {t: interval(ctl, t) for t in ("X1", "X2", "X3", "Y1", "Y2")}
    for a, b in (("X1", "X2"), ("X1", "X3")):
        assert not overlaps(spans[a], spans[b]), (a, b, spans)
    assert overlaps(spans["Y1"], spans["Y2"]), spans
    assert set(states(repo, "p").values()) == {"done"}
    assert_clean(repo)


def test_overlapping_files_are_serialised_across_two_run_processes(
        repo: Repo, tmp_path: Path, reaper: list[subprocess.Popen[str]]) -> None:
    """Two `flowgit run` processes on one plan (or `run` beside `watch --run`): the rule holds
    through the claims in the repository, not only inside one process."""
    ctl = use_executor(repo, tmp_path, """\
        log("start")
        wait_until(started("X1", "X2"), 1.0)  # ends at once if the other one is (wrongly) running
        Path(f"{TASK}.out").write_text(TASK + "\\n")
        log("end")
        """)
    repo.plan("p", plan_yaml("{id: X1, title: x1, files: [cfg/app.yaml]}",
                             "{id: X2, title: x2, files: [cfg/app.yaml]}"))
    procs = [flowgit_proc(repo, "run", "p", "-n", "1") for _ in range(2)]
    reaper.extend(procs)
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert not overlaps(interval(ctl, "X1"), interval(ctl, "X2")), records(ctl)
    assert set(states(repo, "p").values()) == {"done"}
    assert_clean(repo)


# ----- stopping and resuming ------------------------------------------------------------------

SLOW_UNLESS_FAST = """\
if not (CTL / "fast").exists():
    spawn_child()
    (CTL / f"{TASK}.running").write_text("")
    time.sleep(60)
Path(f"{TASK}.txt").write_text(TASK + "\\n")
"""


def test_sigterm_stops_releases_cleans_and_a_second_run_resumes(
        repo: Repo, tmp_path: Path, reaper: list[subprocess.Popen[str]]) -> None:
    ctl = use_executor(repo, tmp_path, SLOW_UNLESS_FAST)
    repo.plan("p", plan_yaml("{id: A, title: a}", "{id: B, title: b}", "{id: C, title: c, depends_on: [A]}"))
    proc = flowgit_proc(repo, "run", "p", "-n", "2", "--json", stderr=subprocess.PIPE)
    reaper.append(proc)
    wait_for(lambda: (ctl / "A.running").exists() and (ctl / "B.running").exists(), 20, "both executors")
    assert states(repo, "p") == {"A": "in_progress", "B": "in_progress", "C": "pending"}
    proc.send_signal(signal.SIGTERM)
    stdout, out = proc.communicate(timeout=20)
    assert proc.returncode != 0, out
    result = json.loads(stdout)
    assert result["interrupted"] is True and result["done"] == 0, result
    for pid in pids(ctl, "pid") + pids(ctl, "child"):
        assert not alive(pid), f"executor process {pid} survived SIGTERM\n{out}"
    st = status(repo, "p")
    assert {t["id"]: t["state"] for t in st["tasks"]} == {"A": "ready", "B": "ready", "C": "pending"}, out
    assert st["counts"]["claimed"] == st["counts"]["in_progress"] == 0
    for t in "AB":
        assert "task.released" in [e["type"] for e in events(repo, t)]
    assert not (repo.path / "A.txt").exists()
    assert repo.git("branch", "--list", "flow/*/*") == ""
    assert_clean(repo)

    (ctl / "fast").write_text("")
    res = repo.proc("run", "p", "-n", "2", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(states(repo, "p").values()) == {"done"}
    assert all((repo.path / f"{t}.txt").exists() for t in "ABC")
    assert_clean(repo)


def test_a_killed_runner_leaves_a_lease_that_expires(
        repo: Repo, tmp_path: Path, reaper: list[subprocess.Popen[str]], wall_clock: WallClock) -> None:
    ctl = use_executor(repo, tmp_path, SLOW_UNLESS_FAST, lease=60)
    repo.plan("p", plan_yaml("{id: A, title: a}"))
    proc = flowgit_proc(repo, "run", "p", "-n", "1")
    reaper.append(proc)
    wait_for(lambda: (ctl / "A.running").exists(), 20, "the executor")
    proc.kill()
    proc.wait()
    assert states(repo, "p")["A"] == "in_progress"
    wall_clock.advance(50)
    assert states(repo, "p")["A"] == "in_progress"  # not before the lease ran out
    wall_clock.advance(11)
    row = next(t for t in status(repo, "p")["tasks"] if t["id"] == "A")
    assert row["state"] == "ready" and row.get("interrupted") is True
    assert status(repo, "p")["interrupted"] == ["A"]
    # the orphaned executor (its own process group) is still ours to stop
    for pid in pids(ctl, "pid"):
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
    (ctl / "fast").write_text("")
    res = repo.proc("run", "p", "-n", "1", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert states(repo, "p") == {"A": "done"} and (repo.path / "A.txt").exists()
    assert_clean(repo)


KILL_AT_THE_DONE_COMMIT = """\
#!{python}
# prepare-commit-msg: runs even with --no-verify. At the commit that would merge the task's
# branch and record `done`, kill the `flowgit run` that is making it (git's parent).
import os, signal, sys
from pathlib import Path
git_dir = Path(os.environ.get("GIT_DIR", ".git"))
if (git_dir / "MERGE_HEAD").exists() and "done" in Path(sys.argv[1]).read_text():
    git_pid = os.getppid()
    runner = int(Path(f"/proc/{{git_pid}}/stat").read_text().rsplit(")", 1)[1].split()[1])
    Path({marker!r}).write_text(str(runner))
    os.kill(runner, signal.SIGKILL)
    sys.exit(1)
"""


@pytest.mark.format1
@pytest.mark.parametrize("then", ["next-command", "user-aborts-first", "user-merges-something-else"])
def test_a_runner_killed_between_merge_and_done_commit_leaves_no_done_without_merge(
        repo: Repo, tmp_path: Path, reaper: list[subprocess.Popen[str]], then: str,
        wall_clock: WallClock) -> None:
    use_executor(repo, tmp_path, 'Path(f"{TASK}.txt").write_text("work\\n")\n', lease=60)
    repo.plan("p", plan_yaml("{id: A, title: a}"))
    head, claims = repo.git("rev-parse", "HEAD"), "1"
    hook = repo.path / ".git" / "hooks" / "prepare-commit-msg"
    marker = tmp_path / "killed"
    hook.write_text(KILL_AT_THE_DONE_COMMIT.format(python=sys.executable, marker=str(marker)))
    hook.chmod(0o755)
    proc = flowgit_proc(repo, "run", "p", "-n", "1")
    reaper.append(proc)
    proc.wait(timeout=60)
    assert marker.exists(), proc.stdout.read() if proc.stdout else ""
    hook.unlink()
    log = repo.path / ".flow/plans/p/events/A.jsonl"
    assert (repo.path / ".git" / "MERGE_HEAD").exists() and '"task.done"' in log.read_text()
    if then != "next-command":
        # the killed run's `git commit` lets go of the index a moment after the run died
        wait_for(lambda: not (repo.path / ".git" / "index.lock").exists(), 10, "git to let go")
        repo.git("merge", "--abort")
        assert '"task.done"' in log.read_text()  # the abort leaves the appended line
    if then == "user-merges-something-else":
        repo.git("checkout", "-q", "-b", "other")
        repo.write("other.txt", "other\n")
        repo.git("add", "other.txt")
        repo.git("commit", "-q", "--no-verify", "-m", "other")
        repo.git("checkout", "-q", "-")
        repo.git("merge", "-q", "--no-ff", "--no-commit", "other")
        theirs = (repo.path / ".git" / "MERGE_HEAD").read_text()
        assert repo.proc("status", "p").returncode == 0  # a reader leaves the user's merge alone
        assert (repo.path / ".git" / "MERGE_HEAD").read_text() == theirs
        assert repo.run("claim", "p", "--worker", "w").code == 1  # a writer waits for it to end
        assert (repo.path / ".git" / "MERGE_HEAD").read_text() == theirs
        repo.git("commit", "-q", "--no-verify", "-m", "merged other")
        head, claims = repo.git("rev-parse", "HEAD"), "0"
    st = status(repo, "p")  # any flowgit command takes back the half-made transition
    assert {t["id"]: t["state"] for t in st["tasks"]}["A"] in ("claimed", "in_progress", "ready")
    assert not (repo.path / ".git" / "MERGE_HEAD").exists()
    assert '"task.done"' not in log.read_text()
    assert repo.git("status", "--porcelain", "--untracked-files=no") == ""
    assert not (repo.path / "A.txt").exists()  # the work is on its branch, not merged
    assert repo.git("rev-list", "--count", f"{head}..HEAD") == claims  # the claim (with its start)
    assert repo.run("doctor").code == 0
    wall_clock.advance(61)  # the dead worker's lease expires; the task runs again, in full
    res = repo.proc("run", "p", "-n", "1", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert states(repo, "p") == {"A": "done"} and (repo.path / "A.txt").read_text() == "work\n"
    assert_clean(repo)


def test_watch_run_dispatches_tasks_as_they_become_ready(
        repo: Repo, tmp_path: Path, reaper: list[subprocess.Popen[str]]) -> None:
    """Including a retry falling due (no file changes then) and dependents of a finished task."""
    ctl = use_executor(repo, tmp_path, """\
        if TASK == "A" and not (CTL / "A.failed").exists():
            (CTL / "A.failed").write_text("")
            sys.exit(1)
        log("start")
        if TASK in ("B", "C"):  # ends early only if both were dispatched together
            wait_until(started("B", "C"), 10)
        time.sleep(0.2)
        Path(f"{TASK}.txt").write_text(TASK + "\\n")
        log("end")
        """)
    # A fails once: nothing else runs meanwhile, so no file changes announce its retry
    repo.plan("p", plan_yaml("{id: A, title: a}", "{id: B, title: b, depends_on: [A]}",
                             "{id: C, title: c, depends_on: [A]}", "{id: D, title: d, depends_on: [B, C]}",
                             extra="retry: {strategy: fixed, base: 0.3, max_attempts: 3}\n"))
    proc = flowgit_proc(repo, "watch", "--run", "2")
    reaper.append(proc)
    t0 = time.monotonic()
    # the default rescan is 30 s: finishing well before that means file events drove dispatch
    wait_for(lambda: set(states(repo, "p").values()) == {"done"}, 15, "watch --run to finish the plan")
    assert time.monotonic() - t0 < 15
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    spans = {t: interval(ctl, t) for t in "ABCD"}
    assert "task.failed" in [e["type"] for e in events(repo, "A")]
    assert overlaps(spans["B"], spans["C"]), spans
    assert min(spans["B"][0], spans["C"][0]) >= spans["A"][1]
    assert spans["D"][0] >= max(spans["B"][1], spans["C"][1])
    assert all((repo.path / f"{t}.txt").exists() for t in "ABCD")
    assert_clean(repo)


def test_two_runs_never_reuse_or_remove_each_others_worktrees(repo: Repo) -> None:
    """Run A keeps its finished task's worktree idle; run B, given that task's retry, makes its
    own worktree at the same path. A must then neither move B's worktree to its next task nor
    remove it when it ends."""
    from flowgit.runner.jobs import Job
    from flowgit.runner.runner import Runner

    repo.plan("p", plan_yaml("{id: A, title: a}", "{id: B, title: b}"))
    run_a = Runner(repo.path, ["p"], 1, None, lambda line: None)
    run_b = Runner(repo.path, ["p"], 1, None, lambda line: None)
    run_b.trees.owner = "another-run"

    def job(run: Runner, task: str) -> Job:
        j = Job("p", task, "w", frozenset(), 1)
        j.branch, j.worktree = f"flow/p/{task}", run.common / "flowgit-worktrees" / "p" / task
        return j

    first = job(run_a, "A")
    run_a.trees.make(first)
    run_a.trees.put_back(first, keep_branch=False)
    theirs = job(run_b, "A")
    run_b.trees.make(theirs)
    (theirs.worktree / "in-progress.txt").write_text("B's executor is writing here\n")
    run_a.trees.make(job(run_a, "B"))  # must make a new one, not take B's
    assert (theirs.worktree / "in-progress.txt").is_file()
    run_a.close()
    assert (theirs.worktree / "in-progress.txt").is_file()
    assert str(theirs.worktree) in repo.git("worktree", "list")


def test_an_executor_that_edits_flow_files_fails_its_task(repo: Repo, tmp_path: Path) -> None:
    """Plans and events are flowgit's: a branch that changes them is never merged unchecked."""
    use_executor(repo, tmp_path, """\
        if TASK == "A":
            Path(".flow/plans/p/events").mkdir(parents=True, exist_ok=True)  # format 2 has none
            with open(".flow/plans/p/events/A.jsonl", "a") as fh:
                fh.write("{}\\n")
        Path(f"{TASK}.txt").write_text(TASK)
        """)
    repo.plan("p", plan_yaml("{id: A, title: a}", "{id: B, title: b}"))
    res = repo.proc("run", "p", "-n", "1", timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    assert states(repo, "p") == {"A": "failed", "B": "done"}
    row = [t for t in status(repo, "p")["tasks"] if t["id"] == "A"][0]
    assert "changed flowgit's own files (.flow/plans/p/events/A.jsonl)" in row["error"]
    assert repo.run("validate").code == 0 and not (repo.path / "A.txt").exists()
    assert repo.git("branch", "--list", "flow/*/*").split() == ["flow/p/A"]


def test_a_merge_that_would_overwrite_the_users_files_stops_the_run(repo: Repo, tmp_path: Path) -> None:
    use_executor(repo, tmp_path, """\
        Path("out.txt").write_text("the task's")
        """)
    repo.plan("p", plan_yaml("{id: A, title: a}"))
    (repo.path / "out.txt").write_text("the user's, untracked")
    res = repo.proc("--json", "run", "p", "-n", "1", timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert "would overwrite files in the main work tree (out.txt)" in out["stopped"]
    assert states(repo, "p") == {"A": "ready"}  # released, not failed: not the task's fault
    assert (repo.path / "out.txt").read_text() == "the user's, untracked"
    (repo.path / "out.txt").unlink()
    repo.ok("run", "p", "-n", "1")
    assert states(repo, "p") == {"A": "done"}


def test_prompt_and_note_files_do_not_pile_up(repo: Repo, tmp_path: Path) -> None:
    use_executor(repo, tmp_path, """\
        Path(f"{TASK}.txt").write_text(TASK)
        """)
    repo.plan("p", plan_yaml("{id: A, title: a}", "{id: B, title: b}"))
    repo.ok("run", "p", "-n", "2")
    runs = repo.path / ".git" / "flowgit-runs"
    assert not [p for p in runs.rglob("*") if p.is_file()], list(runs.rglob("*"))


def test_run_with_no_workers_is_a_usage_error(repo: Repo) -> None:
    repo.plan("p", plan_yaml("{id: A, title: a}"))
    assert repo.run("run", "p", "-n", "0").code == 2


def test_run_says_when_it_waits_for_someone_elses_claim(repo: Repo, tmp_path: Path) -> None:
    use_executor(repo, tmp_path, """\
        Path(f"{TASK}.txt").write_text(TASK)
        """, lease=2)
    repo.plan("p", plan_yaml("{id: A, title: a}"))
    repo.ok("claim", "p/A", "--worker", "someone-else")
    res = repo.proc("run", "p", "-n", "1", timeout=60)  # the lease runs out, then A runs here
    assert res.returncode == 0, res.stdout + res.stderr
    said = res.stdout + res.stderr
    assert said.count("waiting for work claimed by others: p/A (someone-else") == 1, said
    assert states(repo, "p") == {"A": "done"}
