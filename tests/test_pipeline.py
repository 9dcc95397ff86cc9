"""The pipeline through the CLI: submit, approve, reject, checkpoints with their review,
finish with the CHANGELOG, halt/resume and `advance` (issue 4)."""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from helpers import PY, Repo, of_type, phase, status, transitions

SIMPLE = """\
id: p
title: Simple plan
goal: Ship the simple thing
tasks:
  - id: a
    title: First
  - id: b
    title: Second
    depends_on: [a]
"""

GATED = """\
id: g
title: Gated plan
goal: Build, review, then build on it
tasks:
  - id: a
    title: Store
  - id: b
    title: API
  - id: c
    title: Uses the reviewed work
    depends_on: [CP]
checkpoints:
  - id: CP
    title: Store and API reviewed
    after: [a, b]
"""


# ----- helpers ------------------------------------------------------------------------------------

def set_config(repo: Repo, required: int = 0, auto: bool = False, reset: bool = False,
               validations: list[dict[str, Any]] | None = None) -> None:
    text = (
        "version: 1\n"
        "lease_seconds: 900\n"
        f"approvals: {{required: {required}, auto_approve: {json.dumps(auto)}, "
        f"reset_on_change: {json.dumps(reset)}}}\n"
        f"validations: {json.dumps(validations or [])}\n"
    )
    repo.write(".flow/config.yaml", text)
    repo.git("commit", "-q", "--no-verify", "-m", "config", "--", ".flow/config.yaml")
    repo.ok("trust")  # the validations written by hand run once trusted in this clone


def work(repo: Repo, plan: str, task: str, worker: str = "w1", note: str | None = None) -> None:
    repo.ok("claim", f"{plan}/{task}", "--worker", worker)
    repo.ok("done", f"{plan}/{task}", "--worker", worker, *(["--note", note] if note else []))


def hand_commit(repo: Repo, rel: str, text: str, verify: bool = False) -> None:
    repo.write(rel, text)
    repo.git("add", rel)
    repo.git("commit", "-q", *([] if verify else ["--no-verify"]), "-m", f"edit {rel}")


def approved_to_execute(repo: Repo, plan: str, reviewer: str = "rev") -> None:
    repo.ok("submit", plan)
    repo.ok("approve", plan, "--reviewer", reviewer)
    assert phase(repo, plan) == "execute"


# ----- approvals ----------------------------------------------------------------------------------

def test_claim_refused_while_unapproved(repo: Repo) -> None:
    set_config(repo, required=1)
    repo.plan("p", SIMPLE)
    res = repo.run("claim", "p", "--worker", "w1")
    assert res.code == 1
    assert "submit" in res.err and "approve" in res.err and "Traceback" not in res.err
    res = repo.run("--json", "claim", "p", "--worker", "w1")
    assert res.code == 1 and res.json["error"]["code"] == "needs_approval"
    repo.ok("submit", "p")
    assert phase(repo, "p") == "plan_review"
    res = repo.run("claim", "p", "--worker", "w1")
    assert res.code == 1 and "approve" in res.err
    repo.ok("approve", "p", "--reviewer", "alice")
    assert repo.ok("--json", "claim", "p", "--worker", "w1").json["task"] == "p/a"


def test_approve_before_submit_is_refused(repo: Repo) -> None:
    set_config(repo, required=1)
    repo.plan("p", SIMPLE)
    res = repo.run("approve", "p", "--reviewer", "alice")
    assert res.code == 1 and "submit" in res.err
    repo.ok("submit", "p")
    res = repo.run("submit", "p")
    assert res.code == 1 and "plan_review" in res.err


@pytest.mark.parametrize("bad,needle", ids=["cycle", "dangling"], argvalues=[
    ("""\
id: bad
title: A cycle
tasks:
  - id: x
    title: X
    depends_on: [y]
  - id: y
    title: Y
    depends_on: [x]
""", "cycle"),
    ("""\
id: bad
title: A dangling reference
tasks:
  - id: x
    title: X
    depends_on: [nope]
""", "nope"),
])
def test_submit_validates_the_plan(repo: Repo, bad: str, needle: str) -> None:
    set_config(repo, required=1)
    hand_commit(repo, ".flow/plans/bad/plan.yaml", bad)
    before = repo.commits()
    res = repo.run("submit", "bad")
    assert res.code == 1, res
    assert needle in res.err and "plan.yaml" in res.err and "Traceback" not in res.err
    assert repo.commits() == before
    events = repo.path / ".flow" / "plans" / "bad" / "events" / "_plan.jsonl"
    assert not events.exists() or "plan.phase" not in events.read_text()


