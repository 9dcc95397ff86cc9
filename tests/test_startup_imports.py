"""Start-up (ADR 0007): a command imports what it uses. The commands an agent runs hundreds of
times (status, next, claim, heartbeat, release, done, events) never import the libraries and
layers other commands need, and `--help`, `--version`, a usage error and git's merge driver do
not even read the repository's code. Checked on the modules a real `flowgit` process imported
(`python -X importtime`), not on a timing: a stray module-level import fails here on any machine."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Repo, make_git_repo

CHAIN = """\
id: chain
title: Chain
tasks:
  - id: a
    title: A
  - id: b
    title: B
    depends_on: [a]
"""

# Never on the path of a hot command: libraries of other commands (validation, YAML round
# trips, the watcher, GitPython, MCP, HTTP, package metadata, OpenSSL's hashes) and the layers
# that run, watch and serve.
HEAVY = ("jsonschema", "ruamel", "yaml", "watchdog", "git", "mcp", "anyio", "pydantic", "http",
         "email", "importlib.metadata", "asyncio", "socket", "secrets", "hmac", "hashlib",
         "_hashlib", "tempfile",
         "urllib.request", "xml", "flowgit.board", "flowgit.watcher", "flowgit.runner.runner",
         "flowgit.runner.worktrees", "flowgit.runner.landing", "flowgit.runner.dispatcher",
         "flowgit.cli.mcp_server", "flowgit.formats.schemacheck", "flowgit.formats.validation",
         "flowgit.formats.plandiff", "flowgit.ops.sync", "flowgit.ops.statesync", "flowgit.ops.history",
         "flowgit.ops.migrate", "flowgit.store.planedit")

# Not even the repository's code for what reads no repository.
NO_REPOSITORY = ("flowgit.store.repo", "flowgit.core.fold", "flowgit.core.model", "flowgit.git",
                 "subprocess")


def imported(repo: Path, *args: str) -> tuple[int, set[str]]:
    """The modules a `python -X importtime -m flowgit ARGS` process imported, and its exit code."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "flowgit", "--repo", str(repo), *args],
                          capture_output=True, text=True, check=False)
    names = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:")}
    assert names, f"no -X importtime output: {proc.stderr[-2000:]}"
    return proc.returncode, names


def offending(names: set[str], banned: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(n == b or n.startswith(b + ".") for b in banned)}


@pytest.fixture(params=["2", "1"], ids=["format2", "format1"])
def chain(request: pytest.FixtureRequest, tmp_path: Path) -> Repo:
    r = Repo(make_git_repo(tmp_path / "repo"))
    r.ok("init", "--format", request.param)
    r.plan("chain", CHAIN)
    return r


def test_hot_commands_import_nothing_heavy(chain: Repo) -> None:
    steps = [("status",), ("status", "chain", "--json"), ("status", "chain"), ("next", "chain"),
             ("claim", "chain", "--worker", "w1"), ("heartbeat", "chain/a", "--worker", "w1"),
             ("release", "chain/a", "--worker", "w1"), ("claim", "chain/a", "--worker", "w1"),
             ("done", "chain/a", "--worker", "w1", "--note", "n"), ("events", "chain", "a")]
    for args in steps:
        code, names = imported(chain.path, *args)
        assert code == 0, args
        assert not offending(names, HEAVY), (args, sorted(offending(names, HEAVY)))
    assert [e for e in chain.ok("events", "chain", "a", "--json").json["events"]
            if e["type"] == "task.done"], "the commands above ran for real"


def test_help_version_and_usage_errors_read_no_repository_code(chain: Repo) -> None:
    for args, want in [(("--help",), 0), (("--version",), 0), (("claim", "--help"), 0),
                       (("task", "--help"), 0), (("no-such-command",), 2), (("done",), 2)]:
        code, names = imported(chain.path, *args)
        assert code == want, args
        assert not offending(names, NO_REPOSITORY + HEAVY), (args, sorted(offending(names, NO_REPOSITORY)))


def test_version_is_the_installed_distributions() -> None:
    """`--version` reads `flowgit.__version__` (no package metadata at start-up): the two agree."""
    from importlib.metadata import version

    proc = subprocess.run([sys.executable, "-m", "flowgit", "--version"], capture_output=True, text=True,
                          check=True)
    assert proc.stdout == f"flowgit, version {version('flowgit')}\n"


def test_the_merge_driver_loads_only_the_merge(tmp_path: Path) -> None:
    """git runs the merge driver once per conflicting log during a merge: it starts small."""
    base, ours, theirs = (tmp_path / n for n in ("base", "ours", "theirs"))
    line = '{"id":"01J0000000000000000000000%s","type":"task.note","plan":"p","task":"t","actor":"a",' \
           '"at":"2026-01-01T00:00:0%sZ","clock":%s,"data":{}}\n'
    base.write_text(line % ("0", "0", "1"))
    ours.write_text(base.read_text() + line % ("1", "1", "2"))
    theirs.write_text(base.read_text() + line % ("2", "2", "3"))
    code, names = imported(tmp_path, "merge-driver", str(base), str(ours), str(theirs))
    assert code == 0
    assert len(ours.read_text().splitlines()) == 3
    assert not offending(names, NO_REPOSITORY), sorted(offending(names, NO_REPOSITORY))


# ----- the table of commands (cli/main.py) ------------------------------------------------------

def test_the_table_names_each_command_by_its_family_with_its_own_help() -> None:
    import importlib

    import click

    from flowgit.cli.main import COMMANDS

    families = {family for family, _ in COMMANDS.values()}
    seen: dict[str, click.Command] = {}
    for family in sorted(families):
        group = click.Group()
        importlib.import_module(f"flowgit.cli.{family}_cli").register(group)
        assert sorted(group.commands) == sorted(n for n, (f, _) in COMMANDS.items() if f == family), family
        seen.update(group.commands)
    assert sorted(seen) == sorted(COMMANDS)
    for name, cmd in seen.items():
        listed = COMMANDS[name][1]
        assert cmd.hidden == (not listed), name
        if cmd.hidden:
            continue
        for limit in (20, 45, 60, 94, 300):
            assert click.Command(name, help=listed).get_short_help_str(limit) == cmd.get_short_help_str(limit), \
                (name, limit, "the table's help is not the first paragraph of the command's docstring")


@pytest.mark.parametrize("columns", ["60", "100"])
def test_help_from_the_table_is_clicks_own_listing(columns: str) -> None:
    """`flowgit --help` from the table equals what click prints once every command is imported."""
    env = {**os.environ, "COLUMNS": columns}
    lazy = subprocess.run([sys.executable, "-m", "flowgit", "--help"], capture_output=True, text=True,
                          env=env, check=True).stdout
    eager = subprocess.run([sys.executable, "-c", (
        "import click, sys\n"
        "from flowgit.cli.main import COMMANDS, cli, main\n"
        "for name in COMMANDS: cli.get_command(None, name)\n"
        "cli.format_commands = lambda ctx, f: click.Group.format_commands(cli, ctx, f)\n"
        "sys.exit(main(['--help']))\n")], capture_output=True, text=True, env=env, check=True).stdout
    assert lazy == eager
    assert "merge-driver" not in lazy and "  done " in lazy and "  setup " in lazy


def test_the_entry_point_leaves_the_collector_on_with_the_imports_frozen() -> None:
    """The collector is off only while the CLI imports: `watch`, `mcp` and `run` live for hours."""
    proc = subprocess.run([sys.executable, "-c", "import gc, flowgit.main; "
                           "print(gc.isenabled(), gc.get_freeze_count() > 1000)"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["True", "True"]
