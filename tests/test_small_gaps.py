"""Exit codes and small gaps (issue 13): init without a git identity writes nothing, bad
`--run` / `--worker` values are usage errors wherever they are taken, a config flowgit refuses
stops every command with the line `validate` gives, `tasks: {}` is refused alike, a failed
validation needs `--force` to approve a checkpoint, and a failed `finish` writes nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import Repo, events, git, state_branch

PY = sys.executable
PLAN = "id: p\ntitle: p\ntasks:\n  - {id: A, title: a}\n  - {id: B, title: b}\n"


def plan_events(repo: Repo, plan: str = "p") -> list[dict[str, Any]]:
    return events(repo, plan)


# ----- init without a git identity --------------------------------------------------------------

@pytest.mark.parametrize("existing", ["nothing", "gitignore", "half-initialised"])
def test_init_without_a_git_identity_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     existing: str) -> None:
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(key, raising=False)
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.useConfigOnly", "true")  # no identity guessed from the host name
    if existing == "gitignore":
        (path / ".gitignore").write_text("build/")  # no final newline: kept byte for byte
    elif existing == "half-initialised":
        (path / ".flow" / "plans").mkdir(parents=True)
        (path / ".flow" / "config.yaml").write_text("version: 1\n")
    before = {p: p.read_bytes() for p in path.rglob("*") if ".git" not in p.parts and p.is_file()}
    config_before = (path / ".git" / "config").read_text()
    proc = subprocess.run([PY, "-m", "flowgit", "--repo", str(path), "init"], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no identity" in lines[0] and "git config user.email" in lines[0], proc.stderr
    assert git(path, "status", "--porcelain", "--untracked-files=all") == (
        "" if existing == "nothing" else git(path, "status", "--porcelain", "--untracked-files=all"))
    after = {p: p.read_bytes() for p in path.rglob("*") if ".git" not in p.parts and p.is_file()}
    assert after == before
    assert git(path, "diff", "--cached", "--name-only") == ""
    assert (path / ".git" / "config").read_text() == config_before
    assert not (path / ".git" / "hooks" / "pre-commit").exists()
    # with an identity it works, as before
    git(path, "config", "user.email", "me@example.com")
    git(path, "config", "user.name", "Me")
    proc = subprocess.run([PY, "-m", "flowgit", "--repo", str(path), "init"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert git(path, "log", "--format=%s") == "flow: init"


# ----- usage errors: watch --run, --worker, --reviewer, FLOWGIT_ACTOR -------------------------------

@pytest.mark.parametrize("value", ["-2", "-1", "x", "1.5"])
def test_watch_run_needs_a_count_of_zero_or_more(repo: Repo, value: str) -> None:
    res = repo.run("watch", "--run", value)
    assert res.code == 2 and "--run" in res.err and "Traceback" not in res.err, res.err


BAD_NAMES = {
    "empty": "",
    "blank": "   ",
    "newline": "w1\nFlow-Actor: root",
    "carriage-return": "w1\rx",
    "tab": "w\t1",
    "escape": "w\x1b[31m1",
    "nul": "w\x001",
    "del": "w\x7f",
    "c1-control": "w\x851",
    "line-separator": "w\u20281",
    "too-long": "w" * 201,
}

WORKER_COMMANDS = [("claim", "p"), ("start", "p/A"), ("heartbeat", "p/A"), ("done", "p/A"),
                   ("fail", "p/A", "--error", "x"), ("release", "p/A")]


@pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
def test_a_bad_worker_name_is_a_usage_error_everywhere(repo: Repo, name: str) -> None:
    repo.plan("p", PLAN)
    repo.ok("claim", "p/A", "--worker", "w1")
    before = repo.commits()
    for args in WORKER_COMMANDS:
        res = repo.run(*args, "--worker", name)
        assert res.code == 2, (args, res.out, res.err)
        assert res.err.startswith("flowgit: error: invalid worker name ") and res.err.count("\n") == 1, \
            (args, res.err)
        res = repo.run("--json", *args, "--worker", name)
        assert res.code == 2 and res.json["error"]["code"] == "usage", (args, res.out)
    assert repo.commits() == before


@pytest.mark.parametrize("name", ["", "a\nb", "r" * 201], ids=["empty", "newline", "too-long"])
def test_a_bad_reviewer_name_is_a_usage_error(repo: Repo, name: str) -> None:
    repo.plan("p", PLAN)
    repo.ok("submit", "p")
    before = repo.commits()
    for args in (("approve", "p"), ("reject", "p", "--comment", "no"),
                 ("checkpoint", "p", "--approve")):
        res = repo.run(*args, "--reviewer", name)
        assert res.code == 2 and res.err.startswith("flowgit: error: invalid reviewer name "), (args, res.err)
        assert res.err.count("\n") == 1, res.err
    assert repo.commits() == before


@pytest.mark.parametrize("name", ["a\nb", "x" * 201, "tab\there"], ids=["newline", "too-long", "tab"])
def test_a_bad_flowgit_actor_is_a_usage_error(repo: Repo, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    repo.plan("p", PLAN)
    monkeypatch.setenv("FLOWGIT_ACTOR", name)
    before = repo.commits()
    for args in (("claim", "p"), ("submit", "p"), ("task", "add", "p", "C", "--title", "c")):
        res = repo.run(*args)
        assert res.code == 2, (args, res.out, res.err)
        assert res.err.count("\n") == 1 and "invalid worker name" in res.err, res.err
    assert repo.commits() == before


def test_mcp_refuses_a_bad_worker_as_a_usage_error(repo: Repo) -> None:
    pytest.importorskip("mcp")
    from test_mcp import Client, serve

    repo.plan("p", PLAN)
    before = repo.commits()

    async def scenario(client: Client) -> None:
        for tool, extra in (("claim", {}), ("start", {"task": "p/A"}), ("heartbeat", {"task": "p/A"}),
                            ("done", {"task": "p/A"}), ("fail", {"task": "p/A", "error": "x"})):
            for name in BAD_NAMES.values():
                if "\x00" in name:
                    continue  # JSON carries it, but no argv can: covered in-process above
                res = await client.raw(tool, worker=name, **extra)
                text = " ".join(getattr(c, "text", "") for c in res.content)
                assert res.is_error and "[usage, exit 2]" in text, (tool, name, text)

    serve(repo, scenario)
    assert repo.commits() == before


# ----- a config flowgit refuses stops every command with validate's line ---------------------------

CONFIGS = {
    "version-99": ("version: 1", "version: 99", "version: 99 is not one of: 1, 2"),
    "version-text": ("version: 1", 'version: "1"', "is not one of: 1, 2"),
    "default-executor": ("default_executor: shell", "default_executor: nosuch", "unknown executor 'nosuch'"),
}

EVERY_COMMAND = [("status",), ("status", "p"), ("next",), ("plan", "list"), ("plan", "show", "p"),
                 ("events", "p"), ("graph", "p"), ("claim", "p", "--worker", "w"), ("submit", "p"),
                 ("advance",), ("task", "add", "p", "C", "--title", "c"), ("run", "p", "-n", "1"),
                 ("diff",), ("history", "p"), ("compact", "p"), ("halt", "p", "--reason", "x")]


@pytest.mark.parametrize("case", list(CONFIGS.values()), ids=list(CONFIGS))
def test_a_refused_config_stops_every_command_alike(repo: Repo, case: tuple[str, str, str]) -> None:
    old, new, needle = case
    if old == "version: 1" and state_branch(repo):
        old = "version: 2"
    repo.plan("p", PLAN)
    cfg = repo.path / ".flow" / "config.yaml"
    assert old in cfg.read_text()
    cfg.write_text(cfg.read_text().replace(old, new))
    before = repo.commits()
    res = repo.run("validate")
    assert res.code == 1 and needle in res.err, res.err
    first = res.err.splitlines()[0]
    for args in EVERY_COMMAND:
        other = repo.run(*args)
        assert other.code == 1 and other.err.strip() == f"flowgit: error: {first}", (args, other.err)
    assert repo.commits() == before
    # doctor reports it, and fixing the file is all it takes
    assert needle in repo.run("doctor").out
    cfg.write_text(cfg.read_text().replace(new, old))
    repo.ok("status", "p")


@pytest.mark.parametrize("value", ["{}", '""', "false", "0", "{a: 1}", "", "null"])
@pytest.mark.parametrize("key", ["tasks", "checkpoints"])
def test_tasks_that_are_not_a_list_get_one_answer(repo: Repo, key: str, value: str) -> None:
    repo.write(".flow/plans/p/plan.yaml", f"id: p\ntitle: p\n{key}: {value}\n")
    res = repo.run("validate")
    assert res.code == 1, res.err
    first = res.err.splitlines()[0]
    assert first.startswith(f".flow/plans/p/plan.yaml:3: {key}: expected a list"), first
    for args in (("status", "p"), ("next", "p"), ("claim", "p", "--worker", "w"), ("graph", "p")):
        other = repo.run(*args)
        assert other.code == 1 and other.err.strip() == f"flowgit: error: {first}", (args, other.err)


def test_an_empty_task_list_is_still_fine(repo: Repo) -> None:
    repo.write(".flow/plans/p/plan.yaml", "id: p\ntitle: p\ntasks: []\n")
    repo.ok("validate")
    assert repo.ok("status", "p", "--json").json["tasks"] == []


# ----- checkpoint --approve over a failed validation; finish that fails writes nothing ---------------

CHECKED = f"""\
id: v
title: Checked
tasks:
  - {{id: a, title: A}}
  - {{id: c, title: After, depends_on: [CP]}}
