"""`flowgit demo [DIR]`: the built-in webhook plan worked by concurrent workers, end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from flowgit import git
from flowgit.app import App
from flowgit.errors import UsageError

WORKERS = 3


def example_plan() -> bytes:
    return (resources.files("flowgit") / "examples" / "webhooks.yaml").read_bytes()


def flowgit_argv(repo: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "flowgit", "--repo", str(repo), *args]


def _worker_script(name: str) -> str:
    """A simulated worker: claim, pretend to work, done; until nothing is left."""
    return f"""
import json, subprocess, sys, time
repo = sys.argv[1]
def fg(*a):
    return subprocess.run([sys.executable, "-m", "flowgit", "--repo", repo, *a, "--json"],
                          capture_output=True, text=True)
idle = 0
while True:
    p = fg("claim", "webhooks", "--worker", {name!r})
    if p.returncode == 3:
        s = json.loads(fg("status", "webhooks").stdout)
        if s["counts"]["ready"] + s["counts"]["pending"] + s["counts"]["claimed"] + s["counts"]["in_progress"] == 0 or idle > 200:
            break
        idle += 1
        time.sleep(0.05)
        continue
    if p.returncode != 0:
        print({name!r} + " error: " + p.stdout.strip() + p.stderr.strip(), flush=True)
        time.sleep(0.05)
        continue
    task = json.loads(p.stdout)["task"]
    print({name!r} + " claimed " + task, flush=True)
    time.sleep(0.2)
    d = fg("done", task, "--worker", {name!r}, "--note", "implemented by " + {name!r})
    print({name!r} + (" done    " if d.returncode == 0 else " FAILED  ") + task, flush=True)
"""


def _prepare(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise UsageError(f"{directory} is not empty: give an empty or new directory")
    env = {"GIT_AUTHOR_NAME": "flowgit demo", "GIT_AUTHOR_EMAIL": "demo@flowgit.invalid",
           "GIT_COMMITTER_NAME": "flowgit demo", "GIT_COMMITTER_EMAIL": "demo@flowgit.invalid"}
    os.environ.update(env)
    git.run(["init", "-q", "-b", "main"], directory)
    git.run(["config", "user.email", "demo@flowgit.invalid"], directory)
    git.run(["config", "user.name", "flowgit demo"], directory)
    (directory / "README.md").write_text("# webhook service (flowgit demo)\n")
    git.run(["add", "README.md"], directory)
    git.run(["commit", "-q", "-m", "initial commit"], directory)


def _run(app: App, repo: Path, *args: str) -> str:
    proc = subprocess.run(flowgit_argv(repo, *args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"demo step `flowgit {' '.join(args)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def demo(app: App, directory: Path | None) -> int:
    target = directory or Path(tempfile.mkdtemp(prefix="flowgit-demo-"))
    target = target.resolve()
    _prepare(target)
    say = app.out.info
    start = time.monotonic()
    say(f"== flowgit demo in {target}")
    _run(app, target, "init")
    plan_file = target / "webhooks.yaml"
    plan_file.write_bytes(example_plan())
    _run(app, target, "plan", "new", "webhooks", "--from", str(plan_file))
    plan_file.unlink()
    say("== plan webhooks created (6 tasks, checkpoint CP-WH); 3 workers start")
    procs = [subprocess.Popen([sys.executable, "-c", _worker_script(f"worker-{i + 1}"), str(target)],
                              stdout=subprocess.PIPE, text=True) for i in range(WORKERS)]
    for proc in procs:
        assert proc.stdout is not None
        for line in proc.stdout:
            say("   " + line.rstrip())
        proc.wait()
    status = json.loads(_run(app, target, "status", "webhooks", "--json"))
    say("== status")
    say(_run(app, target, "status", "webhooks").rstrip())
    say("== graph")
    say(_run(app, target, "graph", "webhooks", "--format", "ascii").rstrip())
    commits = int(git.out(["rev-list", "--count", "HEAD"], target))
    elapsed = time.monotonic() - start
    result = {"repo": str(target), "plan": "webhooks", "phase": status["phase"],
              "progress": status["progress"], "counts": status["counts"], "commits": commits,
              "seconds": round(elapsed, 2)}
    app.out.result(result, f"== done in {elapsed:.1f}s: {status['progress']}% of webhooks, {commits} commits in {target}")
    return 0 if status["progress"] == 100 else 1
