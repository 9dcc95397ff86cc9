"""`flowgit setup claude|codex|gemini|agents`: what each agent needs to find flowgit, written
inside the repository only (HOME is a sandbox here, and nothing may appear in it), merged into
the user's files without clobbering them, and a rerun changes nothing."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from helpers import Repo

from flowgit.formats import agentfiles

COMMANDS = ["flowgit-explore", "flowgit-plan", "flowgit-run", "flowgit-checkpoint", "flowgit-finish"]


def tree(path: Path) -> dict[str, bytes]:
    """The files under `path`, git's and flowgit's cache aside."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if p.is_file() and not rel.startswith((".git/", ".flow/.cache/")):
            out[rel] = p.read_bytes()
    return out


@pytest.fixture
def home() -> Path:
    """The sandboxed HOME (tests/conftest.py), with what was in it before the test."""
    return Path(os.environ["HOME"])


def test_claude_writes_block_mcp_and_slash_commands(repo: Repo, home: Path) -> None:
    before_home = tree(home)
    res = repo.ok("setup", "claude")
    assert "added CLAUDE.md: the flowgit block" in res.out
    assert "added .mcp.json: MCP server 'flowgit'" in res.out
    assert "review and commit them: git add CLAUDE.md .mcp.json .claude/commands/" in res.out
    claude = (repo.path / "CLAUDE.md").read_text()
    assert claude.startswith(agentfiles.BEGIN + "\n## Working with flowgit\n") and claude.endswith(agentfiles.END + "\n")
    assert "flowgit prime" in claude and "/flowgit-checkpoint" in claude and "{{MCP}}" not in claude
    assert json.loads((repo.path / ".mcp.json").read_text()) == {
        "mcpServers": {"flowgit": {"type": "stdio", "command": "flowgit", "args": ["mcp"]}}}
    for name in COMMANDS:
        text = (repo.path / ".claude" / "commands" / f"{name}.md").read_text()
        assert text.startswith("---\ndescription: ") and "$ARGUMENTS" in text
        assert agentfiles.GENERATED in text
    assert tree(home) == before_home  # nothing outside the repository
    assert not (repo.path / "AGENTS.md").exists() and not (repo.path / ".gemini").exists()
    # a rerun changes nothing
    snapshot = tree(repo.path)
    again = repo.ok("--json", "setup", "claude").json
    assert {f["status"] for f in again["files"]} == {"unchanged"}
    assert tree(repo.path) == snapshot


def test_checkpoint_command_leaves_the_decision_to_a_person(repo: Repo) -> None:
    repo.ok("setup", "claude")
    text = (repo.path / ".claude/commands/flowgit-checkpoint.md").read_text()
    assert "--approve --reviewer NAME" in text and "Do not run it" in text
    assert "allowed-tools" not in text  # nothing pre-approved: every command asks as usual


def test_block_is_added_to_the_users_text_and_updated_in_place(repo: Repo) -> None:
    mine = "# My project\n\nUse tabs.\n"
    repo.write("AGENTS.md", mine)
    repo.ok("setup", "agents")
    text = (repo.path / "AGENTS.md").read_text()
    assert text.startswith(mine + "\n" + agentfiles.BEGIN)
    # the user edits around the block, and an old block is replaced where it stands
    old_block = text[text.index(agentfiles.BEGIN):]
    edited = "# My project\n\n" + agentfiles.BEGIN + "\nold words\n" + agentfiles.END + "\n\nMore of mine.\n"
    (repo.path / "AGENTS.md").write_text(edited)
    res = repo.ok("setup", "agents")
    assert "updated AGENTS.md" in res.out
    assert (repo.path / "AGENTS.md").read_text() == "# My project\n\n" + old_block + "\nMore of mine.\n"
    assert "unchanged AGENTS.md" in repo.ok("setup", "agents").out


