"""No data becomes a git option (issue 13): every command and MCP tool that hands git a
revision, a remote, a path or a commit id read from an event gets option-shaped values and
must refuse them with one line, run nothing, write nothing and commit nothing; ordinary
revisions keep working."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from helpers import Repo, copy_repo, git, init_repo, prebuilt, state_branch

from flowgit import git as door
from flowgit.errors import FlowError

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

# What a hostile branch, config or agent would hand git; X is a file that must stay as it is.
HOSTILE = ["--output={x}", "-c core.pager=sh -c 'echo owned > {x}'", "--exec=sh -c 'echo owned > {x}'",
           "--upload-pack=sh -c 'echo owned > {x}'"]
IDS = ["output", "config-pager", "exec", "upload-pack"]
PRECIOUS = "precious\n"


class Trap:
    """A directory holding one file with known content: git writing, truncating or running
    anything there shows."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "trap"
        self.dir.mkdir()
        self.victim = self.dir / "victim"
        self.victim.write_text(PRECIOUS)

    def value(self, template: str) -> str:
        return template.format(x=self.victim)

    def untouched(self) -> bool:
        return sorted(p.name for p in self.dir.iterdir()) == ["victim"] \
            and self.victim.read_text() == PRECIOUS


def snapshot(repo: Repo) -> tuple[str, str, str]:
    """HEAD, the status and the refs: what "nothing committed, nothing written" compares."""
    return (repo.git("rev-parse", "HEAD"), repo.git("status", "--porcelain", "--untracked-files=all"),
            repo.git("for-each-ref"))


def refused(res: Any, code: int) -> str:
    """One line on stderr, the exit code asked for, no traceback."""
    assert res.code == code, (res.code, res.out, res.err)
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1, res.err
    assert "Traceback" not in res.err + res.out
    return lines[0]


@pytest.fixture
def trap(tmp_path: Path) -> Trap:
    return Trap(tmp_path)


def _two_versions(repo: Repo) -> None:
    repo.plan("g", GATED.replace("""  - id: c
    title: Uses the reviewed work
    depends_on: [CP]
""", ""))
    plan = repo.path / ".flow/plans/g/plan.yaml"
    plan.write_text(plan.read_text().replace("checkpoints:", """  - id: c
    title: Uses the reviewed work
    depends_on: [CP]
checkpoints:"""))
    repo.git("commit", "-q", "-m", "add c", "--", ".flow/plans/g/plan.yaml")


@pytest.fixture(scope="module")
def _planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prebuilt(tmp_path_factory, _two_versions)


@pytest.fixture
def planned(_planned: Path, tmp_path: Path) -> Repo:
    """Plan g with two committed versions (task c added in the second)."""
    return copy_repo(_planned, tmp_path / "repo")


# ----- revisions a user types --------------------------------------------------------------------

def cli_cases(repo: Repo, value: str) -> list[tuple[list[str], int]]:
    """Every command that takes a revision, with `value` where the revision goes, and the exit
    code its refusal must have (2: a flag value or argument that can never be a revision)."""
    return [
        (["plan", "show", "g", f"--rev={value}"], 2),
        (["plan", "show", "g", "--rev", value], 2),
        (["diff", "--", value], 2),
        (["diff", "HEAD", "--", value], 2),
        (["diff", "--plan", "g", "--", value, "HEAD"], 2),
        (["rollback", "g", f"--to={value}"], 2),
        (["rollback", "g", "--to", value], 2),
        (["history", "--", value], 2),
        (["events", "--from-git", "--", value], 2),
        (["events", "g", "--from-git", "--", value], 2),
        (["sync", f"--remote={value}"], 2),
        (["sync", "--remote", value], 2),
    ]


@pytest.mark.parametrize("template", HOSTILE, ids=IDS)
def test_commands_refuse_option_shaped_revisions_and_names(planned: Repo, trap: Trap, template: str) -> None:
    value = trap.value(template)
    before = snapshot(planned)
    for args, code in cli_cases(planned, value):
        res = planned.run(*args)
        line = refused(res, code)
        assert "-" in line, (args, line)
        assert trap.untouched(), args
        assert snapshot(planned) == before, args


