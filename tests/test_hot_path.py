"""cli/hot.py reads the hot commands' plain command lines without click (ADR 0007): it must take
exactly what click takes, the same way, and leave everything else to click. Held here three
ways: its table against the click commands of tasks_cli.py, its reading of lines that must go to
click, and whole command sequences run both ways on twin repositories with the same output."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from helpers import Repo, make_git_repo

from flowgit.cli import hot, options, tasks_cli

CHAIN = """\
id: chain
title: Chain
tasks:
  - id: a
    title: A
  - id: b
    title: B
    depends_on: [a]
  - id: c
    title: C
"""


def click_command(name: str) -> click.Command:
    group = click.Group()
    tasks_cli.register(group)
    return group.commands[name]


@pytest.mark.parametrize("name", sorted(hot.SPECS))
def test_the_table_is_the_click_commands(name: str) -> None:
    cmd = click_command(name)
    arguments, opts = hot.SPECS[name]
    assert [(p.name, p.required) for p in cmd.params if isinstance(p, click.Argument)] == list(arguments)
    seen = {}
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.name in ("json_", "help"):
            continue
        assert len(p.opts) == 1 and not p.secondary_opts, p.opts
        kind = (hot.FLAG if p.is_flag else hot.MANY if p.multiple else hot.NEEDED if p.required
                else hot.VALUE)
        seen[p.opts[0]] = (p.name, kind)
        want = {"worker": options.ActorName, "lease": options.Seconds}.get(p.name or "")
        if want is not None:
            assert isinstance(p.type, want), p.name
        elif p.name == "limit":
            assert p.type.name == "integer"
        else:
            assert p.type.name in ("text", "boolean"), (p.name, p.type)
        assert p.envvar is None and not p.callback, p.name
    assert seen == opts
    assert name in tasks_cli._here.commands and name in hot.BODIES


def test_every_command_of_the_family_but_graph_is_hot() -> None:
    assert sorted(hot.SPECS) == sorted(set(tasks_cli._here.commands) - {"graph"})


@pytest.mark.parametrize("value", ["1", "0", "-1", "1e9", "3.1536e8", "315360001", "nan", "inf", " 5 ",
                                   "5_0", "x", "", "0x10", "1e-300", "60"])
def test_seconds_takes_what_the_option_takes(value: str) -> None:
    try:
        expected: float | None = options.Seconds().convert(value, None, None)
    except click.BadParameter:
        expected = None
    assert hot.seconds(value) == expected


@pytest.mark.parametrize("args", [
    [], ["--help"], ["done", "--help"], ["done", "-h"], ["--version"], ["graph", "p"], ["task", "add"],
    ["done"], ["done", "a", "b"], ["done", "p/a", "--worker=w"], ["done", "p/a", "--note", "-x"],
    ["done", "p/a", "--worker"], ["done", "p/a", "--worker", "w", "--worker", "v"], ["done", "--", "p/a"],
    ["done", "-", "--worker", "w"], ["done", "p/a", "--repo", "x"], ["done", "p/a", "--nope"],
    ["fail", "p/a"], ["claim", "p", "--lease", "x"], ["claim", "p", "--lease", "0"],
    ["status", "--limit", "x"], ["status", "--limit", "1.5"], ["--repo"], ["--repo", "-x", "status"],
    ["--nope", "status"], ["-h", "status"], ["status", "--all", "--all"], ["next", "a", "b"],
    ["events"], ["--json"], ["status", "--limit", "-2"],
])
def test_lines_click_must_read_are_left_to_it(args: list[str]) -> None:
    assert hot.read(args) is None


def test_a_repo_that_is_a_file_is_left_to_click(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    assert hot.read(["--repo", str(tmp_path / "f"), "status"]) is None
    assert hot.read(["--repo", str(tmp_path), "status"]) == hot.Line("status", tmp_path, {
        "plan_id": None, "limit": None, "everything": False})
    assert hot.read(["--repo", str(tmp_path / "absent"), "next"]) == hot.Line("next", tmp_path / "absent",
                                                                              {"plan_id": None})


def test_shell_completion_is_left_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_FLOWGIT_COMPLETE", "bash_complete")
    assert hot.read(["status"]) is None


def test_an_argument_that_is_not_text_is_left_to_click(tmp_path: Path) -> None:
    args: list[Any] = ["--repo", tmp_path, "status"]
    assert hot.read(args) is None


PLAIN = [["done", "p/a"], ["done", "--files-modified", "x", "p/a", "--json", "--note", "", "--worker", "w",
                          "--files-modified", "y"],
         ["claim"], ["claim", "p", "--sync", "--lease", "90", "--context"], ["claim", "--lease", "1e3", "p/a"],
         ["status"], ["status", "p", "--limit", " 3 ", "--all"], ["next"],
         ["next", "p"], ["events", "p"], ["events", "p", "a", "--from-git"],
         ["fail", "p/a", "--error", "e"], ["fail", "--skip", "p/a", "--error", "", "--retry", "--worker", "w"],
         ["fail", "p/a", "--error", "e", "--skip-dependents"],
         *[[name, "p/a"] for name in ("start", "heartbeat", "release", "retry")],
         *[[name, "--worker", "w w", "p/a"] for name in ("start", "heartbeat", "release", "retry")]]


@pytest.mark.parametrize("args", PLAIN)
def test_click_reads_a_plain_line_as_the_hot_path_does(args: list[str]) -> None:
    from flowgit.cli.app import App

    ctx = click_command(args[0]).make_context(args[0], list(args[1:]), obj=App())
    line = hot.read(args)
    assert line is not None and line.params == ctx.params


def test_plain_lines_are_read_as_click_reads_them() -> None:
    line = hot.read(["--json", "done", "--files-modified", "x", "p/a", "--json", "--note", "", "--worker",
                     "w", "--files-modified", "y"])
    assert line == hot.Line("done", None, {"ref": "p/a", "worker": "w", "note": "", "files": ("x", "y")})
    assert hot.read(["claim", "--sync", "--lease", "90", "--context"]) == hot.Line("claim", None, {
        "target": None, "worker": None, "lease": 90.0, "sync_": True, "context": True})
    assert hot.read(["status", "p", "--limit", " 3 ", "--all"]) == hot.Line("status", None, {
        "plan_id": "p", "limit": 3, "everything": True})
    assert hot.read(["fail", "p/a", "--error", "e", "--skip"]) == hot.Line("fail", None, {
        "ref": "p/a", "worker": None, "error": "e", "retry": False, "skip": True, "skip_dependents": False})
    assert hot.read(["events", "p", "a", "--from-git"]) == hot.Line("events", None, {
        "plan_id": "p", "task_id": "a", "from_git": True})
    for name in ("start", "heartbeat", "release", "retry"):
        assert hot.read([name, "p/a", "--worker", "w"]) == hot.Line(name, None, {"ref": "p/a", "worker": "w"})


# ----- the same commands both ways ----------------------------------------------------------------

STEPS: list[tuple[str, ...]] = [
    ("status",), ("status", "chain", "--json"), ("status", "chain", "--limit", "1", "--all"),
    ("next", "chain"), ("next", "chain", "--json"), ("next", "nosuch"),
    ("claim", "chain", "--worker", "w1", "--json"), ("claim", "chain/b", "--worker", "w2"),
    ("heartbeat", "chain/a", "--worker", "w1"), ("start", "chain/a", "--worker", "w1", "--json"),
    ("done", "chain/a", "--worker", "w2"), ("done", "chain/a", "--worker", "a\tb"),
    ("done", "chain/a", "--worker", "w1", "--note", "n", "--files-modified", "x", "--files-modified", "y"),
    ("claim", "chain/b", "--worker", "w1", "--lease", "60"), ("claim", "chain", "--lease", "-3"),
    ("fail", "chain/b", "--worker", "w1", "--error", "boom", "--retry", "--skip"),
    ("fail", "chain/b", "--worker", "w1", "--error", "boom"), ("retry", "chain/b"),
    ("claim", "chain/b", "--worker", "w1"), ("release", "chain/b", "--worker", "w1", "--json"),
    ("--json", "done", "chain/zz", "--worker", "w1"), ("done", "chain/zz", "--worker", "w1"),
    ("events", "chain", "a"), ("events", "chain", "--json"), ("events", "nosuch"),
    ("claim", "chain", "--worker", "w1", "--context"), ("status", "--limit", "x"),
    ("done", "chain/c", "--worker", "w1", "--json"), ("status", "chain"),
]

SAME = [(re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"), "<time>"),
        (re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b"), "<ulid>"), (re.compile(r"\b[0-9a-f]{7,40}\b"), "<sha>"),
        (re.compile(r"\b\d+(\.\d+)?s\b|\b\d+ (seconds?|minutes?|s)\b|\bin \d+m\b"), "<span>")]


def same(text: str, root: Path) -> str:
    text = text.replace(str(root), "<repo>")
    for pattern, to in SAME:
        text = pattern.sub(to, text)
    return text


def twin(tmp_path: Path, name: str, fmt: str) -> Repo:
    r = Repo(make_git_repo(tmp_path / name))
    r.ok("init", "--format", fmt)
    r.plan("chain", CHAIN)
    return r


@pytest.mark.parametrize("fmt", ["2", "1"])
def test_the_hot_path_and_click_say_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    fast, slow = twin(tmp_path, "fast", fmt), twin(tmp_path, "slow", fmt)
    taken = []
    read = hot.read

    def counted(args: list[str]) -> Any:
        line = read(args)
        taken.append(line is not None)
        return line

    for step in STEPS:
        monkeypatch.setattr(hot, "read", counted)
        a = fast.run(*step)
        monkeypatch.setattr(hot, "read", lambda args: None)
        b = slow.run(*step)
        assert (a.code, same(a.out, fast.path), same(a.err, fast.path)) == \
               (b.code, same(b.out, slow.path), same(b.err, slow.path)), step
    assert taken.count(True) == len(STEPS) - 2  # `--lease -3` and `--limit x` go to click
    monkeypatch.setattr(hot, "read", read)
    assert [e["type"] for e in fast.ok("events", "chain", "--json").json["events"]] == \
           [e["type"] for e in slow.ok("events", "chain", "--json").json["events"]]


@pytest.mark.parametrize("raised, code", [(KeyboardInterrupt, 130), (EOFError, 130)])
def test_ctrl_c_is_said_as_click_says_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         raised: type[BaseException], code: int) -> None:
    from flowgit.cli.commands import status

    r = twin(tmp_path, "r", "2")

    def interrupted(*_: Any) -> int:
        raise raised()

    monkeypatch.setattr(status, "next_task", interrupted)
    a = r.run("next", "chain")
    monkeypatch.setattr(hot, "read", lambda args: None)
    b = r.run("next", "chain")
    assert a == b and a.code == code and "aborted" in a.err


def test_a_closed_pipe_ends_both_with_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowgit.cli.commands import status
    from flowgit.cli.main import main

    r = twin(tmp_path, "r", "2")

    def closed(*_: Any) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(status, "next_task", closed)
    codes = []
    for hot_read in (hot.read, lambda args: None):
        monkeypatch.setattr(hot, "read", hot_read)
        monkeypatch.setattr(sys, "stdout", sys.stdout)  # both wrap the streams: put them back
        monkeypatch.setattr(sys, "stderr", sys.stderr)
        with pytest.raises(SystemExit) as exit_:
            main(["--repo", str(r.path), "next", "chain"])
        codes.append(exit_.value.code)
    assert codes == [1, 1]


def test_the_hot_commands_never_import_click(tmp_path: Path) -> None:
    r = twin(tmp_path, "r", "2")
    for args in [("status", "chain", "--json"), ("claim", "chain", "--worker", "w1"),
                 ("done", "chain/a", "--worker", "w1"), ("status",)]:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "flowgit", "--repo", str(r.path), *args],
                              capture_output=True, text=True, check=True)
        names = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert names and not {n for n in names if n == "click" or n.startswith("click.")}, args
    proc = subprocess.run([sys.executable, "-m", "flowgit", "--repo", str(r.path), "done", "--help"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("Usage: flowgit done [OPTIONS] TASKREF")


def test_a_warm_command_compiles_no_common_log_pattern(tmp_path: Path) -> None:
    """logfold's pattern of a common log (~3 ms to compile) is for cold reads of many logs."""
    r = twin(tmp_path, "r", "2")
    r.proc("status", "chain", "--json", check=True)  # the cold read
    r.ok("claim", "chain/a", "--worker", "w1")
    code = ("import sys\nfrom flowgit.cli.main import main\nfrom flowgit.core import logfold\n"
            "assert main(sys.argv[1:]) == 0\nprint(len(logfold._COMMON))\n")
    for args in (("status", "chain", "--json"), ("done", "chain/a", "--worker", "w1")):
        proc = subprocess.run([sys.executable, "-c", code, "--repo", str(r.path), *args], capture_output=True,
                              text=True, check=True)
        assert proc.stdout.splitlines()[-1] == "0", args
