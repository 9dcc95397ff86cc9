"""One agent, run in rounds until what it wrote is valid: the loop under `flowgit explore` and
`flowgit plan draft`. Each round gets a prompt (with the last round's errors), the paths to
write to, and runs as argv in the main work tree; `check` reads what it wrote. Nothing is written
to .flow/ here: the caller commits the valid result through the write door."""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from flowgit import proc
from flowgit.core.model import Executor
from flowgit.errors import AgentFailed, Interrupted
from flowgit.runner.executors import agent_invocation
from flowgit.store.repo import FlowRepo

MAX_ERRORS = 20  # the errors handed to the next round (and recorded)
TAIL = 2000  # characters of the agent's output shown when it fails


@dataclass(frozen=True)
class Round:
    number: int
    exit_code: int
    errors: tuple[str, ...]
    duration: float

    @property
    def ok(self) -> bool:
        return not self.errors

    def data(self, executor: str) -> dict[str, Any]:
        return {"executor": executor, "round": self.number, "ok": self.ok, "exit_code": self.exit_code,
                "errors": list(self.errors), "duration": round(self.duration, 3)}


@dataclass
class AgentJob:
    """What one agent is asked for: `files` are the placeholders it writes (name -> path)."""
    repo: FlowRepo
    executor: Executor
    plan_id: str
    what: str  # "explore" or "plan draft": in messages and FLOWGIT_AGENT
    workdir: Path
    files: dict[str, Path] = field(default_factory=dict)

    def values(self, prompt: str, prompt_file: Path, round_no: int) -> dict[str, str]:
        root = str(self.repo.root)
        return {"plan": self.plan_id, "task": "", "title": self.plan_id, "worktree": root,
                "repo": root, "prompt": prompt, "prompt_file": str(prompt_file), "branch": "",
                "attempt": str(round_no), "python": sys.executable,
                **{k: str(v) for k, v in self.files.items()}}

    def env(self, prompt_file: Path, round_no: int) -> dict[str, str]:
        env = {**os.environ, **self.executor.env,
               "FLOWGIT_PLAN": self.plan_id, "FLOWGIT_REPO": str(self.repo.root),
               "FLOWGIT_WORKTREE": str(self.repo.root), "FLOWGIT_PROMPT_FILE": str(prompt_file),
               "FLOWGIT_ATTEMPT": str(round_no), "FLOWGIT_PYTHON": sys.executable,
               # an agent is not a person: it may not approve or trust (docs/SECURITY.md)
               "FLOWGIT_AGENT": f"{self.what} {self.plan_id}"}
        from flowgit.core.scripts import ENV_FOR

        for name, path in self.files.items():
            env[ENV_FOR[name]] = str(path)
        env.pop("GIT_INDEX_FILE", None)
        return env


def workdir_for(repo: FlowRepo, what: str, plan_id: str) -> Path:
    """A fresh directory inside the work tree (agents such as Claude Code write only below the
    directory they run in), in the gitignored .flow/.cache/."""
    base = repo.safe(".cache", "agents")
    base.mkdir(parents=True, exist_ok=True)
    repo.refuse_symlink(base)
    return Path(tempfile.mkdtemp(prefix=f"{what.replace(' ', '-')}-{plan_id}-", dir=base))


def run_rounds(job: AgentJob, rounds: int, prompt_for: Callable[[Sequence[str], int], str],
               check: Callable[[], list[str]], say: Callable[[str], None]) -> list[Round]:
    """Run the agent until `check()` finds nothing wrong, at most `rounds` times. Returns every
    round (the last one valid), or raises AgentFailed with the last errors."""
    done: list[Round] = []
    errors: list[str] = []
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        for n in range(1, rounds + 1):
            prompt = prompt_for(errors, n)
            prompt_file = job.workdir / f"prompt-{n}.md"
            prompt_file.write_text(prompt, encoding="utf-8")
            argv, stdin = agent_invocation(job.repo.config, job.executor, job.values(prompt, prompt_file, n),
                                           f"{job.what} {job.plan_id}")
            with open(job.workdir / f"output-{n}.log", "wb") as out:
                result = proc.run(argv, cwd=job.repo.root, env=job.env(prompt_file, n), input=stdin,
                                  timeout=job.executor.timeout, output=out, stop=stop)
            if result.stopped or stop.is_set():
                raise Interrupted(f"{job.what} {job.plan_id}: stopped in round {n}; nothing written")
            if result.error is not None:  # could not start at all: another round will not either
                raise AgentFailed(f"{job.what} {job.plan_id}: {result.error} (executor {job.executor.name}): "
                                  "install it or choose another with --executor")
            errors = check()
            if result.timed_out:
                errors.insert(0, f"the agent ran out of time ({job.executor.timeout:g} s)")
            elif result.returncode != 0 and errors:
                tail = (job.workdir / f"output-{n}.log").read_bytes()[-TAIL:].decode("utf-8", "replace")
                errors.insert(0, f"the agent exited {result.returncode}: {tail.strip()[-300:]}")
            errors = errors[:MAX_ERRORS]
            # the log keeps them without the scratch directory, which is gone after the command
            done.append(Round(n, result.returncode, tuple(e.replace(f"{job.workdir}{os.sep}", "")
                                                          for e in errors), result.duration))
            say(f"round {n}: " + ("valid" if not errors else f"{len(errors)} error(s): {errors[0]}"))
            if not errors:
                return done
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    kept = job.workdir.relative_to(job.repo.root).as_posix()
    raise AgentFailed(f"{job.what} {job.plan_id}: still invalid after {rounds} round(s): {errors[0]}"
                      + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
                      + f"; nothing written (what it wrote is kept in {kept}/; more rounds: --rounds N)")


def read_written(path: Path, what: str) -> tuple[str | None, str | None]:
    """(text, error): what the agent wrote to `path`, or why there is nothing to read."""
    try:
        if path.is_symlink():
            return None, f"{path}: is a symlink: write a regular file"
        data = path.read_bytes()
    except FileNotFoundError:
        return None, f"{path}: nothing written: write {what} to this file"
    except OSError as exc:
        return None, f"{path}: cannot read: {exc.strerror}"
    if not data.strip():
        return None, f"{path}: the file is empty: write {what} to it"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, f"{path}: not UTF-8 text"


def cleanup(workdir: Path) -> None:
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)