@pytest.mark.parametrize("template", HOSTILE, ids=IDS)
def test_a_separate_process_writes_nothing_either(planned: Repo, trap: Trap, template: str) -> None:
    """The same for the real console entry (the exit code and stderr a shell sees)."""
    value = trap.value(template)
    before = snapshot(planned)
    for args in (["plan", "show", "g", f"--rev={value}"], ["diff", "--", value],
                 ["rollback", "g", f"--to={value}"]):
        proc = planned.proc(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert trap.untouched() and snapshot(planned) == before


# ----- remotes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("template", HOSTILE, ids=IDS)
def test_a_remote_named_in_config_never_becomes_an_option(planned: Repo, trap: Trap, template: str) -> None:
    value = trap.value(template)
    config = planned.path / ".flow/config.yaml"
    config.write_text(config.read_text() + f"remote: {json.dumps(value)}\n")
    planned.git("commit", "-q", "--no-verify", "-m", "a hostile remote", "--", ".flow/config.yaml")
    before = snapshot(planned)
    for args in (["sync"], ["claim", "g", "--sync", "--worker", "w"]):
        line = refused(planned.run(*args), 1)
        assert "config.yaml" in line and "remote" in line, line
    line = refused(planned.run("validate"), 1)
    assert "config.yaml" in line and "remote" in line
    assert trap.untouched() and snapshot(planned) == before


# ----- commit ids read from events ----------------------------------------------------------------

def at_checkpoint(repo: Repo) -> None:
    repo.plan("g", GATED)
    repo.ok("submit", "g")  # no approvals required: straight to execute
    for task in ("a", "b"):
        repo.ok("claim", f"g/{task}", "--worker", "w")
        repo.ok("done", f"g/{task}", "--worker", "w")
    repo.ok("advance", "g")
    assert repo.ok("status", "g", "--json").json["phase"] == "checkpoint"


def forge_base_commit(repo: Repo, value: str) -> int:
    """Rewrite the base_commit of the move to execute in _plan.jsonl and commit it past the
    hook, as a merged branch would bring it; the line number it is on."""
    log = repo.path / ".flow/plans/g/events/_plan.jsonl"
    lines = log.read_text().splitlines()
    for i, raw in enumerate(lines):
        ev = json.loads(raw)
        if ev["type"] == "plan.phase" and ev["data"].get("base_commit"):
            ev["data"]["base_commit"] = value
            lines[i] = json.dumps(ev, separators=(",", ":"))
            lineno = i + 1
    log.write_text("\n".join(lines) + "\n")
    repo.git("commit", "-q", "--no-verify", "-m", "forged", "--", str(log))
    return lineno


@pytest.mark.format1
@pytest.mark.parametrize("template", HOSTILE, ids=IDS)
def test_a_base_commit_from_the_log_must_be_a_full_id(repo: Repo, trap: Trap, template: str) -> None:
    at_checkpoint(repo)
    lineno = forge_base_commit(repo, trap.value(template))
    before = snapshot(repo)
    for args in (["checkpoint", "g"], ["checkpoint", "g", "CP"], ["--json", "checkpoint", "g"]):
        res = repo.run(*args)
        assert res.code == 1, (args, res.err)
        assert "Traceback" not in res.err + res.out
        message = json.loads(res.out)["error"]["message"] if "--json" in args else refused(res, 1)
        assert f".flow/plans/g/events/_plan.jsonl:{lineno}" in message and "base_commit" in message
    assert trap.untouched() and snapshot(repo) == before
    line = [ln for ln in repo.run("validate").err.splitlines() if "base_commit" in ln]
    assert line and f"_plan.jsonl:{lineno}" in line[0]


@pytest.mark.format1
@pytest.mark.parametrize("value", ["HEAD", "HEAD~1", "abc1234", "A" * 40, "a" * 39, "main"])
def test_a_base_commit_that_is_a_revision_is_refused_too(repo: Repo, value: str) -> None:
    """An event holds full ids only: a symbolic name there would diff against whatever it
    means today."""
    at_checkpoint(repo)
    forge_base_commit(repo, value)
    line = refused(repo.run("checkpoint", "g"), 1)
    assert "base_commit" in line and "full commit id" in line


def test_the_checkpoint_view_still_shows_changes_since_the_real_base(repo: Repo) -> None:
    at_checkpoint(repo)
    review = repo.ok("--json", "checkpoint", "g").json
    assert len(review["base_commit"]) == 40 and review["changes"]["files"] == []


# ----- MCP tools --------------------------------------------------------------------------------------

@pytest.mark.parametrize("template", HOSTILE, ids=IDS)
def test_mcp_tools_refuse_option_shaped_revisions(planned: Repo, trap: Trap, template: str) -> None:
    """The MCP server's tools that take a revision, through the same `main` the server is
    handed (a tool error carries the exit code)."""
    from flowgit.cli.main import main
    from flowgit.cli.mcp_server import tools as mcp_tools

    pytest.importorskip("mcp")
    tools: dict[str, Callable[..., Any]] = {fn.__name__: fn for fn in mcp_tools(planned.path, main)}
    value = trap.value(template)
    before = snapshot(planned)
    calls = [("plan_show", {"plan": "g", "rev": value}), ("diff", {"rev_a": value}),
             ("diff", {"rev_a": "HEAD", "rev_b": value}), ("events", {"plan": value}),
             ("plan_show", {"plan": value})]
    for name, kwargs in calls:
        with pytest.raises(Exception) as info:
            tools[name](**kwargs)
        message = str(info.value)
        assert "exit 2" in message and "\n" not in message, (name, message)
    assert trap.untouched() and snapshot(planned) == before


# ----- ordinary revisions still work ------------------------------------------------------------------

def test_ordinary_revisions_still_work(planned: Repo) -> None:
    first = planned.git("rev-list", "--max-count=1", "HEAD~1")
    short = first[:7]
    planned.git("branch", "older", first)
    for rev in ("HEAD~1", short, "older", "main@{1}", first):
        shown = planned.ok("--json", "plan", "show", "g", "--rev", rev).json
        assert [t["id"] for t in shown["definition"]["tasks"]] == ["a", "b"], rev
        assert shown["rev"] == rev
        out = planned.ok("--json", "diff", rev, "HEAD", "--plan", "g").json
        assert out["from"] == rev and out["to"] == "HEAD"
        assert [t["id"] for t in out["plans"][0]["tasks_added"]] == ["c"], rev
    assert planned.ok("--json", "diff", "HEAD~1").json["to"] == "working tree"
    assert planned.ok("--json", "history", "g").json["versions"][0]["commit"] == planned.git("rev-parse", "HEAD")
    res = planned.ok("--json", "rollback", "g", "--to", "older")
    assert res.json["rev"] == "older" and res.json["commit"] == planned.git("rev-parse", "HEAD")
    assert "- id: c" not in (planned.path / ".flow/plans/g/plan.yaml").read_text()


def test_unknown_revisions_are_one_line(planned: Repo) -> None:
    for args in (["plan", "show", "g", "--rev", "no-such"], ["diff", "no-such"],
                 ["rollback", "g", "--to", "no-such"], ["plan", "show", "g", "--rev", "HEAD:README.md"]):
        line = refused(planned.run(*args), 1)
        assert "unknown revision" in line, line


# ----- the door itself --------------------------------------------------------------------------------

def door_calls(root: Path, value: str) -> list[tuple[str, Callable[[], Any]]]:
    """Every door function that takes data, with `value` as that data."""
    dirs = door.find_dirs(root)
    full = "a" * 40
    return [
        ("resolve_commit", lambda: door.resolve_commit(root, value)),
        ("merge_base", lambda: door.merge_base(root, value, "HEAD")),
        ("merge_base b", lambda: door.merge_base(root, "HEAD", value)),
        ("is_ancestor", lambda: door.is_ancestor(root, value)),
        ("show_blob", lambda: door.show_blob(root, value, "x")),
        ("tree_blob_ids", lambda: door.tree_blob_ids(root, value, ".flow")),
        ("commits_touching", lambda: door.commits_touching(root, value)),
        ("diff_numstat", lambda: door.diff_numstat(root, value, "HEAD")),
        ("diff_numstat fork", lambda: door.diff_numstat(root, "HEAD", value, since_fork=True)),
        ("staged_paths", lambda: door.staged_paths(root, [value])),
        ("changed_paths", lambda: door.changed_paths(root, value)),
        ("add", lambda: door.add(root, [value])),
        ("unstage", lambda: door.unstage(root, [value])),
        ("config_get", lambda: door.config_get(root, value)),
        ("config_set", lambda: door.config_set(root, "flowgit.test", value)),
        ("delete_branches", lambda: door.delete_branches(root, [value])),
        ("remote_exists", lambda: door.remote_exists(root, value)),
        ("fetch", lambda: door.fetch(root, value, "main")),
        ("fetch branch", lambda: door.fetch(root, "origin", value)),
        ("push_head", lambda: door.push_head(root, value, "main")),
        ("push_head branch", lambda: door.push_head(root, "origin", value)),
        ("merge", lambda: door.merge(root, value, "m")),
        ("merge_no_commit", lambda: door.merge_no_commit(root, value)),
        ("worktree_add", lambda: door.worktree_add(root, root.parent / "wt", value, full)),
        ("worktree_add base", lambda: door.worktree_add(root, root.parent / "wt", "b", value)),
        ("worktree_move", lambda: door.worktree_move(root, Path(value), root.parent / "wt2")),
        ("worktree_remove", lambda: door.worktree_remove(root, Path(value))),
        ("checkout_fresh", lambda: door.checkout_fresh(root, value, full)),
        ("checkout_fresh base", lambda: door.checkout_fresh(root, "b", value)),
        ("short_id", lambda: door.short_id(root, value)),
        ("read_ref", lambda: door.read_ref(dirs, value)),
        ("init_repo", lambda: door.init_repo(root.parent / "new", value)),
    ]


SEPARATORS = ("--end-of-options", "--")


@pytest.mark.parametrize("template", HOSTILE, ids=IDS)
def test_the_door_puts_data_after_the_end_of_options(repo: Repo, trap: Trap, template: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each door function, handed an option-shaped value, refuses it or passes it only after
    `--end-of-options` / `--` (or as the value of an option that takes one, like `-m`)."""
    value = trap.value(template)
    seen: list[list[str]] = []
    real = subprocess.run

    def spy(argv: Any, *args: Any, **kw: Any) -> Any:
        if isinstance(argv, list) and argv and argv[0] == "git":
            seen.append(list(argv))
        return real(argv, *args, **kw)

    monkeypatch.setattr(door.subprocess, "run", spy)
    for name, call in door_calls(repo.path, value):
        seen.clear()
        try:
            call()
        except FlowError as exc:
            assert "\n" not in exc.message, name
        for argv in seen:
            for i, word in enumerate(argv):
                if value in word:
                    before = argv[:i]
                    assert any(sep in before for sep in SEPARATORS) or before[-1:] == ["-B"], (name, argv)
    assert trap.untouched()


def test_full_ids_read_from_data_are_checked_before_git() -> None:
    with pytest.raises(FlowError) as info:
        door.check_full_id("--output=/tmp/x", ".flow/plans/p/events/_plan.jsonl:3", "base_commit")
    assert info.value.message.startswith(".flow/plans/p/events/_plan.jsonl:3: base_commit '--output=/tmp/x'")
    assert door.check_full_id("ab" * 20, "x") == "ab" * 20


# ----- the git version --------------------------------------------------------------------------------

def fake_git(tmp_path: Path, version: str) -> dict[str, str]:
    """PATH with a `git` that reports `version` and runs the real git otherwise."""
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True).stdout.strip()
    bindir = tmp_path / "oldgit"
    bindir.mkdir()
    script = bindir / "git"
    script.write_text(f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "{version}"; exit 0; fi\n'
                      f'exec {real} "$@"\n')
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


def test_a_git_too_old_for_end_of_options_is_one_line(planned: Repo, tmp_path: Path) -> None:
    env = fake_git(tmp_path, "git version 2.20.1")
    proc = planned.proc("plan", "show", "g", "--rev", "HEAD", env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: flowgit needs git 2.24 or newer (this is git version 2.20.1): upgrade git"] \
        or proc.stderr.count("\n") == 1 and "needs git 2.24" in proc.stderr, proc.stderr
    # what passes no data to git does not ask (format 2's status reads the state branch with
    # git, passing it data)
    if not state_branch(planned):
        assert planned.proc("status", "g", env=env).returncode == 0


def test_the_version_is_asked_once_per_process(monkeypatch: pytest.MonkeyPatch, repo: Repo) -> None:
    door.require_git.cache_clear()
    asked: list[list[str]] = []
    real = subprocess.run

    def spy(argv: Any, *args: Any, **kw: Any) -> Any:
        if argv[:2] == ["git", "--version"]:
            asked.append(argv)
        return real(argv, *args, **kw)

    monkeypatch.setattr(door.subprocess, "run", spy)
    for _ in range(3):
        door.resolve_commit(repo.path, "HEAD")
        door.merge_base(repo.path, "HEAD", "HEAD")
    assert len(asked) <= 1  # none when an earlier command kept this git's answer (git.require_git)
    assert git(repo.path, "rev-parse", "HEAD") == door.resolve_commit(repo.path, "HEAD")


def test_mcp_over_stdio_refuses_an_option_shaped_rev(planned: Repo, trap: Trap) -> None:
    """The same through the official SDK's stdio client and a real `flowgit mcp` process."""
    pytest.importorskip("mcp")
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "flowgit", "--repo", str(planned.path), "mcp"],
                                   env=dict(os.environ), cwd=str(planned.path))
    value = trap.value(HOSTILE[0])
    before = snapshot(planned)
    errors: list[str] = []

    async def main() -> None:
        with anyio.fail_after(60):
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    for name, args in (("plan_show", {"plan": "g", "rev": value}),
                                       ("diff", {"rev_a": "HEAD", "rev_b": value})):
                        res = await session.call_tool(name, args)
                        assert res.is_error, (name, res)
                        errors.append(res.content[0].text)  # type: ignore[union-attr]
                    ok = await session.call_tool("plan_show", {"plan": "g", "rev": "HEAD~1"})
                    assert not ok.is_error

    anyio.run(main)
    assert all("exit 2" in e and "\n" not in e for e in errors), errors
    assert trap.untouched() and snapshot(planned) == before


