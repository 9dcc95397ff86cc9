"""The prompt `flowgit run` gives a task is recorded at claim time (its blob in the
`task.started` event) and the board's task page shows it after the prompt file is gone."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from helpers.board import Board
from helpers import Repo, log_text

COPY = ("import os, shutil, sys; "
        "shutil.copy(os.environ['FLOWGIT_PROMPT_FILE'], os.path.join(sys.argv[1], os.environ['FLOWGIT_TASK']))")


def test_run_records_the_prompt_and_the_task_page_shows_it(repo: Repo, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    cfg = repo.path / ".flow" / "config.yaml"
    argv = [sys.executable, "-c", COPY, str(seen)]
    cfg.write_text(cfg.read_text().replace("executors: {}\n", "")
                   .replace("default_executor: shell", "default_executor: copy")
                   + f"executors:\n  copy:\n    argv: {json.dumps(argv)}\n")
    repo.git("commit", "-q", "-am", "test: an executor that keeps its prompt")
    repo.ok("trust")  # an executor written by hand runs once trusted in this clone
    repo.plan("p", "id: p\ntitle: Prompted\ngoal: Check <the> prompt\ntasks:\n"
                   "  - id: T-1\n    title: \"Write <b>docs</b>\"\n    acceptance: [\"mentions & escapes\"]\n")
    repo.ok("submit", "p")
    repo.ok("run", "p", "-n", "1")
    given = (seen / "T-1").read_text()
    assert "Write <b>docs</b>" in given
    events = [json.loads(line) for line in log_text(repo, "p", "T-1").splitlines()]
    started = [e for e in events if e["type"] == "task.started"]
    blob = started[-1]["data"]["prompt"]
    assert re.fullmatch(r"[0-9a-f]{40}", blob)
    assert repo.git("cat-file", "blob", blob) == given.rstrip("\n") or \
        repo.git("cat-file", "blob", blob) + "\n" == given
    assert not list((repo.path / ".git" / "flowgit-runs").rglob("*.prompt.md"))  # the file is gone
    b = Board(repo)
    try:
        html = b.get("/plan/p/task/T-1")
    finally:
        b.stop()
    prompt = html[html.index('<pre class="prompt">'):]
    assert "Write &lt;b&gt;docs&lt;/b&gt;" in prompt and "<b>docs" not in prompt
    assert "mentions &amp; escapes" in prompt
