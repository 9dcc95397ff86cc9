"""`flowgit demo [DIR]`: the whole pipeline on the built-in webhook plan, end to end, with real
processes: plan -> review and approval -> `run -n 3` with the demo executor (which writes the
tasks' files) -> checkpoint with a validation run on those files -> approval -> finish."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flowgit import git, resources
from flowgit.cli.app import App
from flowgit.errors import DemoFailed, UsageError
from flowgit.formats import yamlio

WORKERS = 3


def example_plan() -> str:
    return resources.read_text("examples", "webhooks.yaml")


def _prepare(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        empty = not any(directory.iterdir())
    except OSError as exc:
        raise UsageError(f"{directory}: cannot use it for the demo ({exc.strerror}): give an empty "
                         "or new directory") from None
    if not empty:
        raise UsageError(f"{directory} is not empty: give an empty or new directory")
    git.init_repo(directory, "main")
    git.config_set(directory, "user.email", "demo@flowgit.invalid")
    git.config_set(directory, "user.name", "flowgit demo")
    (directory / "README.md").write_text("# webhook service (flowgit demo)\n")
    git.commit_paths(directory, ["README.md"], "initial commit", new_paths=["README.md"])


class Steps:
    def __init__(self, app: App, repo: Path) -> None:
        self.app = app
        self.repo = repo
        self.env = {**os.environ, "FLOWGIT_ACTOR": "demo-lead"}
        # the demo's repository is new and holds only what the demo writes: its steps are a
        # person's here, even when the demo itself was started by an agent
        for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "FLOWGIT_AGENT"):
            self.env.pop(key, None)

    def run(self, *args: str, show: bool = True) -> str:
        self.app.out.info(f"$ flowgit {' '.join(args)}")
        proc = subprocess.run([sys.executable, "-m", "flowgit", "--repo", str(self.repo), *args],
                              capture_output=True, text=True, env=self.env)
        if proc.returncode != 0:
            raise DemoFailed(f"demo step `flowgit {' '.join(args)}` failed (exit {proc.returncode}): "
                            f"{(proc.stderr or proc.stdout).strip()}")
        if show and proc.stdout.strip():
            for line in proc.stdout.rstrip().splitlines():
                self.app.out.info("  " + line)
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json", show=False))


def demo(app: App, directory: Path | None, board_port: int | None = None) -> int:
    start = time.monotonic()
    target = (directory or Path(tempfile.mkdtemp(prefix="flowgit-demo-"))).resolve()
    _prepare(target)
    say = app.out.info
    steps = Steps(app, target)
    say(f"== flowgit demo in {target}")
    steps.run("init")
    config = target / ".flow" / "config.yaml"
    doc = yamlio.rt_load(config.read_text(), "config.yaml")
    doc["approvals"]["required"] = 1
    config.write_text(yamlio.rt_dump(doc))
    git.commit_paths(target, [".flow/config.yaml"], "flow: require one plan approval")
    plan = yamlio.rt_load(example_plan(), "webhooks.yaml")
    plan.insert(list(plan).index("tags") + 1, "executor", "demo")
    files = [f for t in plan["tasks"] for f in t.get("files", [])]
    plan["checkpoints"][0]["validations"] = [
        {"name": "files-written", "run": [sys.executable, "-m", "flowgit.demo_executor", "--check", *files],
         "timeout": 60}]
    source = target.parent / f".{target.name}-webhooks.yaml"
    source.write_text(yamlio.rt_dump(plan))
    try:
        say("== 1. plan: the seeds' webhook delivery plan (6 tasks, checkpoint CP-WH)")
        steps.run("plan", "new", "webhooks", "--from", str(source))
    finally:
        source.unlink(missing_ok=True)
    base = git.head(target)
    say("== 2. review: submit and approve")
    steps.run("submit", "webhooks")
    steps.run("approve", "webhooks", "--reviewer", "alice", "--comment", "looks right")
    say(f"== 3. run: {WORKERS} workers, each task in its own worktree, merged back")
    steps.run("run", "webhooks", "-n", str(WORKERS))
    say("== 4. checkpoint review (changes, validation results, notes)")
    review = steps.json("checkpoint", "webhooks")
    steps.run("checkpoint", "webhooks")
    steps.run("checkpoint", "webhooks", "--approve", "--reviewer", "alice", "--comment", "ship it")
    say("== 5. finish: final validations, CHANGELOG.md, complete")
    steps.run("finish", "webhooks")
    say("== status")
    status = steps.json("status", "webhooks")
    steps.run("status", "webhooks")
    say("== graph")
    steps.run("graph", "webhooks", "--format", "ascii")
    say("== plan diff since the plan was created")
    steps.run("diff", base or "HEAD~1", "HEAD", "--plan", "webhooks")
    commits = git.commit_count(target)
    elapsed = time.monotonic() - start
    ok = status["phase"] == "complete" and all(v["exit_code"] == 0 for v in review["validations"])
    result = {"repo": str(target), "plan": "webhooks", "phase": status["phase"],
              "progress": status["progress"], "counts": status["counts"], "commits": commits,
              "validations": review["validations"], "changes": review["changes"],
              "seconds": round(elapsed, 2), "ok": ok}
    app.out.result(result, f"== done in {elapsed:.1f}s: webhooks is {status['phase']}, "
                           f"{commits} commits in {target}")
    if board_port is not None and ok:
        from flowgit.board.server import serve

        serve(target, "127.0.0.1", board_port,
              lambda server: say(f"== the board on the demo: {server.url} (Ctrl-C stops it)"))
    return 0 if ok else 1