def test_approve_records_reviewer_comment_and_hash(repo: Repo) -> None:
    set_config(repo, required=1)
    repo.plan("p", SIMPLE)
    repo.ok("submit", "p")
    res = repo.ok("--json", "approve", "p", "--reviewer", "alice", "--comment", "looks right")
    assert res.json["phase"] == "execute"
    [ev] = of_type(repo, "p", "plan.approved")
    digest = hashlib.sha256((repo.path / ".flow/plans/p/plan.yaml").read_bytes()).hexdigest()
    assert ev["data"] == {"reviewer": "alice", "comment": "looks right", "plan_hash": digest,
                          "via": "cli", "identity": {"name": "Test", "email": "test@example.com"}}
    assert ev["actor"] == "alice"
    msgs = repo.git("log", "--format=%B%x00", "-n", "2").split("\0")
    assert msgs[0].strip().startswith("flow(p): phase execute")
    assert "Flow-Plan: p" in msgs[1] and "Flow-Event: approved" in msgs[1] and "Flow-Actor: alice" in msgs[1]
    [entered] = [e for e in of_type(repo, "p", "plan.phase") if e["data"]["to"] == "execute"]
    assert len(entered["data"]["base_commit"]) == 40


def test_reject_needs_a_comment_and_returns_to_draft(repo: Repo) -> None:
    set_config(repo, required=2)
    repo.plan("p", SIMPLE)
    repo.ok("submit", "p")
    repo.ok("approve", "p", "--reviewer", "alice")
    assert repo.run("reject", "p", "--reviewer", "bob").code == 2
    assert repo.run("reject", "p", "--reviewer", "bob", "--comment", "  ").code == 2
    assert phase(repo, "p") == "plan_review"
    repo.ok("reject", "p", "--reviewer", "bob", "--comment", "split task a")
    assert phase(repo, "p") == "draft"
    [ev] = of_type(repo, "p", "plan.rejected")
    assert ev["data"] == {"reviewer": "bob", "comment": "split task a"}
    assert repo.run("approve", "p", "--reviewer", "carol").code == 1
    assert repo.run("reject", "p", "--reviewer", "bob", "--comment", "again").code == 1
    # a new review starts from zero: alice's old approval does not count
    repo.ok("submit", "p")
    repo.ok("approve", "p", "--reviewer", "bob")
    assert phase(repo, "p") == "plan_review"
    assert status(repo, "p")["approvals"][0]["reviewer"] == "bob"
    repo.ok("approve", "p", "--reviewer", "alice")
    assert phase(repo, "p") == "execute"


def test_two_approvals_need_two_reviewers(repo: Repo) -> None:
    set_config(repo, required=2)
    repo.plan("p", SIMPLE)
    repo.ok("submit", "p")
    repo.ok("approve", "p", "--reviewer", "alice")
    assert phase(repo, "p") == "plan_review"
    repo.ok("approve", "p", "--reviewer", "alice", "--comment", "really")
    assert phase(repo, "p") == "plan_review"
    assert repo.run("claim", "p", "--worker", "w1").code == 1
    res = repo.ok("--json", "approve", "p", "--reviewer", "bob")
    assert res.json["phase"] == "execute" and res.json["approvals"] == 2
    repo.ok("claim", "p", "--worker", "w1")


def test_auto_approve(repo: Repo) -> None:
    set_config(repo, required=1, auto=True)
    repo.plan("p", SIMPLE)
    res = repo.ok("--json", "submit", "p")
    assert res.json["phase"] == "execute"
    [ev] = of_type(repo, "p", "plan.approved")
    assert ev["data"]["reviewer"] == "auto"
    assert ev["data"]["plan_hash"] == hashlib.sha256(
        (repo.path / ".flow/plans/p/plan.yaml").read_bytes()).hexdigest()
    repo.ok("claim", "p", "--worker", "w1")


def test_stale_approval_and_reset_on_change(repo: Repo) -> None:
    set_config(repo, required=1, reset=False)
    repo.plan("p", SIMPLE)
    approved_to_execute(repo, "p")
    assert status(repo, "p")["approval_stale"] is False
    path = ".flow/plans/p/plan.yaml"
    text = (repo.path / path).read_text()
    hand_commit(repo, path, text.replace("title: Second", "title: Second, bigger"))
    st = status(repo, "p")
    assert st["approval_stale"] is True
    assert "stale" in repo.ok("status", "p").out
    before = repo.commits()
    repo.ok("advance")
    assert phase(repo, "p") == "execute" and repo.commits() == before  # reset_on_change off
    set_config(repo, required=1, reset=True)
    res = repo.ok("--json", "advance")
    assert [(m["from"], m["to"]) for m in res.json["moves"]] == [("execute", "plan_review")]
    assert phase(repo, "p") == "plan_review"
    assert repo.run("claim", "p", "--worker", "w1").code == 1
    repo.ok("approve", "p", "--reviewer", "rev")
    st = status(repo, "p")
    assert st["phase"] == "execute" and st["approval_stale"] is False
    # the commit execution began at is kept across the re-review
    bases = {e["data"].get("base_commit") for e in of_type(repo, "p", "plan.phase")} - {None}
    assert len(bases) == 1


