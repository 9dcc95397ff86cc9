"""Large prompts reach the planner and explorer agents as they reach a task's agent: through
standard input for a `stdin: prompt` template (and a built-in agent past the threshold), and a
`{prompt}` too large for one argument is refused with the way out, before anything runs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from helpers import Repo
from helpers.agents import FAKE_AGENT, agent_log, use_fake_agent


def _stdin_agent(repo: Repo) -> None:
    path = repo.path / ".flow" / "config.yaml"
    argv = json.dumps([sys.executable, str(FAKE_AGENT), "-p", "-"])
    text = path.read_text().replace("executors:\n", f"executors:\n  fakein:\n    argv: {argv}\n    stdin: prompt\n"
                                    "    timeout: 120\n", 1)
    path.write_text(text)
    repo.git("commit", "-qam", "config: the fake agent reading stdin")
    repo.ok("trust")


def test_a_stdin_template_gets_the_planners_prompt_on_standard_input(repo: Repo, tmp_path: Path,
                                                                      monkeypatch) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "agent.jsonl"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    use_fake_agent(repo)
    _stdin_agent(repo)
    goal = "Greet people. " + "Context. " * 20000  # a prompt of about 180 KB
    repo.ok("plan", "draft", "greet", "--goal", goal, "--executor", "fakein", "--json")
    assert (repo.path / ".flow" / "plans" / "greet" / "plan.yaml").exists()
    assert any(e.get("role") == "plan" for e in agent_log(log))


def test_a_prompt_too_large_for_an_argument_is_refused_before_anything_runs(repo: Repo, tmp_path: Path,
                                                                            monkeypatch) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "agent.jsonl"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    use_fake_agent(repo)
    head = repo.git("rev-parse", "HEAD")
    res = repo.run("plan", "draft", "greet", "--goal", "x" * 140_000, "--executor", "fake")
    assert res.code != 0 and "more than one argument can carry" in res.err and "Traceback" not in res.err
    assert "stdin: prompt" in res.err
    assert repo.git("rev-parse", "HEAD") == head and not agent_log(log)
