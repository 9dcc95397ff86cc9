"""A repository whose config defines `fake`, an executor that runs tests/helpers/fake_agent.py the
way `claude -p {prompt}` runs Claude Code, trusted by the person who wrote it; and reading back
what the fake agent did."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from helpers.repo import ROOT, Repo

FAKE_AGENT = ROOT / "tests" / "helpers" / "fake_agent.py"


def use_fake_agent(repo: Repo, approvals: int = 0, extra_argv: tuple[str, ...] = ()) -> None:
    """Add the `fake` executor (and the approvals wanted) to the config, commit it, trust it."""
    path = repo.path / ".flow" / "config.yaml"
    argv = json.dumps([sys.executable, str(FAKE_AGENT), "-p", "{prompt}", *extra_argv])
    text = path.read_text().replace("executors: {}", f"executors:\n  fake:\n    argv: {argv}\n    timeout: 120")
    text = text.replace("required: 0 ", f"required: {approvals} ")
    path.write_text(text)
    repo.git("commit", "-qam", "config: the fake agent")
    repo.ok("trust")


def agent_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