# ----- checkpoints --------------------------------------------------------------------------------

def test_checkpoint_gates_its_dependents(repo: Repo) -> None:
    repo.plan("g", GATED)
    work(repo, "g", "a")
    work(repo, "g", "b")
    res = repo.run("claim", "g/c", "--worker", "w1")
    assert res.code == 1 and "CP" in res.err
    assert repo.run("claim", "g", "--worker", "w1").code == 3
    res = repo.run("claim", "g/CP", "--worker", "w1")
    assert res.code == 1 and "checkpoint" in res.err
    repo.ok("advance")
    assert phase(repo, "g") == "checkpoint"
    assert repo.run("claim", "g/c", "--worker", "w1").code == 1
    assert status(repo, "g")["checkpoints"] == [{"id": "CP", "state": "reached"}]
    # a decision needs a reviewer
    assert repo.run("checkpoint", "g", "--approve").code == 2
    res = repo.ok("--json", "checkpoint", "g", "CP", "--approve", "--reviewer", "rev", "--comment", "fine")
    assert res.json["phase"] == "execute"
    [ev] = of_type(repo, "g", "checkpoint.approved")
    data = {k: v for k, v in ev["data"].items() if k != "code"}  # format 2 names the code commit
    assert data == {"checkpoint": "CP", "reviewer": "rev", "comment": "fine", "via": "cli",
                    "identity": {"name": "Test", "email": "test@example.com"}}
    repo.ok("claim", "g/c", "--worker", "w1")
    # approving twice is refused
    assert repo.run("checkpoint", "g", "CP", "--approve", "--reviewer", "rev").code == 1


def test_checkpoint_reached_by_skipped_tasks(repo: Repo) -> None:
    repo.plan("g", GATED)
    work(repo, "g", "a")
    repo.ok("claim", "g/b", "--worker", "w1")
    repo.ok("fail", "g/b", "--worker", "w1", "--error", "not needed", "--skip")
    res = repo.ok("--json", "advance")
    assert [(m["to"], m["checkpoint"]) for m in res.json["moves"]] == [("checkpoint", "CP")]


CHECKED = f"""\
id: v
title: Checked plan
goal: Change files and have them checked
tasks:
  - id: a
    title: Write the module
  - id: b
    title: Trim the readme
  - id: c
    title: After the review
    depends_on: [CP]
checkpoints:
  - id: CP
    after: [a, b]
    validations:
      - {{name: t, run: [{PY}, -c, "print('ok')"]}}
      - {{name: bad, run: [{PY}, -c, "import sys; print('bad'); sys.exit(3)"]}}
"""


def test_checkpoint_review_shows_changes_validations_and_notes(repo: Repo) -> None:
    repo.plan("v", CHECKED)
    repo.ok("claim", "v/a", "--worker", "w1")
    repo.ok("claim", "v/b", "--worker", "w2")
    # the workers' real changes, committed between claim and done
    repo.write("src/mod.py", "one\ntwo\nthree\n")
    repo.write("README.md", "")
    repo.git("add", "src/mod.py", "README.md")
    repo.git("commit", "-q", "-m", "worker changes")
    repo.ok("done", "v/a", "--worker", "w1", "--note", "module written")
    repo.ok("done", "v/b", "--worker", "w2", "--note", "readme trimmed")
    res = repo.ok("--json", "advance")
    [move] = res.json["moves"]
    assert move["to"] == "checkpoint" and move["checkpoint"] == "CP"
    assert move["validations"] == [{"name": "t", "exit_code": 0}, {"name": "bad", "exit_code": 3}]
    vals = of_type(repo, "v", "checkpoint.validation")
    assert [(e["data"]["name"], e["data"]["exit_code"]) for e in vals] == [("t", 0), ("bad", 3)]
    assert vals[1]["data"]["argv"][0] == PY and "bad" in vals[1]["data"]["output_tail"]

    review = repo.ok("--json", "checkpoint", "v").json
    assert review["checkpoint"] == "CP" and review["state"] == "reached"
    assert review["changes"]["files"] == [{"path": "README.md", "added": 0, "removed": 1},
                                          {"path": "src/mod.py", "added": 3, "removed": 0}]
    assert (review["changes"]["added"], review["changes"]["removed"]) == (3, 1)
    by_name = {v["name"]: v for v in review["validations"]}
    assert by_name["t"]["exit_code"] == 0 and by_name["t"]["output_tail"].strip() == "ok"
    assert by_name["bad"]["exit_code"] == 3 and by_name["bad"]["output_tail"].strip() == "bad"
    assert all(isinstance(v["duration"], float) and 0 <= v["duration"] < 10 for v in by_name.values())
    assert {(n["task"], n["note"]) for n in review["notes"]} == {("a", "module written"), ("b", "readme trimmed")}
    text = repo.ok("checkpoint", "v").out
    assert "src/mod.py" in text and "FAILED (exit 3)" in text and "module written" in text


