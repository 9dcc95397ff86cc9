"""Issue 13, "Only people approve": every approval records how it was made and who made it;
an agent's approval is refused unless config names it; an approval that arrives by merge
moves phases but never makes a command runnable; `approvals.via: merge` and
`approvals.signed: true` give approvals git vouches for."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import Repo, events

PY = sys.executable
AGENT = {"FLOWGIT_AGENT": "run p/T"}  # what `flowgit run` puts in its executors' environment


def touch(marks: Path, name: str) -> list[str]:
    return [PY, "-c", f"import pathlib; p = pathlib.Path({str(marks / name)!r}); "
                      "p.parent.mkdir(parents=True, exist_ok=True); p.write_text('ran')"]


def ran(marks: Path) -> set[str]:
    return {p.name for p in marks.iterdir()} if marks.is_dir() else set()


def set_approvals(repo: Repo, approvals: str) -> None:
    cfg = repo.path / ".flow" / "config.yaml"
    lines = cfg.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("approvals:"))
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    lines[start:end] = [f"approvals: {approvals}"]
    cfg.write_text("\n".join(lines) + "\n")
    repo.git("commit", "-q", "--no-verify", "-m", "approvals", "--", ".flow/config.yaml")


def plan_events(repo: Repo, plan: str) -> list[dict[str, Any]]:
    return events(repo, plan)


def phase(repo: Repo, plan: str) -> str:
    return str(repo.ok("--json", "status", plan).json["phase"])


PLAN = "id: p\ntitle: P\ntasks:\n  - {id: A, title: a}\n"


def in_review(repo: Repo, text: str = PLAN) -> None:
    repo.plan("p", text)
    repo.ok("submit", "p")


# ----- how and who --------------------------------------------------------------------------------

def test_every_approval_records_how_it_was_made_and_the_git_identity(repo: Repo) -> None:
    set_approvals(repo, "{required: 1}")
    repo.git("config", "user.name", "Alice Liddell")
    repo.git("config", "user.email", "alice@example.com")
    in_review(repo, PLAN + "checkpoints:\n  - {id: CP, after: [A]}\n  - {id: CP2, after: [CP]}\n")
    out = repo.ok("--json", "approve", "p", "--reviewer", "someone-else").json
    assert out["via"] == "cli" and out["identity"] == {"name": "Alice Liddell", "email": "alice@example.com"}
    [ev] = [e for e in plan_events(repo, "p") if e["type"] == "plan.approved"]
    assert ev["data"]["reviewer"] == "someone-else"  # the free text, and beside it who really did
    assert ev["data"]["via"] == "cli"
    assert ev["data"]["identity"] == {"name": "Alice Liddell", "email": "alice@example.com"}
    repo.ok("claim", "p/A", "--worker", "w")
    repo.ok("done", "p/A", "--worker", "w")
    repo.ok("advance", "p")
    repo.ok("checkpoint", "p", "CP", "--approve", "--reviewer", "bob")
    [cp] = [e for e in plan_events(repo, "p") if e["type"] == "checkpoint.approved"]
    assert cp["data"]["via"] == "cli" and cp["data"]["identity"]["email"] == "alice@example.com"


# ----- only people approve ------------------------------------------------------------------------

def test_an_agent_cannot_approve_unless_config_names_it(repo: Repo) -> None:
    set_approvals(repo, "{required: 1}")
    in_review(repo)
    agent_env = {**os.environ, **AGENT}
    res = repo.proc("approve", "p", "--reviewer", "bot", env=agent_env)
    assert res.returncode == 1, res.stderr
    assert "a process that flowgit started" in res.stderr and "only people approve" in res.stderr
    assert "approvals.agents" in res.stderr and "Traceback" not in res.stderr
    assert phase(repo, "p") == "plan_review"
    assert not [e for e in plan_events(repo, "p") if e["type"] == "plan.approved"]
    set_approvals(repo, "{required: 1, agents: [bot]}")
    assert repo.proc("approve", "p", "--reviewer", "mallory", env=agent_env).returncode == 1
    res = repo.proc("--json", "approve", "p", "--reviewer", "bot", env=agent_env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["via"] == "run" and out["trusted"] == [] and out["phase"] == "execute"


def test_an_approval_through_mcp_is_refused(repo: Repo) -> None:
    pytest.importorskip("mcp")
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    set_approvals(repo, "{required: 1}")
    in_review(repo)
    params = StdioServerParameters(command=PY, args=["-m", "flowgit", "--repo", str(repo.path), "mcp"],
                                   env=dict(os.environ), cwd=str(repo.path))
    said: list[str] = []

    async def main() -> None:
        with anyio.fail_after(60):
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    res = await session.call_tool("approve", {"plan": "p", "reviewer": "claude"})
                    assert res.is_error
                    said.append(res.content[0].text)  # type: ignore[union-attr]

    anyio.run(main)
    assert "through flowgit mcp" in said[0] and "only people approve" in said[0]
    assert phase(repo, "p") == "plan_review"


# ----- what a merge brings ------------------------------------------------------------------------

def forge_branch(repo: Repo, marks: Path) -> str:
    """A teammate's branch that adds a command to the plan and, with it, an approval line whose
    plan hash covers the new plan (committed past the hook, as anyone can)."""
    repo.git("checkout", "-q", "-b", "feature")
    path = repo.path / ".flow/plans/p/plan.yaml"
    text = path.read_text() + f"  - {{id: B, title: b, run: {json.dumps(touch(marks, 'EVIL'))}}}\n"
    path.write_text(text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    from dataclasses import asdict

    from flowgit.core.events import make_event

    forged = make_event("plan.approved", "p", None, "maintainer", 99,
                        {"reviewer": "maintainer", "comment": "lgtm", "plan_hash": digest}, 1_764_583_200.0)
    with open(repo.path / ".flow/plans/p/events/_plan.jsonl", "a") as f:
        f.write(json.dumps(asdict(forged)) + "\n")
    repo.git("add", ".flow")
    repo.git("commit", "-q", "--no-verify", "-m", "add B (approved)")
    repo.git("checkout", "-q", "main")
    return digest


@pytest.mark.format1
def test_a_forged_approval_merged_in_moves_the_phase_but_runs_nothing(repo: Repo, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    set_approvals(repo, "{required: 1}")
    in_review(repo)
    forge_branch(repo, marks)
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    # the approval line is data like any other: the phase rules count it
    repo.ok("advance", "p")
    assert phase(repo, "p") == "execute"
    # but it trusted nothing: the command it covers does not run
    res = repo.run("run", "p", "-n", "1")
    assert res.code == 1 and "tasks[B].run" in res.err and "is not trusted in this clone" in res.err
    assert ran(marks) == set()
    assert [c["status"] for c in repo.ok("--json", "trust", "--list").json["commands"]] == ["new"]


@pytest.mark.format1
def test_with_signed_approvals_a_forged_line_does_not_count(repo: Repo, tmp_path: Path) -> None:
    set_approvals(repo, "{required: 1, signed: true}")
    in_review(repo)
    forge_branch(repo, tmp_path / "marks")
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    repo.ok("advance", "p")
    st = repo.ok("--json", "status", "p").json
    assert st["phase"] == "plan_review" and st["approvals"] == []
    assert repo.run("claim", "p", "--worker", "w").code in (1, 3)


# ----- approvals.via: merge --------------------------------------------------------------------------

def test_via_merge_a_plan_is_approved_when_it_reaches_the_branch_through_a_merge(repo: Repo) -> None:
    set_approvals(repo, "{via: merge}")
    repo.git("checkout", "-q", "-b", "plan-p")
    in_review(repo)
    # on the branch, before any merge: not approved, and `approve` cannot stand in for the review
    res = repo.run("approve", "p", "--reviewer", "alice")
    assert res.code == 1 and "approvals.via is merge" in res.err
    assert repo.run("claim", "p", "--worker", "w").code in (1, 3)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge pull request #1: plan p", "plan-p")
    merge = repo.git("rev-parse", "HEAD")
    repo.ok("advance", "p")
    st = repo.ok("--json", "status", "p").json
    assert st["phase"] == "execute"
    assert [a["reviewer"] for a in st["approvals"]] == [f"merge {merge[:12]}"]
    repo.ok("claim", "p", "--worker", "w")


def test_via_merge_a_plan_committed_straight_to_the_branch_is_not_approved(repo: Repo) -> None:
    set_approvals(repo, "{via: merge}")
    in_review(repo)  # committed on main itself: no merge, no review
    repo.ok("advance", "p")
    assert phase(repo, "p") == "plan_review"
    res = repo.run("claim", "p", "--worker", "w")
    assert res.code in (1, 3) and "approv" in (res.err + res.out)
    # a fast-forward is no merge either
    repo.git("checkout", "-q", "-b", "ff")
    repo.ok("task", "add", "p", "B", "--title", "b")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--ff-only", "ff")
    repo.ok("advance", "p")
    assert phase(repo, "p") == "plan_review"


def test_approval_config_is_checked(repo: Repo) -> None:
    repo.plan("p", PLAN)
    for good in ("{via: merge, branch: main}", "{required: 2, signed: true, agents: [bot, ci-agent]}"):
        set_approvals(repo, good)
        repo.ok("validate")
    for approvals, said in (("{via: merge, required: 2}", "the merge is the one approval"),
                            ("{via: pigeon}", "approvals.via"),
                            ("{signed: true, auto_approve: true}", "auto_approve cannot give one"),
                            ("{agents: bot}", "approvals.agents")):
        set_approvals(repo, approvals)
        for args in (["validate"], ["status", "p"], ["claim", "p", "--worker", "w"]):
            res = repo.run(*args)
            assert res.code == 1 and said in res.err and "Traceback" not in res.err, (approvals, args, res)


# ----- approvals.signed: true -------------------------------------------------------------------------

def ssh_signing(repo: Repo, home: Path) -> Path:
    """An ssh key that signs this repository's commits, listed in an allowed-signers file
    outside the repository (the user's, as gpg.ssh.allowedSignersFile)."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed: ssh commit signing cannot be tested here")
    key = home / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(key)], check=True)
    allowed = home / "allowed_signers"
    allowed.write_text(f'test@example.com namespaces="git" {(home / "id_ed25519.pub").read_text().strip()}\n')
    for k, v in (("gpg.format", "ssh"), ("user.signingkey", str(key)), ("commit.gpgsign", "true"),
                 ("gpg.ssh.allowedSignersFile", str(allowed))):
        repo.git("config", k, v)
    return allowed