def test_mcp_json_keeps_the_other_servers_and_a_changed_flowgit_entry(repo: Repo) -> None:
    theirs = {"mcpServers": {"db": {"command": "db-mcp", "args": ["--ro"]}}, "other": 1}
    repo.write(".mcp.json", json.dumps(theirs))
    repo.ok("setup", "claude")
    data = json.loads((repo.path / ".mcp.json").read_text())
    assert list(data["mcpServers"]) == ["db", "flowgit"] and data["other"] == 1
    assert data["mcpServers"]["db"] == theirs["mcpServers"]["db"]
    # the user points flowgit at their venv: kept, unless --force
    data["mcpServers"]["flowgit"]["command"] = "/opt/venv/bin/flowgit"
    (repo.path / ".mcp.json").write_text(json.dumps(data))
    res = repo.ok("setup", "claude")
    assert "kept .mcp.json" in res.out
    assert json.loads((repo.path / ".mcp.json").read_text())["mcpServers"]["flowgit"]["command"] == "/opt/venv/bin/flowgit"
    repo.ok("setup", "claude", "--force")
    assert json.loads((repo.path / ".mcp.json").read_text())["mcpServers"]["flowgit"]["command"] == "flowgit"


def test_a_slash_command_of_the_users_own_is_kept(repo: Repo) -> None:
    repo.write(".claude/commands/flowgit-run.md", "my own run command\n")
    res = repo.ok("setup", "claude")
    assert "kept .claude/commands/flowgit-run.md" in res.out
    assert (repo.path / ".claude/commands/flowgit-run.md").read_text() == "my own run command\n"
    # one flowgit wrote is brought up to date
    path = repo.path / ".claude/commands/flowgit-plan.md"
    path.write_text(path.read_text() + "an older version\n")
    assert "updated .claude/commands/flowgit-plan.md" in repo.ok("setup", "claude").out
    assert "an older version" not in path.read_text()


def test_gemini_settings_merge(repo: Repo, home: Path) -> None:
    before_home = tree(home)
    repo.write(".gemini/settings.json", json.dumps({"theme": "GitHub", "mcpServers": {"x": {"command": "x"}}}))
    repo.ok("setup", "gemini")
    data = json.loads((repo.path / ".gemini/settings.json").read_text())
    assert data["theme"] == "GitHub" and data["mcpServers"] == {
        "x": {"command": "x"}, "flowgit": {"command": "flowgit", "args": ["mcp"]}}
    assert agentfiles.BEGIN in (repo.path / "GEMINI.md").read_text()
    assert tree(home) == before_home


def test_codex_prints_the_snippet_and_writes_home_only_with_user(repo: Repo, home: Path) -> None:
    before_home = tree(home)
    res = repo.ok("setup", "codex")
    assert "[mcp_servers.flowgit]\ncommand = \"flowgit\"\nargs = [\"mcp\"]" in res.out
    assert "~/.codex/config.toml" in res.out and agentfiles.BEGIN in (repo.path / "AGENTS.md").read_text()
    assert tree(home) == before_home
    assert repo.ok("--json", "setup", "codex").json["snippet"]["text"].startswith("[mcp_servers.flowgit]")
    # --user writes the user config (kept in the sandboxed HOME), merged with what is there
    config = home / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text('model = "o3"\n\n[mcp_servers.other]\ncommand = "other"\n')
    res = repo.ok("setup", "codex", "--user")
    assert f"added {config}" in res.out
    text = config.read_text()
    assert text.startswith('model = "o3"\n\n[mcp_servers.other]\ncommand = "other"\n\n[mcp_servers.flowgit]\n')
    if sys.version_info >= (3, 11):
        import tomllib
        assert tomllib.loads(text)["mcp_servers"]["flowgit"] == {"command": "flowgit", "args": ["mcp"]}
    assert f"unchanged {config}" in repo.ok("setup", "codex", "--user").out
    assert config.read_text() == text
    config.unlink()
    config.parent.rmdir()