def _request_changes_flow(repo: Repo, args: list[str]) -> None:
    repo.plan("v", CHECKED)
    path = repo.path / ".flow/plans/v/plan.yaml"
    hand_commit(repo, ".flow/plans/v/plan.yaml",
                path.read_text().replace("tasks:\n", "# keep me: written by hand\ntasks:\n", 1))
    work(repo, "v", "a")
    work(repo, "v", "b")
    repo.ok("advance")
    assert phase(repo, "v") == "checkpoint"
    res = repo.ok("--json", "checkpoint", "v", *args, "--reviewer", "rev")
    assert res.json["decision"] == "changes_requested" and res.json["phase"] == "execute"
    text = path.read_text()
    assert "# keep me: written by hand" in text
    st = status(repo, "v")
    new = [t["id"] for t in st["tasks"] if t["id"] not in ("a", "b", "c")]
    assert len(new) == 2
    titles = [line.strip() for line in text.splitlines() if line.strip().startswith("title:")]
    assert "title: A" in titles and "title: B" in titles
    [ev] = of_type(repo, "v", "checkpoint.changes_requested")
    assert ev["data"]["tasks"] == new
    # the checkpoint gates again until both are done
    assert st["checkpoints"] == [{"id": "CP", "state": "pending"}]
    assert st["approval_stale"] is False, "the reviewer's own edit is not a stale approval"
    assert repo.run("claim", "v/c", "--worker", "w1").code == 1
    work(repo, "v", new[0])
    repo.ok("advance")
    assert phase(repo, "v") == "execute"
    work(repo, "v", new[1])
    res = repo.ok("--json", "advance")
    assert [m["to"] for m in res.json["moves"]] == ["checkpoint"]
    assert len(of_type(repo, "v", "checkpoint.validation")) == 4, "validations run again on re-entry"
    review = repo.ok("--json", "checkpoint", "v").json
    assert [v["name"] for v in review["validations"]] == ["t", "bad"]
    repo.ok("checkpoint", "v", "--approve", "--reviewer", "rev", "--force")  # `bad` failed
    assert phase(repo, "v") == "execute"
    work(repo, "v", "c")
    repo.ok("advance")
    assert phase(repo, "v") == "finish"


def test_request_changes_repeated_flag(repo: Repo) -> None:
    _request_changes_flow(repo, ["--request-changes", "A", "--request-changes", "B"])


def test_request_changes_several_texts_after_one_flag(repo: Repo) -> None:
    _request_changes_flow(repo, ["--request-changes", "A", "B"])


def test_request_changes_is_not_a_stale_approval(repo: Repo) -> None:
    set_config(repo, required=1)
    repo.plan("g", GATED)
    approved_to_execute(repo, "g")
    work(repo, "g", "a")
    work(repo, "g", "b")
    repo.ok("advance")
    repo.ok("checkpoint", "g", "--request-changes", "more tests", "--reviewer", "rev")
    assert status(repo, "g")["approval_stale"] is False


def test_request_changes_with_shell_text_is_just_a_title(repo: Repo) -> None:
    repo.plan("g", GATED)
    work(repo, "g", "a")
    work(repo, "g", "b")
    repo.ok("advance")
    repo.ok("checkpoint", "g", "--request-changes", "x'; touch pwned; echo '", "--reviewer", "rev")
    assert not (repo.path / "pwned").exists()
    repo.ok("validate")
    assert "touch pwned" in (repo.path / ".flow/plans/g/plan.yaml").read_text()


# ----- finish -------------------------------------------------------------------------------------

def test_finish_runs_final_validations_then_completes(repo: Repo) -> None:
    set_config(repo, validations=[{"name": "final", "run": [PY, "-c", "import sys; print('nope'); sys.exit(1)"]}])
    repo.plan("p", SIMPLE)
    repo.ok("adr", "new", "Keep it simple", "--plan", "p")
    work(repo, "p", "a", note="did the first")
    work(repo, "p", "b", note="did the second")
    res = repo.run("finish", "p")
    assert res.code == 1 and "final" in res.err and "nope" in res.err
    assert phase(repo, "p") == "execute"  # a failed finish writes nothing (tests/test_small_gaps.py)
    assert not (repo.path / "CHANGELOG.md").exists()
    res = repo.run("--json", "finish", "p")
    assert res.code == 1 and res.json["error"]["code"] == "validation_failed"
    assert res.json["validations"][0]["exit_code"] == 1
    assert of_type(repo, "p", "checkpoint.validation") == []

    set_config(repo, validations=[{"name": "final", "run": [PY, "-c", "print('fine')"]}])
    res = repo.ok("--json", "finish", "p")
    assert res.json["phase"] == "complete" and res.json["changelog"] == "CHANGELOG.md"
    log = (repo.path / "CHANGELOG.md").read_text()
    assert log.startswith("# Changelog\n")
    for needle in ("Simple plan", "Ship the simple thing", "a First", "b Second", "did the first",
                   "did the second", "ADR-0001"):
        assert needle in log, needle
    assert "CHANGELOG.md" in repo.git("show", "--name-only", "--format=", "HEAD")
    assert status(repo, "p")["phase"] == "complete" and status(repo, "p")["progress"] == 100


