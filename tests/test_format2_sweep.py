"""Format 2 (the state branch, ADR 0011) under the tests written for format 1: the bugs that
running the suite with FLOWGIT_TEST_FORMAT=2 found, each pinned here in format 2 whatever the
fixture's default, and a CI-cheap slice of whole files run in format 2."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Repo, init_repo, ROOT


@pytest.fixture
def repo2(tmp_path: Path) -> Repo:
    r = init_repo(tmp_path / "repo", "2")
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


# ----- a slice of the suite, run in format 2 -----------------------------------------------------

# The whole suite runs in format 1 by default (the `repo` fixture); FLOWGIT_TEST_FORMAT=2 runs
# it in format 2. This slice keeps the shared paths honest in CI at the cost of one nested run
# (~15 s): phases and checkpoints, retries, the lock shared by work trees, `run` merging in
# parallel, `diff` of two revisions, the board's timeline.
SLICE = [
    "tests/test_pipeline.py::test_checkpoint_gates_its_dependents",
    "tests/test_pipeline.py::test_advance_twice_does_nothing_the_second_time",
    "tests/test_lifecycle.py::test_retry_exponential_then_failed_and_dependents_blocked",
    "tests/test_lifecycle.py::test_worktree_shares_the_lock",
    "tests/test_run.py::test_parallel_run_merges_every_task_and_cleans_up",
    "tests/test_review.py::test_diff_json_between_two_revisions",
    "tests/test_board.py::test_timeline_filters_by_task_and_actor",
]


def test_a_slice_of_the_suite_holds_in_format_2(tmp_path: Path) -> None:
    env = {**os.environ, "FLOWGIT_TEST_FORMAT": "2"}
    # its own basetemp: pytest prunes old ones, which would remove this run's directories
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           f"--basetemp={tmp_path / 'inner'}", *SLICE],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "SKIPPED" not in proc.stdout, proc.stdout[-2000:]  # each of them ran, in format 2
