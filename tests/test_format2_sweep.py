"""Format 2 (the state branch, ADR 0011) under the tests written for format 1: the bugs that
running the suite with FLOWGIT_TEST_FORMAT=2 found, each pinned here in format 2 whatever the
fixture's default, and a CI-cheap slice of whole files run in format 2."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import Repo, make_git_repo


@pytest.fixture
def repo2(tmp_path: Path) -> Repo:
    r = Repo(make_git_repo(tmp_path / "repo"))
    r.ok("init", "--format", "2")
    return r


def set_approvals(repo: Repo, approvals: str) -> None:
    cfg = repo.path / ".flow" / "config.yaml"
    lines = cfg.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("approvals:"))
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    lines[start:end] = [f"approvals: {approvals}"]
    cfg.write_text("\n".join(lines) + "\n")


def ssh_signing(repo: Repo, home: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed: ssh commit signing cannot be tested here")
    key = home / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(key)], check=True)
    allowed = home / "allowed_signers"
    allowed.write_text(f'test@example.com namespaces="git" {(home / "id_ed25519.pub").read_text().strip()}\n')
    for k, v in (("gpg.format", "ssh"), ("user.signingkey", str(key)), ("commit.gpgsign", "true"),
                 ("gpg.ssh.allowedSignersFile", str(allowed))):
        repo.git("config", k, v)


PLAN = "id: p\ntitle: P\ntasks:\n  - {id: A, title: a}\n"


# ----- approvals.signed: state commits are written with commit-tree, which never signs by itself

def test_a_signed_approval_counts_in_format_2(repo2: Repo, tmp_path: Path) -> None:
    ssh_signing(repo2, tmp_path)
    set_approvals(repo2, "{required: 1, signed: true}")
    repo2.plan("p", PLAN)
    repo2.ok("submit", "p")
    out = repo2.ok("--json", "approve", "p", "--reviewer", "alice").json
    assert out["phase"] == "execute"
    assert repo2.git("log", "-1", "--format=%s", out["commit"]) == "flow(p): approved"
    repo2.git("merge-base", "--is-ancestor", out["commit"], "flow/state")  # a state commit
    repo2.git("verify-commit", out["commit"])
    assert [a["reviewer"] for a in repo2.ok("--json", "status", "p").json["approvals"]] == ["alice"]
    repo2.ok("claim", "p", "--worker", "w")


def test_an_unsigned_approval_does_not_count_in_format_2(repo2: Repo, tmp_path: Path) -> None:
    ssh_signing(repo2, tmp_path)
    repo2.git("config", "commit.gpgsign", "false")
    set_approvals(repo2, "{required: 1, signed: true}")
    repo2.plan("p", PLAN)
    repo2.ok("submit", "p")
    res = repo2.ok("--json", "approve", "p", "--reviewer", "alice")
    assert res.json["phase"] == "plan_review"
    assert "does not count" in res.err
    assert repo2.run("claim", "p", "--worker", "w").code in (1, 3)


# ----- the board's timeline names each event's commit: on the state branch, not HEAD ---------------

def test_the_board_timeline_names_the_state_commit_of_each_event(repo2: Repo) -> None:
    from helpers.board import PLAN as WEB, Board

    repo2.plan("web", WEB)
    repo2.ok("submit", "web")
    claimed = repo2.ok("--json", "claim", "web/T-1", "--worker", "alice").json["commit"]
    board = Board(repo2)
    try:
        html = board.get("/plan/web/timeline")
    finally:
        board.stop()
    assert repo2.git("merge-base", "--is-ancestor", claimed, "flow/state") == ""
    assert f'<td class="sha"><code title="{claimed}">' in html