def test_complete_is_final(repo: Repo) -> None:
    repo.plan("p", SIMPLE)
    work(repo, "p", "a")
    work(repo, "p", "b")
    repo.ok("finish", "p")
    first = (repo.path / "CHANGELOG.md").read_text()
    before = repo.commits()
    assert repo.run("finish", "p").code == 1
    assert repo.run("claim", "p", "--worker", "w1").code == 3  # nothing to claim, as `next`
    assert repo.run("claim", "p/a", "--worker", "w1").code == 1
    assert repo.run("halt", "p", "--reason", "x").code == 1
    assert repo.run("resume", "p").code == 1
    assert repo.run("submit", "p").code == 1
    repo.ok("advance")
    assert repo.commits() == before
    assert (repo.path / "CHANGELOG.md").read_text() == first


def test_finish_before_the_work_is_done_says_why(repo: Repo) -> None:
    repo.plan("g", GATED)
    res = repo.run("finish", "g")
    assert res.code == 1 and "tasks not done: a, b, c" in res.err
    work(repo, "g", "a")
    work(repo, "g", "b")
    res = repo.run("finish", "g")
    assert res.code == 1 and "tasks not done: c" in res.err
    assert phase(repo, "g") == "execute"  # a refused finish writes nothing, not even that move


def test_second_changelog_entry_goes_first(repo: Repo) -> None:
    repo.write("CHANGELOG.md", "# Changelog\n\nolder entry\n")
    repo.git("add", "CHANGELOG.md")
    repo.git("commit", "-q", "-m", "log")
    repo.plan("p", SIMPLE)
    work(repo, "p", "a")
    work(repo, "p", "b")
    repo.ok("finish", "p")
    log = (repo.path / "CHANGELOG.md").read_text()
    assert log.index("Simple plan") < log.index("older entry")


# ----- halt, resume, advance ----------------------------------------------------------------------

def test_halt_and_resume(repo: Repo) -> None:
    set_config(repo, required=1)
    repo.plan("p", SIMPLE)
    repo.ok("submit", "p")
    repo.ok("halt", "p", "--reason", "waiting on legal")
    assert phase(repo, "p") == "halted"
    assert repo.run("approve", "p", "--reviewer", "rev").code == 1
    assert repo.run("halt", "p", "--reason", "again").code == 1
    repo.ok("resume", "p")
    assert phase(repo, "p") == "plan_review"
    repo.ok("approve", "p", "--reviewer", "rev")
    repo.ok("claim", "p/a", "--worker", "w1")
    repo.ok("halt", "p", "--reason", "outage")
    assert repo.run("claim", "p", "--worker", "w2").code == 1
    before = repo.commits()
    repo.ok("advance")
    assert repo.commits() == before
    repo.ok("resume", "p")
    assert phase(repo, "p") == "execute"
    repo.ok("done", "p/a", "--worker", "w1")
    assert repo.run("resume", "p").code == 1


def test_stalled_plan_halts_itself(repo: Repo) -> None:
    repo.plan("p", SIMPLE)
    repo.ok("claim", "p/a", "--worker", "w1")
    repo.ok("fail", "p/a", "--worker", "w1", "--error", "broken for good")
    res = repo.ok("--json", "advance")
    [move] = res.json["moves"]
    assert move["to"] == "halted" and "a" in move["reason"]
    assert phase(repo, "p") == "halted"
    # resuming while nothing could run would only halt again: refused, saying why
    before = repo.commits()
    res = repo.run("--json", "resume", "p")
    assert res.code == 1 and res.json["error"]["code"] == "stalled"
    assert "a failed" in res.json["error"]["message"] and "plan.yaml" in res.json["error"]["message"]
    assert repo.commits() == before and phase(repo, "p") == "halted"
    # once the plan no longer needs the failed work, it resumes
    path = ".flow/plans/p/plan.yaml"
    text = (repo.path / path).read_text()
    hand_commit(repo, path, text.replace("    depends_on: [a]\n", ""))
    repo.ok("resume", "p")
    assert phase(repo, "p") == "execute"
    repo.ok("claim", "p/b", "--worker", "w1")


def test_advance_twice_does_nothing_the_second_time(repo: Repo) -> None:
    repo.plan("g", GATED)
    work(repo, "g", "a")
    work(repo, "g", "b")
    first = repo.ok("--json", "advance").json["moves"]
    assert [m["to"] for m in first] == ["checkpoint"]
    head = repo.git("rev-parse", transitions(repo))
    res = repo.ok("--json", "advance")
    assert res.json == {"moves": []}
    assert repo.git("rev-parse", transitions(repo)) == head
    assert repo.ok("advance").out.strip() == "nothing to do"
    assert repo.git("rev-parse", transitions(repo)) == head
    msg = repo.git("log", "--format=%B", "-n", "1", transitions(repo))
    assert msg.startswith("flow(g): phase checkpoint") and "Flow-Plan: g" in msg