def test_signed_approvals_count_only_in_commits_git_verifies(repo: Repo, tmp_path: Path) -> None:
    ssh_signing(repo, tmp_path)
    set_approvals(repo, "{required: 1, signed: true}")
    in_review(repo)
    out = repo.ok("--json", "approve", "p", "--reviewer", "alice").json
    assert out["phase"] == "execute"
    repo.git("verify-commit", out["commit"])  # flowgit's own commit went through git: signed
    assert [a["reviewer"] for a in repo.ok("--json", "status", "p").json["approvals"]] == ["alice"]


def test_an_unsigned_approval_does_not_count_and_says_why(repo: Repo, tmp_path: Path) -> None:
    ssh_signing(repo, tmp_path)
    repo.git("config", "commit.gpgsign", "false")
    set_approvals(repo, "{required: 1, signed: true}")
    in_review(repo)
    res = repo.ok("--json", "approve", "p", "--reviewer", "alice")
    assert res.json["phase"] == "plan_review"
    assert "does not count" in res.err and "verify-commit" in res.err


def test_signed_approvals_need_keys_outside_the_repository(repo: Repo, tmp_path: Path) -> None:
    allowed = ssh_signing(repo, tmp_path)
    inside = repo.path / "allowed_signers"
    inside.write_text(allowed.read_text())
    repo.git("config", "gpg.ssh.allowedSignersFile", str(inside))
    set_approvals(repo, "{required: 1, signed: true}")
    in_review(repo)
    assert repo.ok("--json", "approve", "p", "--reviewer", "alice").json["phase"] == "plan_review"
    problems = repo.run("--json", "doctor").json["problems"]
    assert [p for p in problems if p["kind"] == "signers_inside"]