checkpoints:
  - id: CP
    after: [a]
    validations:
      - {{name: fine, run: [{PY}, -c, "print('ok')"]}}
      - {{name: tests, run: [{PY}, -c, "import sys; print('2 failed'); sys.exit(3)"]}}
"""


def _reach_checkpoint(repo: Repo) -> None:
    repo.plan("v", CHECKED)
    repo.ok("claim", "v/a", "--worker", "w1")
    repo.ok("done", "v/a", "--worker", "w1")
    repo.ok("advance")
    assert repo.ok("status", "v", "--json").json["phase"] == "checkpoint"


def test_approving_over_a_failed_validation_needs_force(repo: Repo) -> None:
    _reach_checkpoint(repo)
    before = repo.commits()
    res = repo.run("checkpoint", "v", "CP", "--approve", "--reviewer", "alice")
    assert res.code == 1, res.out + res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "validation 'tests' failed (exit 3)" in lines[0] and "--force" in lines[0]
    res = repo.run("--json", "checkpoint", "v", "--approve", "--reviewer", "alice")
    assert res.code == 1 and res.json["error"]["code"] == "validation_failed"
    assert repo.commits() == before and repo.ok("status", "v", "--json").json["phase"] == "checkpoint"
    # --force goes only with --approve
    res = repo.run("checkpoint", "v", "--request-changes", "fix it", "--reviewer", "alice", "--force")
    assert res.code == 2 and repo.commits() == before

    repo.ok("checkpoint", "v", "CP", "--approve", "--reviewer", "alice", "--force")
    [approved] = [e for e in plan_events(repo, "v") if e["type"] == "checkpoint.approved"]
    assert approved["data"]["forced"] == ["tests"] and approved["data"]["reviewer"] == "alice"
    assert repo.ok("status", "v", "--json").json["phase"] == "execute"


def test_approving_after_passing_validations_needs_no_force(repo: Repo) -> None:
    repo.plan("v", CHECKED.replace("sys.exit(3)", "sys.exit(0)"))
    repo.ok("claim", "v/a", "--worker", "w1")
    repo.ok("done", "v/a", "--worker", "w1")
    repo.ok("advance")
    repo.ok("checkpoint", "v", "--approve", "--reviewer", "alice")
    [approved] = [e for e in plan_events(repo, "v") if e["type"] == "checkpoint.approved"]
    assert "forced" not in approved["data"]


@pytest.mark.parametrize("phase", ["execute", "finish"])
def test_a_failed_finish_writes_nothing(repo: Repo, phase: str) -> None:
    cfg = repo.path / ".flow" / "config.yaml"
    final = [{"name": "final", "run": [PY, "-c", "import sys; print('nope'); sys.exit(1)"]}]
    cfg.write_text(cfg.read_text().replace("validations: []", f"validations: {json.dumps(final)}"))
    repo.git("commit", "-qam", "final validation")
    repo.ok("trust")  # a validation written by hand runs once trusted in this clone
    repo.plan("p", PLAN)
    for task in ("A", "B"):
        repo.ok("claim", f"p/{task}", "--worker", "w1")
        repo.ok("done", f"p/{task}", "--worker", "w1")
    if phase == "finish":
        repo.ok("advance")  # the move the watcher makes
    assert repo.ok("status", "p", "--json").json["phase"] == phase
    before = (repo.commits(), repo.git("status", "--porcelain"), plan_events(repo))
    res = repo.run("finish", "p")
    assert res.code == 1 and "final validation 'final' failed" in res.err and "nope" in res.err
    res = repo.run("--json", "finish", "p")
    assert res.code == 1 and res.json["error"]["code"] == "validation_failed" and res.json["commit"] is None
    assert (repo.commits(), repo.git("status", "--porcelain"), plan_events(repo)) == before
    assert not (repo.path / "CHANGELOG.md").exists()