# ----- validations are argv lists with a timeout --------------------------------------------------

def test_validation_timeout(repo: Repo) -> None:
    repo.plan("t", f"""\
id: t
title: Slow check
tasks:
  - id: a
    title: A
checkpoints:
  - id: CP
    after: [a]
    validations:
      - {{name: slow, run: [sleep, "5"], timeout: 1}}
      - {{name: orphan, run: [{PY}, -c, "import subprocess, time; subprocess.Popen(['sleep', '5']); time.sleep(5)"], timeout: 1}}
      - {{name: chatty, run: [{PY}, -c, "print('x' * 100000); print('THE END')"]}}
""")
    work(repo, "t", "a")
    start = time.monotonic()
    res = repo.ok("--json", "advance")
    assert time.monotonic() - start < 6, "a timed-out validation (and its children) is killed"
    assert res.json["moves"][0]["validations"] == [
        {"name": "slow", "exit_code": 124}, {"name": "orphan", "exit_code": 124}, {"name": "chatty", "exit_code": 0}]
    slow, orphan, chatty = (e["data"] for e in of_type(repo, "t", "checkpoint.validation"))
    assert slow["exit_code"] == 124 and slow["duration"] < 3
    assert "timed out" in slow["output_tail"] and orphan["duration"] < 3
    assert len(chatty["output_tail"]) <= 2000 and chatty["output_tail"].rstrip().endswith("THE END")


def test_validation_text_is_never_run_by_a_shell(repo: Repo) -> None:
    victim = repo.path / "x"
    victim.mkdir()
    (victim / "keep").write_text("precious\n")
    repo.plan("s", """\
id: s
title: "Hostile; rm -rf x"
tasks:
  - id: a
    title: "A; rm -rf x"
checkpoints:
  - id: CP
    after: [a]
    validations:
      - {name: str, run: "echo hello; rm -rf x; touch pwned"}
      - {name: list, run: [echo, "$(touch pwned2)", "; rm -rf x"]}
      - {name: missing, run: ["no-such-binary-; rm -rf x"]}
""")
    work(repo, "s", "a", note="$(touch pwned3); rm -rf x")
    res = repo.ok("--json", "advance")
    codes = {v["name"]: v["exit_code"] for v in res.json["moves"][0]["validations"]}
    assert codes["str"] == 0 and codes["list"] == 0 and codes["missing"] != 0
    tails = {e["data"]["name"]: e["data"]["output_tail"] for e in of_type(repo, "s", "checkpoint.validation")}
    assert tails["str"].strip() == "hello; rm -rf x; touch pwned"
    assert tails["list"].strip() == "$(touch pwned2) ; rm -rf x"
    repo.ok("checkpoint", "s", "--approve", "--reviewer", "rev", "--force")  # `missing` failed
    repo.ok("finish", "s")
    assert (victim / "keep").read_text() == "precious\n"
    for marker in ("pwned", "pwned2", "pwned3"):
        assert not (repo.path / marker).exists(), marker
    assert "rm -rf x" in (repo.path / "CHANGELOG.md").read_text()


def test_config_validations_run_at_a_checkpoint_without_its_own(repo: Repo) -> None:
    set_config(repo, validations=[{"name": "cfg", "run": [PY, "-c", "print('from config')"]}])
    repo.plan("g", GATED)
    work(repo, "g", "a")
    work(repo, "g", "b")
    res = repo.ok("--json", "advance")
    assert res.json["moves"][0]["validations"] == [{"name": "cfg", "exit_code": 0}]


def test_advance_goes_on_past_a_broken_plan(repo: Repo) -> None:
    hand_commit(repo, ".flow/plans/bad/plan.yaml",
                "id: bad\ntitle: Cycle\ntasks:\n  - {id: x, title: X, depends_on: [y]}\n"
                "  - {id: y, title: Y, depends_on: [x]}\n")
    repo.plan("g", GATED)
    work(repo, "g", "a")
    work(repo, "g", "b")
    res = repo.run("--json", "advance")
    assert res.code == 1
    assert "bad/plan.yaml" in res.json["error"]["message"] and "cycle" in res.json["error"]["message"]
    assert [(m["plan"], m["to"]) for m in res.json["moves"]] == [("g", "checkpoint")]
    assert phase(repo, "g") == "checkpoint"
    res = repo.run("advance")
    assert res.code == 1 and "bad/plan.yaml" in res.err and "Traceback" not in res.err
    assert repo.run("advance", "bad").code == 1