# ----- a branch name from config never moves a code branch ---------------------------------------

@pytest.mark.parametrize("branch", ["main", "feature"])
def test_a_state_branch_that_names_a_code_branch_is_refused(tmp_path: Path, branch: str) -> None:
    """Format 2: a pulled config whose `state.branch` names a code branch made the next claim
    commit state onto it with update-ref (the checked-out `main` moved under the work tree,
    which then showed staged changes). A code branch holds .flow/config.yaml; the state
    branch's tree never does: every command that would move or push it refuses, naming the key."""
    repo = init_repo(tmp_path / "repo", "2")
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - {id: A, title: a}\n")
    repo.ok("submit", "p")
    repo.git("branch", "feature")
    cfg = repo.path / ".flow/config.yaml"
    cfg.write_text(cfg.read_text() + f"state:\n  branch: {branch}\n")
    repo.git("commit", "-qam", "from a branch", "--no-verify")
    before = snapshot(repo)
    for args in (("claim", "p/A", "--worker", "w"), ("halt", "p", "--reason", "x")):
        line = refused(repo.run(*args), 1)
        assert f"state.branch: '{branch}' is a code branch (it holds .flow/config.yaml)" in line
    assert snapshot(repo) == before
    cfg.write_text(cfg.read_text().replace(f"  branch: {branch}\n", "  branch: flow/state\n"))
    repo.git("commit", "-qam", "fixed", "--no-verify")
    repo.ok("claim", "p/A", "--worker", "w")  # its own branch: as before
    # a migrated repository's state branch (its first commit's parent is the code) is its own too
    old = init_repo(tmp_path / "old", "1")
    old.plan("p", "id: p\ntitle: P\ntasks:\n  - {id: A, title: a}\n")
    old.ok("submit", "p")
    old.ok("migrate")
    old.ok("claim", "p/A", "--worker", "w")
