"""flowgit never follows a symlink out of .flow/ and never writes through one."""
from __future__ import annotations

import os
from pathlib import Path

from helpers import Repo

PLAN = "id: p\ntitle: P\ntasks:\n  - id: T1\n    title: one\n  - id: T2\n    title: two\n"


def test_a_symlinked_event_log_is_refused_and_its_target_untouched(repo: Repo, tmp_path: Path) -> None:
    repo.plan("p", PLAN)
    outside = tmp_path / "outside.jsonl"
    outside.write_text("precious\n")
    log = repo.path / ".flow/plans/p/events/T1.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, log)
    head = repo.git("rev-parse", "HEAD")
    res = repo.proc("claim", "p/T1", "--worker", "w")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "symlink" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert outside.read_text() == "precious\n"
    assert repo.git("rev-parse", "HEAD") == head
    val = repo.proc("validate")
    assert val.returncode == 1 and "symlink" in val.stderr


def test_a_symlinked_plan_directory_is_not_read(repo: Repo, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "events").mkdir(parents=True)
    (elsewhere / "plan.yaml").write_text(PLAN.replace("id: p", "id: evil"))
    os.symlink(elsewhere, repo.path / ".flow/plans/evil")
    listed = repo.run("plan", "list", "--json")
    assert listed.code == 0 and listed.json["plans"] == []
    res = repo.proc("status", "evil")
    assert res.returncode == 1 and "symlink" in res.stderr
    assert "Traceback" not in res.stderr
    res = repo.proc("claim", "evil", "--worker", "w")
    assert res.returncode in (1, 2) and "Traceback" not in res.stderr
    assert list((elsewhere / "events").iterdir()) == []


def test_a_symlinked_flow_config_is_refused(repo: Repo, tmp_path: Path) -> None:
    repo.plan("p", PLAN)
    target = tmp_path / "config.yaml"
    target.write_text((repo.path / ".flow/config.yaml").read_text())
    (repo.path / ".flow/config.yaml").unlink()
    os.symlink(target, repo.path / ".flow/config.yaml")
    for args in (("status", "p"), ("claim", "p", "--worker", "w")):
        res = repo.proc(*args)
        assert res.returncode == 1 and "symlink" in res.stderr and "Traceback" not in res.stderr


def test_a_staged_symlink_under_flow_is_refused_by_the_hook_check(repo: Repo, tmp_path: Path) -> None:
    repo.plan("p", PLAN)
    outside = tmp_path / "secret.yaml"
    outside.write_text("id: x\ntitle: X\n")
    os.symlink(outside, repo.path / ".flow/plans/p/spec.yaml")
    repo.git("add", ".flow/plans/p/spec.yaml")
    res = repo.proc("validate", "--staged")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "spec.yaml" in res.stderr and "symlink" in res.stderr and "git rm --cached" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_a_submodule_staged_under_flow_does_not_break_the_hook_check(repo: Repo) -> None:
    repo.plan("p", PLAN)
    elsewhere = "1234567890abcdef1234567890abcdef12345678"  # a submodule's commit: not in this repository
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{elsewhere},.flow/vendored")
    res = repo.proc("validate", "--staged")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