def test_two_checkpoints_reached_together_each_get_their_validations(repo: Repo) -> None:
    repo.plan("two", f"""\
id: two
title: Two gates at once
tasks:
  - id: a
    title: A
  - id: b
    title: B
checkpoints:
  - id: CP1
    after: [a]
    validations: [{{name: v1, run: [{PY}, -c, "print('one')"]}}]
  - id: CP2
    after: [b]
    validations: [{{name: v2, run: [{PY}, -c, "print('two')"]}}]
""")
    work(repo, "two", "a")
    work(repo, "two", "b")
    assert [m["checkpoint"] for m in repo.ok("--json", "advance").json["moves"]] == ["CP1"]
    res = repo.ok("--json", "checkpoint", "two", "CP1", "--approve", "--reviewer", "rev")
    assert [(m["to"], m["checkpoint"]) for m in res.json["moves"]] == [("checkpoint", "CP2")]
    review = repo.ok("--json", "checkpoint", "two").json
    assert review["checkpoint"] == "CP2"
    assert [(v["name"], v["exit_code"], v["output_tail"].strip()) for v in review["validations"]] == [("v2", 0, "two")]
    before = repo.commits()
    repo.ok("advance")
    assert repo.commits() == before
    res = repo.ok("--json", "checkpoint", "two", "--approve", "--reviewer", "rev")
    assert [m["to"] for m in res.json["moves"]] == ["execute", "finish"]


def test_finish_never_commits_the_users_own_changelog_edits(repo: Repo) -> None:
    repo.write("CHANGELOG.md", "# Changelog\n\nolder entry\n")
    repo.git("add", "CHANGELOG.md")
    repo.git("commit", "-q", "-m", "log")
    repo.plan("p", SIMPLE)
    work(repo, "p", "a")
    work(repo, "p", "b")
    with (repo.path / "CHANGELOG.md").open("a") as fh:
        fh.write("half-written line\n")
    res = repo.run("finish", "p")
    assert res.code == 1 and "CHANGELOG.md" in res.err and "commit or stash" in res.err
    assert phase(repo, "p") == "execute"
    assert "half-written" not in repo.git("show", "HEAD:CHANGELOG.md")
    repo.git("commit", "-q", "-am", "my notes")
    repo.ok("finish", "p")
    log = repo.git("show", "HEAD:CHANGELOG.md")
    assert "half-written line" in log and "Simple plan" in log
    assert repo.git("status", "--porcelain") == ""


# ----- found by black-box review ------------------------------------------------------------------

ONE = "id: m\ntitle: M\ngoal: g\ntasks:\n  - id: A\n    title: a\n"


def test_work_added_in_finish_takes_the_plan_back_to_execute(repo: Repo) -> None:
    repo.plan("m", ONE)
    work(repo, "m", "A")
    repo.ok("advance", "m")
    assert phase(repo, "m") == "finish"
    repo.ok("task", "add", "m", "LATE", "--title", "late")
    assert phase(repo, "m") == "execute"
    repo.ok("claim", "m/LATE", "--worker", "w")
    n = repo.commits()
    res = repo.run("finish", "m")
    assert res.code == 1 and "tasks not done: LATE" in res.err and repo.commits() == n
    repo.ok("done", "m/LATE", "--worker", "w")
    repo.ok("finish", "m")
    res = repo.run("task", "add", "m", "AFTER", "--title", "too late")
    assert res.code == 1 and "complete, which is final" in res.err


def test_rules_send_a_finishing_plan_with_open_work_back() -> None:
    from flowgit.core.fold import evaluate
    from flowgit.core.model import Plan
    from flowgit.core.rules import Facts, decide

    plan = Plan.from_dict({"id": "m", "title": "M", "tasks": [{"id": "A", "title": "a"}]}, "m")
    state = evaluate(plan, {}, (), 0.0)
    finishing = type(state)(**{**state.__dict__, "phase": "finish"})
    assert [m.to for m in decide(finishing, Facts("h", 0, False, False))] == ["execute"]


def test_a_refused_finish_writes_nothing(repo: Repo) -> None:
    repo.plan("g", GATED)
    for t in ("a", "b"):
        work(repo, "g", t)
    n = repo.commits()
    res = repo.run("finish", "g")
    assert res.code == 1 and "cannot finish yet" in res.err
    assert repo.commits() == n


def test_automatic_moves_wait_for_the_users_plan_edits_to_be_committed(repo: Repo) -> None:
    repo.plan("p", SIMPLE)
    work(repo, "p", "a")
    plan = repo.path / ".flow/plans/p/plan.yaml"
    plan.write_text(plan.read_text().replace("  - id: b\n    title: Second\n    depends_on: [a]\n", ""))
    n = repo.commits()
    res = repo.run("advance", "p")
    assert res.code == 1 and "uncommitted changes" in res.err and repo.commits() == n
    assert repo.run("finish", "p").code == 1 and repo.commits() == n
    repo.git("commit", "-qam", "drop b", "--no-verify")
    repo.ok("advance", "p")
    assert phase(repo, "p") == "finish"


