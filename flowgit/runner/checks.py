"""What a run does around an executor: prepare its fresh worktree (`worktree.copy`, then the
trusted `worktree.setup`), commit what it left (through the project's hooks when asked), and
check the work before it lands (a task's or plan's trusted `verify:`, and an exit 0 that
changed nothing a task with `files` should change). A check that fails says what it saw; the
failure's event keeps it, and the next attempt's prompt shows it (runner/prompt.py)."""
from __future__ import annotations

import os
import shutil
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from flowgit import git, proc
from flowgit.core.model import Config, Plan, Task
from flowgit.runner.executors import verify_command
from flowgit.runner.jobs import Job
from flowgit.runner.landing import commit_work
from flowgit.runner.logfiles import open_log

OUTPUT_TAIL = 4000  # characters of a check's output kept in the failure's event
DIFF_STAT_LINES = 40


@dataclass
class CheckFailed:
    """A check that stopped the work from landing: the task fails and retries."""
    error: str  # one line
    details: dict[str, str] = field(default_factory=dict)  # check, check_output, diff_stat


def tail(text: str, limit: int = OUTPUT_TAIL) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def copy_files(root: Path, worktree: Path, paths: tuple[str, ...]) -> list[str]:
    """Copy `worktree.copy` files from the main work tree (a `.env`, local config); a missing
    one is skipped, a symlink never followed (it could point anywhere). Returns those copied."""
    copied = []
    for rel in paths:
        src, dst = root / rel, worktree / rel
        try:
            st = os.lstat(src)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or any(p.is_symlink() for p in list(src.parents)[:rel.count("/")]):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        shutil.copy2(src, dst, follow_symlinks=False)
        copied.append(rel)
    return copied


def run_logged(argv: tuple[str, ...], worktree: Path, env: Mapping[str, str], timeout: float,
               root: Path, log: Path, title: str, stop: threading.Event,
               tick: Callable[[], None] | None = None, tick_every: float = 60.0) -> proc.Result:
    """Run a check in the worktree and append its output to the task's log."""
    result = proc.run(argv, cwd=worktree, env=env, timeout=timeout, stop=stop, tick=tick,
                      tick_every=tick_every)
    with open_log(root, log) as out:
        out.write(f"\n$ {title}: {' '.join(argv)}\n".encode())
        out.write(result.output)
        if result.error:
            out.write(f"flowgit: {result.error}\n".encode())
    return result


def outcome(result: proc.Result, timeout: float) -> str:
    if result.timed_out:
        return f"timed out after {timeout:g}s"
    return result.error or f"exit {result.returncode}"


def commit_with_hooks(root: Path, job: Job, env: Mapping[str, str], timeout: float,
                      stop: threading.Event) -> CheckFailed | None:
    """`run --verify`: commit the executor's work through the project's own git hooks (the
    pre-commit framework's, say); a hook that refuses fails the attempt with its output."""
    wt = job.worktree
    entries = git.status_entries(wt)
    job.tree_clean = not any(e.startswith("!! ") for e in entries)
    if not any(not e.startswith("!! ") for e in entries):
        return None
    git.stage_all(wt)
    argv = git.commit_argv(f"flow({job.plan}/{job.task}): work")
    result = run_logged(argv, wt, env, timeout, root, job.log, "commit through the hooks", stop)
    if result.ok:
        return None
    git.unstage_all(wt)
    return CheckFailed(f"the project's git hooks refused the commit ({outcome(result, timeout)})",
                       {"check": "git commit (the project's hooks)",
                        "check_output": tail(result.text())})


def diff_stat(root: Path, job: Job) -> str:
    """The attempt's changes, one line a file (`path | +added -removed`)."""
    try:
        stats = git.diff_numstat(root, job.base, job.branch)
    except Exception:  # noqa: BLE001 - a stat is a courtesy to the next attempt, never a failure
        return ""
    lines = [f"{s.path} | +{s.added} -{s.removed}" for s in stats[:DIFF_STAT_LINES]]
    if len(stats) > DIFF_STAT_LINES:
        lines.append(f"... and {len(stats) - DIFF_STAT_LINES} more files")
    return "\n".join(lines)


def prepare(root: Path, job: Job, config: Config, env: Mapping[str, str], stop: threading.Event,
            beat: Callable[[], None], rel: str) -> CheckFailed | None:
    """The fresh worktree made ready: `worktree.copy` files, then `worktree.setup`."""
    copy_files(root, job.worktree, config.run.copy)
    if not config.run.setup:
        return None
    result = run_logged(config.run.setup, job.worktree, env, config.run.setup_timeout, root,
                        job.log, "worktree.setup", stop, beat, config.lease_seconds / 3)
    if result.ok:
        return None
    shown = " ".join(config.run.setup)
    return CheckFailed(f"worktree.setup ({shown[:60]}) {outcome(result, config.run.setup_timeout)}; "
                       f"log: {rel}",
                       {"check": f"worktree.setup: {shown}", "check_output": tail(result.text())})


def check_work(root: Path, dirs: git.RepoDirs, job: Job, plan: Plan, task: Task, config: Config,
               env: Mapping[str, str], hooks: bool, stop: threading.Event,
               beat: Callable[[], None], rel: str) -> CheckFailed | None:
    """Commit what the executor left, then check it before it lands: that it changed
    something when the task lists files, and the task's (or plan's) `verify:`."""
    if hooks:
        failed = commit_with_hooks(root, job, env, config.run.verify_timeout, stop)
        if failed is not None:
            return failed
    else:
        commit_work(job)
    if git.read_ref(dirs, f"refs/heads/{job.branch}") == job.base and task.files:
        more = ", ..." if len(task.files) > 3 else ""
        return CheckFailed(f"the executor exited 0 but changed nothing, and the task lists "
                           f"files ({', '.join(task.files[:3])}{more})",
                           {"check": "the attempt changed no file"})
    check = verify_command(plan, task)
    if check is None:
        return None
    result = run_logged(check.argv, job.worktree, env, config.run.verify_timeout, root, job.log,
                        "verify", stop, beat, config.lease_seconds / 3)
    if result.ok:
        return None
    return CheckFailed(f"verify ({check.shown(60)}) {outcome(result, config.run.verify_timeout)}; "
                       f"log: {rel}",
                       {"check": f"{check.where}: {check.shown()}", "check_output": tail(result.text()),
                        "diff_stat": diff_stat(root, job)})