def test_codex_home_is_honoured(repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex"))
    repo.ok("setup", "codex", "--user")
    assert "[mcp_servers.flowgit]" in (tmp_path / "codex" / "config.toml").read_text()


def test_dry_run_writes_nothing_and_shows_the_diff(repo: Repo, home: Path) -> None:
    repo.write("CLAUDE.md", "mine\n")
    before, before_home = tree(repo.path), tree(home)
    res = repo.ok("setup", "claude", "--dry-run")
    assert "would add CLAUDE.md: the flowgit block" in res.out
    assert "--- a/CLAUDE.md\n+++ b/CLAUDE.md\n" in res.out and "+## Working with flowgit" in res.out
    assert "--- /dev/null\n+++ b/.mcp.json" in res.out
    assert tree(repo.path) == before and tree(home) == before_home
    data = repo.ok("--json", "setup", "claude", "--dry-run").json
    assert data["dry_run"] is True and not any(f["written"] for f in data["files"])


@pytest.mark.parametrize("rel, text, words", [
    (".mcp.json", "{not json", ".mcp.json:1: not valid JSON"),
    (".mcp.json", "[1, 2]", ".mcp.json:1: not a JSON object"),
    (".mcp.json", '{"mcpServers": []}', ".mcp.json: mcpServers is not an object"),
    ("CLAUDE.md", f"a\n{agentfiles.BEGIN}\nb\n", "CLAUDE.md:2: the flowgit:begin / flowgit:end markers"),
    ("CLAUDE.md", f"{agentfiles.END}\n{agentfiles.BEGIN}\n", "CLAUDE.md:1: the flowgit:begin"),
    ("CLAUDE.md", f"{agentfiles.BEGIN}\n{agentfiles.END}\n{agentfiles.BEGIN}\n{agentfiles.END}\n", "CLAUDE.md:3:"),
])
def test_a_file_setup_cannot_merge_is_one_line_and_nothing_is_written(repo: Repo, rel: str, text: str,
                                                                      words: str) -> None:
    repo.write(rel, text)
    before = tree(repo.path)
    res = repo.run("setup", "claude")
    assert res.code == 1 and words in res.err and len(res.err.strip().splitlines()) == 1
    assert "Traceback" not in res.err and res.out == ""
    assert tree(repo.path) == before


def test_never_writes_through_a_link_out_of_the_repository(repo: Repo, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.md"
    outside.write_text("theirs\n")
    (repo.path / "CLAUDE.md").symlink_to(outside)
    res = repo.run("setup", "claude")
    assert res.code == 1 and "CLAUDE.md: leads outside the repository" in res.err
    assert outside.read_text() == "theirs\n" and not (repo.path / ".mcp.json").exists()
    # a link that stays inside (CLAUDE.md -> AGENTS.md) is written through
    (repo.path / "CLAUDE.md").unlink()
    repo.write("AGENTS.md", "shared\n")
    (repo.path / "CLAUDE.md").symlink_to("AGENTS.md")
    repo.ok("setup", "claude")
    assert (repo.path / "CLAUDE.md").is_symlink()
    assert (repo.path / "AGENTS.md").read_text().startswith("shared\n\n" + agentfiles.BEGIN)


def test_a_claude_dir_linked_outside_is_refused(repo: Repo, tmp_path: Path) -> None:
    (tmp_path / "dotclaude").mkdir()
    (repo.path / ".claude").symlink_to(tmp_path / "dotclaude")
    res = repo.run("setup", "claude")
    assert res.code == 1 and "leads outside the repository" in res.err
    assert not list((tmp_path / "dotclaude").iterdir())


def test_usage_errors(repo: Repo) -> None:
    res = repo.run("setup", "cursor")
    assert res.code == 2 and "claude" in res.err
    res = repo.run("setup", "claude", "--user")
    assert res.code == 2 and "--user writes Codex's user config only" in res.err
    assert not (repo.path / "CLAUDE.md").exists()


def test_setup_runs_as_a_process_with_a_fresh_home(repo: Repo, tmp_path: Path) -> None:
    """The same from a real process, HOME pointing at an empty directory it must leave empty."""
    fresh = tmp_path / "fresh-home"
    fresh.mkdir()
    env = dict(os.environ, HOME=str(fresh))
    for agent in ("claude", "codex", "gemini", "agents"):
        proc = repo.proc("setup", agent, env=env)
        assert proc.returncode == 0, proc.stderr
    assert list(fresh.iterdir()) == []
    assert {"CLAUDE.md", "AGENTS.md", "GEMINI.md", ".mcp.json", ".gemini/settings.json"} <= set(tree(repo.path))