def test_a_stale_approval_stops_claims_and_next(repo: Repo) -> None:
    set_config(repo, required=2, reset=True)
    repo.plan("p", SIMPLE)
    assert repo.run("next", "p").code == 3
    repo.ok("submit", "p")
    res = repo.run("next", "p")
    assert res.code == 3 and "needs 2 approval(s), has 0" in res.err
    res = repo.run("claim", "p", "--worker", "w")
    assert res.code == 1 and "flowgit submit" not in res.err
    repo.ok("approve", "p", "--reviewer", "alice")
    n = repo.commits()
    assert "already approved" in repo.ok("approve", "p", "--reviewer", "alice").out
    assert repo.commits() == n and phase(repo, "p") == "plan_review"
    repo.ok("approve", "p", "--reviewer", "bob")
    repo.ok("next", "p")
    plan = repo.path / ".flow/plans/p/plan.yaml"
    plan.write_text(plan.read_text().replace("title: Second", "title: Second, changed"))
    repo.git("commit", "-qam", "edit after approval", "--no-verify")
    res = repo.run("claim", "p/a", "--worker", "w")
    assert res.code == 1 and "changed after it was approved" in res.err
    assert repo.run("next", "p").code == 3


def test_no_stale_approval_without_a_review(repo: Repo) -> None:
    repo.plan("p", SIMPLE)
    work(repo, "p", "a")
    repo.ok("task", "add", "p", "c", "--title", "Third")
    assert status(repo, "p")["approval_stale"] is False


@pytest.mark.parametrize("lease", ["1e12", "inf", "nan", "0", "-5", "abc"])
def test_a_lease_out_of_range_is_a_usage_error(repo: Repo, lease: str) -> None:
    repo.plan("p", SIMPLE)
    res = repo.run("claim", "p", "--worker", "w", "--lease", lease)
    assert res.code == 2 and "--lease" in res.err


def test_huge_retry_delays_are_refused_by_validate(repo: Repo) -> None:
    repo.plan("p", SIMPLE)
    plan = repo.path / ".flow/plans/p/plan.yaml"
    plan.write_text(plan.read_text().replace("tasks:", "retry: {strategy: fixed, base: 1e300}\ntasks:"))
    res = repo.run("validate")
    assert res.code == 1 and "retry.base" in res.err
    repo.ok("claim", "p", "--worker", "w")
    res = repo.run("fail", "p/a", "--worker", "w", "--retry", "--error", "boom")
    assert res.code == 1 and "retry.base" in res.err and "Traceback" not in res.err


def test_refusals_say_what_would_help(repo: Repo) -> None:
    repo.plan("p", SIMPLE)
    work(repo, "p", "a")
    res = repo.run("done", "p/a", "--worker", "w1")
    assert res.code == 1 and "claim it first" not in res.err and "nothing left to do" in res.err
    res = repo.run("done", "p/b", "--worker", "w1")
    assert res.code == 1 and "claim it first" in res.err


def test_claim_without_a_plan_passes_over_plans_waiting_for_review(repo: Repo) -> None:
    set_config(repo, required=1)
    repo.plan("p", SIMPLE)
    repo.plan("q", SIMPLE.replace("id: p", "id: q"))
    repo.ok("submit", "q")
    repo.ok("approve", "q", "--reviewer", "alice")
    assert repo.ok("next").out.startswith("q/a")
    assert repo.ok("--json", "claim", "--worker", "w").json["task"] == "q/a"


def test_run_stops_at_a_stale_approval(repo: Repo) -> None:
    set_config(repo, required=1, reset=True)
    repo.plan("p", SIMPLE)
    repo.ok("submit", "p")
    repo.ok("approve", "p", "--reviewer", "alice")
    plan = repo.path / ".flow/plans/p/plan.yaml"
    plan.write_text(plan.read_text().replace("title: Second", "title: Second, changed"))
    repo.git("commit", "-qam", "edit after approval", "--no-verify")
    res = repo.run("run", "p", "-n", "1")
    assert res.code == 1 and "changed after it was approved" in res.err
    assert status(repo, "p")["counts"]["done"] == 0


@pytest.mark.parametrize("setting,ok", [
    ("approvals: {required: 1.0}", True),
    ("watch: {debounce_ms: 200.0}", True),
    ("lease_seconds: 60", True),
    ("watch: {rescan_seconds: 0}", False),
    ("lease_seconds: 0", False),
    ("approvals: {required: 1.5}", False),
])
def test_config_numbers_agree_with_the_schema(repo: Repo, setting: str, ok: bool) -> None:
    repo.plan("p", SIMPLE)
    repo.write(".flow/config.yaml", f"version: 1\n{setting}\n")
    assert (repo.run("validate").code == 0) is ok
    assert (repo.run("status", "p").code == 0) is ok
