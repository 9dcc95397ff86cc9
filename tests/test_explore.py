"""`flowgit explore` and `flowgit spec answer`: an explorer agent (a fake `claude -p`, a real
process) writes questions and an ADR draft, flowgit checks them and loops on errors; a person
answers the questions."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Repo, of_type, state_branch
from helpers.agents import agent_log, use_fake_agent

from flowgit.formats import yamlio


@pytest.fixture
def agent(repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_fake_agent(repo)
    log = tmp_path / "agent.log"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    return log


def test_explore_writes_open_questions_and_a_proposed_adr(repo: Repo, agent: Path) -> None:
    before = repo.commits()
    res = repo.ok("explore", "greet", "--goal", "Greet people", "--executor", "fake", "--json")
    out = res.json
    assert out["questions"] == ["Q1", "Q2"] and out["requirements"] == ["R1"]
    assert out["adr"] == "ADR-0001" and out["created"] is True and out["rounds"] == 1
    assert repo.commits() == before + (2 if state_branch(repo) else 1)  # format 2: the branch and the state
    assert repo.git("log", "-1", "--format=%s") == "flow(greet): explored"
    spec = yamlio.loads((repo.path / out["spec_path"]).read_text(), "spec")
    assert [q["id"] for q in spec["questions"]] == ["Q1", "Q2"]
    assert all("answer" not in q for q in spec["questions"])
    adr = yamlio.loads((repo.path / out["adr_path"]).read_text(), "adr")
    assert adr["status"] == "proposed" and adr["plans"] == ["greet"] and adr["id"] == "ADR-0001"
    assert len(adr["options"]) == 2 and all(o["pros"] and o["cons"] for o in adr["options"])
    assert adr["decision"].startswith("Recommended")
    plan = yamlio.loads((repo.path / ".flow/plans/greet/plan.yaml").read_text(), "plan")
    assert plan["goal"] == "Greet people" and plan["adrs"] == ["ADR-0001"] and plan["tasks"] == []
    rounds = of_type(repo, "greet", "plan.explored")
    assert [r["data"]["ok"] for r in rounds] == [True]
    assert rounds[0]["data"]["executor"] == "fake" and rounds[0]["data"]["adr"] == "ADR-0001"
    repo.ok("validate")
    assert repo.git("status", "--porcelain") == ""  # the scratch files are gone or ignored
    # the agent ran as an agent, with the repository named, and could call flowgit
    (call,) = agent_log(agent)
    assert call["agent"] == "explore greet" and call["repo"] == str(repo.path)
    assert call["plan_list_exit"] == 0


def test_errors_go_back_to_the_explorer_until_its_files_are_valid(
        repo: Repo, agent: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_EXPLORE_BAD", "1")
    out = repo.ok("explore", "greet", "--goal", "Greet", "--executor", "fake", "--json").json
    assert out["rounds"] == 2
    calls = agent_log(agent)
    assert [c["wrote"] for c in calls] == ["invalid", "valid"]
    assert calls[1]["had_errors"] is True
    rounds = of_type(repo, "greet", "plan.explored")
    assert [r["data"]["ok"] for r in rounds] == [False, True]
    assert any("options: give at least two options" in e for e in rounds[0]["data"]["errors"])
    assert not any("/.cache/agents/" in e for e in rounds[0]["data"]["errors"])


def test_an_explorer_that_never_gets_it_right_writes_nothing(
        repo: Repo, agent: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_EXPLORE_BAD", "5")
    before = repo.commits()
    res = repo.run("explore", "greet", "--goal", "Greet", "--executor", "fake", "--rounds", "2")
    assert res.code == 1
    assert "still invalid after 2 round(s)" in res.err and "options" in res.err
    assert "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1
    assert repo.commits() == before
    assert not (repo.path / ".flow/plans/greet").exists()
    assert len(agent_log(agent)) == 2


def test_explore_on_an_existing_plan_adds_to_its_spec_and_adrs(repo: Repo, agent: Path) -> None:
    repo.ok("plan", "new", "greet", "--goal", "Old goal")
    repo.ok("adr", "new", "Earlier decision", "--plan", "greet")
    out = repo.ok("explore", "greet", "--goal", "New goal", "--executor", "fake", "--json").json
    assert out["created"] is False and out["adr"] == "ADR-0002"
    plan = yamlio.loads((repo.path / ".flow/plans/greet/plan.yaml").read_text(), "plan")
    assert plan["goal"] == "New goal" and plan["adrs"] == ["ADR-0001", "ADR-0002"]
    # again: the explorer reuses Q1, which is taken now; the errors say so, and nothing is written
    res = repo.run("explore", "greet", "--executor", "fake", "--rounds", "1")
    assert res.code == 1 and "'Q1' is taken already" in res.err


def test_a_person_answers_the_questions(repo: Repo, agent: Path) -> None:
    repo.ok("explore", "greet", "--goal", "Greet", "--executor", "fake")
    spec_path = repo.path / ".flow/plans/greet/spec.yaml"
    out = repo.ok("spec", "answer", "greet", "Q1", "a file", "--json").json
    assert out == {"plan": "greet", "question": "Q1", "answer": "a file", "replaced": None,
                   "open": ["Q2"], "commit": out["commit"]}
    spec = yamlio.loads(spec_path.read_text(), "spec")
    assert spec["questions"][0]["answer"] == "a file"
    assert repo.git("log", "-1", "--format=%s") == "flow(greet): Q1 answered"
    res = repo.ok("spec", "answer", "greet", "Q1", "stdout after all")
    assert "previous answer is replaced" in res.out and "still open: Q2" in res.out
    repo.ok("validate")


@pytest.mark.parametrize("args, code, words", [
    (["spec", "answer", "greet", "Q9", "x"], 1, "has no question 'Q9' (questions: Q1, Q2)"),
    (["spec", "answer", "greet", "Q1", "  "], 2, "the answer is empty"),
    (["spec", "answer", "nope", "Q1", "x"], 1, "unknown plan 'nope'"),
    (["spec", "answer", "greet", "../x", "x"], 2, "question id"),
])
def test_bad_answers_are_refused_with_nothing_written(repo: Repo, agent: Path, args: list[str],
                                                      code: int, words: str) -> None:
    repo.ok("explore", "greet", "--goal", "Greet", "--executor", "fake")
    before = repo.commits()
    res = repo.run(*args)
    assert res.code == code and words in res.err, res.err
    assert "Traceback" not in res.err
    assert repo.commits() == before


def test_answering_a_plan_without_a_spec(repo: Repo) -> None:
    repo.ok("plan", "new", "bare", "--goal", "g")
    res = repo.run("spec", "answer", "bare", "Q1", "x")
    assert res.code == 1 and "has no spec" in res.err and "flowgit explore bare" in res.err


@pytest.mark.parametrize("args, code, words", [
    (["explore", "greet", "--executor", "fake"], 2, "give its goal with --goal"),
    (["explore", "greet", "--goal", "g", "--executor", "nope"], 1, "unknown executor 'nope'"),
    (["explore", "greet", "--goal", "g", "--executor", "shell"], 2, "runs a task's run: command"),
    (["explore", "../x", "--goal", "g", "--executor", "fake"], 2, "plan id"),
    (["explore", "greet", "--goal", " ", "--executor", "fake"], 2, "--goal is empty"),
    (["explore", "greet", "--goal", "g", "--executor", "fake", "--rounds", "0"], 2, "--rounds"),
    (["explore", "greet", "--goal", "g"], 2, "--executor"),
])
def test_bad_explore_input_runs_no_agent(repo: Repo, agent: Path, args: list[str], code: int,
                                         words: str) -> None:
    before = repo.commits()
    res = repo.run(*args)
    assert res.code == code and words in res.err, res.err
    assert "Traceback" not in res.err
    assert repo.commits() == before and agent_log(agent) == []


def test_explore_needs_a_plan_in_draft(repo: Repo, agent: Path) -> None:
    repo.ok("plan", "new", "greet", "--goal", "g")
    repo.ok("task", "add", "greet", "T1", "--title", "t")
    repo.ok("submit", "greet")  # no approval needed: straight to execute
    res = repo.run("explore", "greet", "--executor", "fake")
    assert res.code == 1 and "is in execute" in res.err and agent_log(agent) == []


def test_an_untrusted_executor_is_not_run(repo: Repo, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_agent(repo)
    log = tmp_path / "agent.log"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    config = repo.path / ".flow/config.yaml"
    config.write_text(config.read_text().replace("timeout: 120", "env: {EXTRA: '1'}\n    timeout: 120"))
    repo.git("commit", "-qam", "someone else changed the executor")
    res = repo.run("explore", "greet", "--goal", "g", "--executor", "fake")
    assert res.code == 1 and "executors.fake" in res.err and "flowgit trust" in res.err
    assert agent_log(log) == []
    repo.ok("explore", "greet", "--goal", "g", "--executor", "fake", "--trust")
    assert len(agent_log(log)) == 1


def test_an_agent_that_cannot_start_fails_at_once(repo: Repo) -> None:
    config = repo.path / ".flow/config.yaml"
    config.write_text(config.read_text().replace(
        "executors: {}", "executors:\n  missing:\n    argv: [no-such-agent-cli, -p, '{prompt}']"))
    repo.git("commit", "-qam", "config")
    repo.ok("trust")
    res = repo.run("explore", "greet", "--goal", "g", "--executor", "missing")
    assert res.code == 1 and "cannot run 'no-such-agent-cli'" in res.err
    assert "choose another with --executor" in res.err


def test_an_agent_that_exits_non_zero_having_written_nothing(repo: Repo, tmp_path: Path) -> None:
    script = tmp_path / "no_credit.py"
    script.write_text("import sys\nprint('no credit')\nsys.exit(3)\n")
    config = repo.path / ".flow/config.yaml"
    config.write_text(config.read_text().replace(
        "executors: {}", f"executors:\n  broke:\n    argv: ['{{python}}', '{script}']"))
    repo.git("commit", "-qam", "config")
    repo.ok("trust")
    res = repo.run("explore", "greet", "--goal", "g", "--executor", "broke", "--rounds", "1")
    assert res.code == 1 and "the agent exited 3: no credit" in res.err
