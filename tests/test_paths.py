"""Nothing outside the repository, no symlink followed (issue 13): task `files:` stay inside the
repository, ids never name one file twice (case) or a Windows device, an executor template
never puts task text into a script, `run` never writes its log through a symlink, and
`doctor --fix` never commits what it reports or has not validated.

Each family is driven through real commands in real repositories: validate, the pre-commit
hook, and the commands that load the plan or the config give the same one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Repo, init_repo

from flowgit.core.model import BUILTIN_EXECUTORS, PATH_RULE, path_problem
from flowgit.core.scripts import script_placeholders
from flowgit.errors import FlowError
from flowgit.runner.executors import BUILTIN
from flowgit.runner.logfiles import open_log


def hand_plan(repo: Repo, plan_id: str, body: str) -> Path:
    """A plan written by hand, as a collaborator's branch brings it (not through flowgit)."""
    return repo.write(f".flow/plans/{plan_id}/plan.yaml", f"id: {plan_id}\ntitle: {plan_id}\n{body}")


def refused_alike(repo: Repo, *commands: tuple[str, ...]) -> str:
    """validate and every command given fail with exit 1 and one and the same first line."""
    res = repo.run("validate")
    assert res.code == 1, res.out + res.err
    first = res.err.splitlines()[0]
    assert "Traceback" not in res.err
    for args in commands:
        other = repo.run(*args)
        assert other.code == 1, (args, other.out, other.err)
        assert other.err.strip().splitlines() == [f"flowgit: error: {first}"], (args, other.err)
    return first


def hook_refuses(repo: Repo, *paths: str) -> str:
    repo.git("add", *paths)
    proc = subprocess.run(["git", "commit", "-q", "-m", "from a branch"], cwd=repo.path,
                          capture_output=True, text=True)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    repo.git("reset", "-q")
    return proc.stderr


# ----- files: entries ---------------------------------------------------------------------------

OUTSIDE = [
    ("absolute", "/etc/passwd"),
    ("parent", "../outside.txt"),
    ("parent-inside", "src/../../outside.txt"),
    ("parent-last", "src/.."),
    ("backslash", "src\\\\..\\\\..\\\\outside.txt"),
    ("backslash-plain", "src\\\\app.py"),
    ("drive", "C:/Windows/system.ini"),
    ("drive-relative", "c:outside"),
    ("nul", "src/a\\0b"),
    ("newline", "src/a\\nb"),
    ("git-dir", ".git/hooks/pre-commit"),
    ("git-dir-case", "sub/.GIT/config"),
    ("windows-dotdot-space", "src/.. /.. /outside.txt"),
    ("windows-three-dots", ".../outside.txt"),
    ("windows-git-dot", ".git./hooks/pre-commit"),
    ("windows-git-short-name", "GIT~1/hooks/pre-commit"),
    ("empty", ""),
]


@pytest.mark.parametrize("path", [p for _, p in OUTSIDE], ids=[n for n, _ in OUTSIDE])
def test_files_outside_the_repository_are_refused(repo: Repo, path: str) -> None:
    hand_plan(repo, "p", f'tasks:\n  - id: A\n    title: a\n    files: ["src/ok.py", "{path}"]\n')
    first = refused_alike(repo, ("status", "p"), ("next", "p"), ("claim", "p", "--worker", "w"),
                          ("graph", "p"), ("plan", "show", "p"))
    assert first.startswith(".flow/plans/p/plan.yaml:6: tasks[0].files[1]: invalid path ")
    assert first.endswith(PATH_RULE)
    assert "plan.yaml" in hook_refuses(repo, ".flow")
    # and through flowgit itself: nothing is written
    before = repo.commits()
    src = repo.path.parent / "q.yaml"
    src.write_text(f'id: q\ntitle: q\ntasks:\n  - id: A\n    title: a\n    files: ["{path}"]\n')
    res = repo.run("plan", "new", "q", "--from", str(src))
    assert res.code == 1 and "invalid path" in res.err and repo.commits() == before, res.err


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a\\b", "C:/x", ".git/config", ""])
def test_task_add_refuses_a_file_outside(repo: Repo, path: str) -> None:
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: A, title: a}\n")
    before = repo.commits()
    res = repo.run("task", "add", "p", "B", "--title", "b", "--file", path)
    assert res.code == 1 and "invalid path" in res.err and "Traceback" not in res.err, res.err
    assert repo.commits() == before and "B" not in (repo.path / ".flow/plans/p/plan.yaml").read_text()


@pytest.mark.parametrize("path", ["src/app.py", "docs/**/*.md", "./README.md", "a..b/c", ".github/x.yml",
                                  "gitdir/.gitignore", "dir with space/é.txt"])
def test_files_inside_the_repository_are_accepted(repo: Repo, path: str) -> None:
    repo.plan("p", f'id: p\ntitle: p\ntasks:\n  - id: A\n    title: a\n    files: ["{path}"]\n')
    repo.ok("validate")
    assert repo.ok("plan", "show", "p", "--json").json["definition"]["tasks"][0]["files"] == [path]
    repo.ok("claim", "p/A", "--worker", "w")


def test_path_rule_agrees_with_the_schema() -> None:
    schema = json.loads((Path(__file__).parents[1] / "schemas" / "plan.json").read_text())
    assert schema["$defs"]["path"]["description"] == f"a path inside the repository: {PATH_RULE}"
    import re

    pattern = re.compile(schema["$defs"]["path"]["pattern"][:-1] + r"\Z")
    for path in ["/a", "../a", "a/../b", "a\\b", "C:x", "a\x00", "a\x7f", ".git", "x/.Git/y", "", "ok/a.py",
                 "a..b", ".gitignore", "./a", "a/./b", ".", "..", "...", ".. ", "a/ /b", ".git.", ".git ",
                 "GIT~1", "git~1/x", ".github/x", "a/.../b", "a. /b", "...a", "a..", "x/.gitx", "a//b"]:
        assert (pattern.match(path) is None) == (path_problem(path) is not None), path


# ----- ids: case and Windows devices -------------------------------------------------------------

DEVICES = ["CON", "con", "Aux", "NUL", "nul.txt", "PRN.tar.gz", "COM1", "com9.log", "LPT1", "lpt9",
           "COM0", "T."]


@pytest.mark.parametrize("ident", DEVICES)
def test_a_device_name_is_refused_as_a_task_id(repo: Repo, ident: str) -> None:
    hand_plan(repo, "p", f'tasks:\n  - {{id: A, title: a}}\n  - {{id: "{ident}", title: b}}\n')
    first = refused_alike(repo, ("status", "p"), ("claim", "p", "--worker", "w"))
    assert f"invalid id {ident!r}" in first
    assert "Windows" in first
    hook_refuses(repo, ".flow")
    repo.git("clean", "-fdq", ".flow/plans/p")
    repo.plan("q", "id: q\ntitle: q\ntasks:\n  - {id: A, title: a}\n")
    before = repo.commits()
    res = repo.run("task", "add", "q", ident, "--title", "x")
    assert res.code == 2 and "Windows" in res.err and repo.commits() == before, res.err


@pytest.mark.parametrize("ident", ["CON", "aux.d", "Lpt3", "p."])
def test_a_device_name_is_refused_as_a_plan_id(repo: Repo, ident: str) -> None:
    before = repo.commits()
    res = repo.run("plan", "new", ident)
    assert res.code == 2 and "Windows" in res.err, res.err
    assert repo.commits() == before and not (repo.path / ".flow" / "plans" / ident).exists()


@pytest.mark.parametrize("ident", ["CONSOLE", "COM10", "AUXILIARY", "NULL", "LPT", "CON-1", "xCON", "T.1"])
def test_names_that_only_look_like_devices_are_fine(repo: Repo, ident: str) -> None:
    repo.plan("p", f'id: p\ntitle: p\ntasks:\n  - {{id: "{ident}", title: a}}\n')
    repo.ok("validate")
    repo.ok("claim", f"p/{ident}", "--worker", "w")


@pytest.mark.parametrize("ids", [("T-1", "t-1"), ("Build", "BUILD"), ("a.B", "A.b")])
def test_task_ids_that_differ_only_by_case_are_refused(repo: Repo, ids: tuple[str, str]) -> None:
    a, b = ids
    hand_plan(repo, "p", f"tasks:\n  - {{id: {a}, title: a}}\n  - {{id: {b}, title: b}}\n")
    first = refused_alike(repo, ("status", "p"), ("next", "p"), ("claim", "p", "--worker", "w"))
    assert "differ only by case" in first and repr(a) in first and repr(b) in first
    hook_refuses(repo, ".flow")


def test_a_checkpoint_and_a_task_that_differ_only_by_case_are_refused(repo: Repo) -> None:
    hand_plan(repo, "p", "tasks:\n  - {id: cp, title: a}\ncheckpoints:\n  - {id: CP, after: [cp]}\n")
    assert "differ only by case" in refused_alike(repo, ("status", "p"))


def test_task_add_refuses_an_id_that_differs_only_by_case(repo: Repo) -> None:
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: T-1, title: a}\n")
    before = repo.commits()
    res = repo.run("task", "add", "p", "t-1", "--title", "b")
    assert res.code == 1 and "differ only by case" in res.err, res.err
    assert repo.commits() == before


def test_plan_ids_that_differ_only_by_case_are_refused(repo: Repo) -> None:
    repo.plan("Web", "id: Web\ntitle: w\ntasks:\n  - {id: A, title: a}\n")
    before = repo.commits()
    res = repo.run("plan", "new", "web")
    assert res.code == 1 and "only by case" in res.err and repo.commits() == before, res.err
    # one that arrives by a branch: validate, the hook and the commands that load either refuse it
    hand_plan(repo, "WEB", "tasks:\n  - {id: A, title: a}\n")
    res = repo.run("validate")
    assert res.code == 1 and "plan ids 'WEB' and 'Web' differ only by case" in res.err, res.err
    for plan in ("Web", "WEB"):
        res = repo.run("status", plan)
        assert res.code == 1 and "differ only by case" in res.err, res.err
    assert "differ only by case" in hook_refuses(repo, ".flow/plans/WEB")


# ----- executor templates: no placeholder inside a script ------------------------------------------

SCRIPTS = {
    "sh-c": ["sh", "-c", "echo '{title}'"],
    "bin-sh": ["/bin/sh", "-c", "echo {task}"],
    "bash-lc": ["bash", "-lc", "echo {title}"],
    "bash-o": ["bash", "-o", "pipefail", "-c", "make {task}"],
    "bash-login": ["/usr/bin/bash", "--login", "-c", "echo {branch}"],
    "zsh": ["zsh", "-c", "cd {worktree} && make"],
    "dash-euc": ["dash", "-euc", "echo {plan}"],
    "fish": ["fish", "--command", "echo {title}"],
    "env-sh": ["env", "A=1", "sh", "-c", "echo {title}"],
    "env-S": ["/usr/bin/env", "-S", "sh -c 'echo {title}'"],
    "timeout-sh": ["timeout", "60", "sh", "-c", "claude -p '{prompt}'"],
    "busybox": ["busybox", "sh", "-c", "echo {title}"],
    "cmd": ["cmd", "/c", "echo", "{title}"],
    "cmd-exe": ["C:\\Windows\\System32\\cmd.exe", "/S", "/C", "echo {title}"],
    "powershell": ["powershell", "-Command", "Write-Host '{title}'"],
    "powershell-default": ["powershell.exe", "-NoProfile", "Write-Host {title}"],
    "pwsh-c": ["pwsh", "-c", "Write-Host {title}"],
    "python-c": ["python3", "-c", "print('{title}')"],
    "python-version": ["/usr/bin/python3.12", "-I", "-c", "print('{title}')"],
    "python-placeholder": ["{python}", "-c", "print('{title}')"],
    "node-e": ["node", "-e", "console.log('{title}')"],
    "node-eval": ["node", "--eval={title}"],
    "perl-ne": ["perl", "-ne", "print '{title}'"],
    "ruby": ["ruby", "-e", "puts '{title}'"],
    "php": ["php", "-r", "echo '{title}';"],
    "awk": ["awk", "BEGIN { print \"{title}\" }"],
    "ssh": ["ssh", "build-host", "make {task}"],
    "run-in-sh": ["sh", "-c", "{run}"],
    "su-c": ["su", "builder", "-c", "make {task}"],
    "flock-c": ["flock", "/tmp/lock", "-c", "echo {title}"],
    "git-alias": ["git", "-c", "alias.t=!echo {title}", "t"],
    "git-pager": ["git", "-c", "core.pager=less {title}", "log"],
    "parallel": ["parallel", "echo", "{title}", ":::", "1"],
    "tmux": ["tmux", "new-session", "-d", "claude -p {prompt}"],
    "vim-c": ["vim", "-c", "!echo {title}"],
    "vim-plus": ["nvim", "+!echo {title}"],
    "sed-e": ["sed", "-e", "s/x/{title}/e", "f"],
    "sed-script": ["sed", "-i", "s/x/{title}/", "f"],
    "wsl": ["wsl.exe", "echo", "{title}"],
    "expect": ["expect", "-c", "spawn {title}"],
    # interpreters no list names, judged by their options
    "xonsh": ["xonsh", "-c", "echo {title}"],
    "nu": ["nu", "-c", "{title}"],
    "julia": ["julia", "-e", "println(\"{title}\")"],
    "erl-eval": ["erl", "-noshell", "-eval", "{title}"],
    "guile": ["guile", "-c", "{title}"],
    "sbcl-eval": ["sbcl", "--eval={title}"],
    "ipython": ["ipython", "-c", "print('{title}')"],
    "script-qc": ["script", "-qc", "echo {title}", "/dev/null"],
    "xterm-e": ["xterm", "-e", "{title}"],
    "nix-shell": ["nix-shell", "--run", "make {task}"],
    "npx-c": ["npx", "-c", "echo {title}"],
    "npm-exec": ["npm", "exec", "-c", "echo {title}"],
    "gdb-ex": ["gdb", "-ex", "shell echo {title}"],
    "behind-timeout": ["timeout", "60", "xonsh", "-c", "{title}"],
}


@pytest.mark.parametrize("argv", list(SCRIPTS.values()), ids=list(SCRIPTS))
def test_a_placeholder_inside_a_script_is_refused(repo: Repo, argv: list[str]) -> None:
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: A, title: a}\n")
    cfg = repo.path / ".flow/config.yaml"
    cfg.write_text(cfg.read_text().replace("executors: {}", f"executors:\n  agent:\n    argv: {json.dumps(argv)}"))
    first = refused_alike(repo, ("status", "p"), ("claim", "p", "--worker", "w"),
                          ("run", "p", "-n", "1", "--executor", "agent"))
    assert first.startswith(".flow/config.yaml: executors.agent.argv[")
    assert "inside a script" in first and "docs/executors.md" in first
    assert "$FLOWGIT_" in first or "run:" in first or "FLOWGIT_PROMPT_FILE" in first
    hook_refuses(repo, ".flow/config.yaml")


SAFE = {
    "env-var": ["sh", "-c", 'echo "$FLOWGIT_TITLE"'],
    "positional": ["sh", "-c", 'printf "%s\\n" "$1"', "sh", "{title}"],
    "agent": ["claude", "-p", "{prompt}", "--permission-mode", "acceptEdits"],
    "module": ["{python}", "-m", "flowgit.demo_executor", "{prompt_file}"],
    "script-args": ["node", "agent.js", "-e", "{title}"],
    "python-script-c": ["python3", "tool.py", "-c", "{title}"],
    "bash-file": ["bash", "run.sh", "{title}"],
    "awk-file": ["awk", "-f", "prog.awk", "{prompt_file}"],
    "awk-braces": ["awk", "{print}", "{prompt_file}"],
    "pwsh-file": ["pwsh", "-File", "run.ps1", "{title}"],
    "git-message": ["git", "commit", "-m", "{title}", "-c", "{branch}"],
    "sed-file": ["sed", "-f", "edit.sed", "{prompt_file}"],
    "wsl-exec": ["wsl", "-e", "tool", "{title}"],
    "flock-prog": ["flock", "/tmp/lock", "tool", "{title}"],
    "grep-e": ["grep", "-e", "{title}", "notes.txt"],
    "tool-flag": ["mytool", "--title", "{title}", "-m", "{prompt_file}"],
    "aider": ["aider", "--message-file", "{prompt_file}", "--yes"],
    "env-node-script": ["env", "node", "agent.js", "-e", "{title}"],
    "unknown-after-dashdash": ["mytool", "--", "-c", "{title}"],
}


@pytest.mark.parametrize("argv", list(SAFE.values()), ids=list(SAFE))
def test_placeholders_as_data_are_accepted(repo: Repo, argv: list[str]) -> None:
    cfg = repo.path / ".flow/config.yaml"
    cfg.write_text(cfg.read_text().replace("executors: {}", f"executors:\n  agent:\n    argv: {json.dumps(argv)}"))
    repo.ok("validate")
    assert script_placeholders(argv) == []


def test_builtin_executors_are_what_the_config_check_knows() -> None:
    assert set(BUILTIN) == BUILTIN_EXECUTORS
    for executor in BUILTIN.values():
        assert script_placeholders(executor.argv) == []


def test_task_text_reaches_a_script_through_the_environment_only(repo: Repo, tmp_path: Path) -> None:
    """The way docs/executors.md shows: a title full of shell syntax stays text."""
    out = tmp_path / "seen.txt"
    argv = ["sh", "-c", 'printf "%s|%s|%s" "$FLOWGIT_TITLE" "$FLOWGIT_ATTEMPT" "$FLOWGIT_BRANCH" > "$1"',
            "sh", str(out)]
    cfg = repo.path / ".flow/config.yaml"
    cfg.write_text(cfg.read_text().replace("executors: {}", f"executors:\n  agent:\n    argv: {json.dumps(argv)}")
                   .replace("default_executor: shell", "default_executor: agent"))
    repo.git("commit", "-qam", "agent")
    repo.ok("trust")  # an executor written by hand runs once trusted in this clone
    title = "$(touch pwned) `touch pwned2`; touch pwned3 '\""
    repo.plan("p", f"id: p\ntitle: p\ntasks:\n  - id: A\n    title: {json.dumps(title)}\n")
    res = repo.proc("run", "p", "-n", "1", timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert out.read_text() == f"{title}|1|flow/p/A"
    assert not list(repo.path.rglob("pwned*")) and not list(tmp_path.rglob("pwned*"))


# ----- run never writes through a symlink --------------------------------------------------------

def _plan_for_run(repo: Repo, tmp_path: Path) -> Path:
    script = tmp_path / "exec.py"
    script.write_text("print('executor output')\n")
    cfg = repo.path / ".flow/config.yaml"
    argv = [sys.executable, str(script)]
    cfg.write_text(cfg.read_text().replace("executors: {}", f"executors:\n  agent:\n    argv: {json.dumps(argv)}")
                   .replace("default_executor: shell", "default_executor: agent"))
    repo.git("commit", "-qam", "agent")
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: A, title: a}\n")
    target = tmp_path / "victim.txt"
    target.write_text("precious\n")
    return target


@pytest.mark.parametrize("where", ["log", "plan-dir", "logs-dir"])
def test_run_refuses_a_committed_symlink_in_the_log_path(repo: Repo, tmp_path: Path, where: str) -> None:
    target = _plan_for_run(repo, tmp_path)
    logs = repo.path / ".flow/logs"
    if where == "log":
        (logs / "p").mkdir(parents=True)
        os.symlink(target, logs / "p" / "A.1.log")
    elif where == "plan-dir":
        logs.mkdir()
        os.symlink(tmp_path, logs / "p")
        os.symlink(target, tmp_path / "A.1.log")
    else:
        (tmp_path / "elsewhere" / "p").mkdir(parents=True)
        os.symlink(target, tmp_path / "elsewhere" / "p" / "A.1.log")
        os.symlink(tmp_path / "elsewhere", logs)
    repo.git("add", "-f", ".flow/logs")
    repo.git("commit", "-q", "--no-verify", "-m", "a link from a branch")
    before = repo.commits()
    res = repo.proc("run", "p", "-n", "1", timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "is a symlink" in lines[0] and "never writes through" in lines[0], res.stderr
    assert target.read_text() == "precious\n"
    assert repo.commits() == before  # nothing claimed


def test_a_log_swapped_for_a_symlink_is_never_written_through(repo: Repo, tmp_path: Path) -> None:
    target = tmp_path / "victim.txt"
    target.write_text("precious\n")
    log = repo.path / ".flow/logs/p/A.1.log"
    log.parent.mkdir(parents=True)
    os.symlink(target, log)
    with pytest.raises(FlowError, match="is a symlink"):
        open_log(repo.path, log)
    log.unlink()
    os.symlink(tmp_path, repo.path / ".flow/logs/q")
    with pytest.raises(FlowError, match=r"\.flow/logs/q is a symlink"):
        open_log(repo.path, repo.path / ".flow/logs/q/A.1.log")
    assert target.read_text() == "precious\n" and not (tmp_path / "A.1.log").exists()
    with open_log(repo.path, repo.path / ".flow/logs/r/A.1.log") as out:
        out.write(b"ok\n")
    assert (repo.path / ".flow/logs/r/A.1.log").read_bytes() == b"ok\n"


# ----- doctor --fix commits only what it validated -----------------------------------------------

@pytest.mark.format1
def test_doctor_fix_never_commits_a_symlink(repo: Repo, tmp_path: Path) -> None:
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: A, title: a}\n")
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0\n")
    os.symlink(secret, repo.path / ".flow/plans/p/events/A.jsonl")
    before = repo.commits()
    res = repo.run("doctor", "--fix", "--json")
    assert res.code == 1
    problems = res.json["problems"]
    link = [p for p in problems if p["path"] == ".flow/plans/p/events/A.jsonl"]
    assert link and not any(p["fixed"] for p in link), problems
    assert repo.commits() == before
    assert repo.git("ls-files", ".flow/plans/p/events") == ".flow/plans/p/events/_plan.jsonl"


def _event(plan: str, task: str, etype: str = "task.claimed", **over: object) -> str:
    ev = {"id": "01J00000000000000000000000", "type": etype, "plan": plan, "task": task, "actor": "x",
          "at": "2026-01-01T00:00:00Z", "clock": 1, "data": {"lease_until": "2026-01-01T00:15:00Z"}}
    ev.update(over)
    return json.dumps(ev) + "\n"


@pytest.mark.parametrize("case", ["bad-line", "wrong-task", "unknown-task", "not-json"])
def test_doctor_fix_never_commits_a_hand_made_log_it_did_not_validate(repo: Repo, case: str) -> None:
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: A, title: a}\n")
    name, text = {
        "bad-line": ("A", _event("p", "A", type="task.whatever", clock=-1)),
        "wrong-task": ("A", _event("p", "B")),
        "unknown-task": ("Z", _event("p", "Z")),
        "not-json": ("A", "{not json\n"),
    }[case]
    log = repo.write(f".flow/plans/p/events/{name}.jsonl", text)
    before = repo.commits()
    res = repo.run("doctor", "--fix", "--json")
    assert res.code == 1, res.out
    assert repo.commits() == before
    assert repo.git("ls-files", str(log.relative_to(repo.path))) == ""
    mine = [p for p in res.json["problems"] if p["path"] == f".flow/plans/p/events/{name}.jsonl"]
    assert mine and not any(p["fixed"] for p in mine), res.json


def test_doctor_fix_still_commits_events_a_crash_left_uncommitted(repo: Repo) -> None:
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: A, title: a}\n")
    repo.write(".flow/plans/p/events/A.jsonl", _event("p", "A"))
    before = repo.commits()
    res = repo.run("doctor", "--fix", "--json")
    assert res.code == 0, res.out
    assert repo.commits() == before + 1
    assert repo.git("ls-files", ".flow/plans/p/events/A.jsonl") == ".flow/plans/p/events/A.jsonl"


# ----- doctor says once what the new rules refuse here ---------------------------------------------

def test_doctor_lists_every_case_the_new_rules_refuse_with_its_fix(repo: Repo) -> None:
    hand_plan(repo, "p", "tasks:\n"
              "  - {id: T-1, title: a, files: [/etc/passwd, ok.py, ../x]}\n"
              "  - {id: t-1, title: b}\n"
              "  - {id: nul.txt, title: c}\n")
    hand_plan(repo, "P", "tasks: []\n")
    hand_plan(repo, "AUX", "tasks: []\n")
    cfg = repo.path / ".flow/config.yaml"
    cfg.write_text(cfg.read_text().replace(
        "executors: {}", 'executors:\n  x:\n    argv: [bash, -lc, "echo {title} {task}"]'))
    before = repo.commits()
    res = repo.run("doctor", "--json")
    assert res.code == 1
    rules = [(p["path"], p["message"]) for p in res.json["problems"] if p["kind"] == "new_rule"]
    expected = [
        (".flow/config.yaml", "executors.x.argv[2]: {title} is inside a script that bash runs: read $FLOWGIT_TITLE"),
        (".flow/config.yaml", "executors.x.argv[2]: {task} is inside a script that bash runs: read $FLOWGIT_TASK"),
        (".flow/plans/AUX/plan.yaml", "plan id 'AUX': AUX is a Windows device name"),
        (".flow/plans/p/plan.yaml", "task T-1: files[0] '/etc/passwd' is outside the repository"),
        (".flow/plans/p/plan.yaml", "task T-1: files[2] '../x' is outside the repository"),
        (".flow/plans/p/plan.yaml", "id 'nul.txt': nul is a Windows device name"),
        (".flow/plans/p/plan.yaml", "task or checkpoint ids 'T-1' and 't-1' differ only by case"),
        (".flow/plans/P/plan.yaml", "plan ids 'P' and 'p' differ only by case"),
    ]
    assert len(rules) == len(expected), rules
    for (path, start), (got_path, got) in zip(expected, rules):
        assert got_path == path and got.startswith(start), (path, got)
    text = repo.run("doctor").out
    assert text.count("[new rule]") == len(expected)
    assert "read $FLOWGIT_TITLE in the script instead" in text and "rename one" in text
    # --fix repairs none of it (only a person can), and commits nothing
    assert repo.run("doctor", "--fix").code == 1 and repo.commits() == before


def test_doctor_is_quiet_about_the_new_rules_when_nothing_breaks_them(repo: Repo) -> None:
    repo.plan("p", 'id: p\ntitle: p\ntasks:\n  - {id: A, title: a, files: [src/a.py]}\n')
    res = repo.run("doctor", "--json")
    assert not [p for p in res.json["problems"] if p["kind"] == "new_rule"], res.json


# ----- a plan log that is a symlink holds its plan; a plan directory no id can name is said ----------

@pytest.mark.format1
def test_a_plan_log_that_is_a_symlink_holds_the_plan_instead_of_stopping_every_command(repo: Repo) -> None:
    """As a task's log does: the plan is held (its tasks blocked), named once per command; the
    other plans and the listings go on; decisions about the plan refuse; nothing is read
    through the link nor written."""
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - {id: A, title: a}\n")
    repo.plan("q", "id: q\ntitle: Q\ntasks:\n  - {id: A, title: a}\n")
    repo.ok("submit", "p")
    repo.ok("submit", "q")
    log = repo.path / ".flow/plans/p/events/_plan.jsonl"
    log.unlink()
    os.symlink("/etc/passwd", log)
    repo.git("add", "-A")
    repo.git("commit", "-q", "--no-verify", "-m", "from a branch")
    head = repo.git("rev-parse", "HEAD")
    rel = ".flow/plans/p/events/_plan.jsonl"
    res = repo.run("--json", "status", "p")
    assert res.code == 0 and res.json["unreadable"] == [rel], res
    assert {t["id"]: t["state"] for t in res.json["tasks"]} == {"A": "blocked"}
    assert [x for x in res.err.splitlines() if rel in x] == [res.err.strip()] and "held" in res.err
    for args in (("status",), ("plan", "list"), ("next",)):
        res = repo.run(*args)
        assert "Traceback" not in res.err and rel in res.err and res.err.count(rel) == 1, (args, res.err)
    assert repo.ok("--json", "next").json["task"] == "q/A"  # the other plan goes on
    res = repo.run("claim", "p", "--worker", "w")
    assert res.code == 3 and "held by .flow/plans/p/events/_plan.jsonl, a symlink" in res.err
    for args in (("approve", "p", "--reviewer", "r"), ("halt", "p", "--reason", "x"), ("checkpoint", "p")):
        res = repo.run(*args)
        assert res.code == 1 and res.err.count("\n") == 1 and f"plan p is held by {rel}, a symlink" in res.err, (args, res.err)
    assert repo.run("validate").code == 1
    assert repo.git("rev-parse", "HEAD") == head and repo.git("status", "--porcelain") == ""
    assert "root:" not in repo.run("events", "p").out


@pytest.mark.parametrize("name", ["CON", "aux", "NUL.txt", "COM1", "lpt9", "has space", "-x", "a..b", "end."])
def test_a_plan_directory_no_id_can_name_is_said_not_skipped(repo: Repo, name: str) -> None:
    """status, plan list and the board name a plan directory they leave out, with why;
    validate refuses it."""
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - {id: A, title: a}\n")
    hand_plan(repo, name, "tasks:\n  - {id: A, title: a}\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "--no-verify", "-m", "from a branch")
    for args in (("status",), ("plan", "list")):
        res = repo.run(*args)
        assert res.code == 0, res
        said = [x for x in res.err.splitlines() if f".flow/plans/{name}" in x]
        assert len(said) == 1 and "left out" in said[0], (args, res.err)
    assert repo.run("validate").code == 1


def test_a_state_branch_log_made_a_symlink_never_frees_a_claimed_task(tmp_path: Path) -> None:
    """Format 2: a fetched flow/state where a claimed task's log became a symlink entry (mode
    120000) is read as a blob (never followed; the state branch is never checked out), so the
    sync sees the claim dropped and merges by union instead of fast-forwarding: the claim
    stays and a second worker cannot take the task. (It was skipped as no log at all: the
    fast-forward dropped the claim and `claim` handed the task to a second worker.)"""
    from helpers import git as run_git

    from flowgit.store.state import log_path

    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed = init_repo(tmp_path / "seed", "2")
    seed.plan("P", "id: P\ntitle: P\ntasks:\n  - {id: T1, title: one}\n  - {id: T2, title: two}\n")
    seed.ok("submit", "P")
    seed.git("remote", "add", "origin", str(bare))
    seed.git("push", "-q", "origin", "main", "flow/state")
    clones = []
    for name in ("a", "b"):
        subprocess.run(["git", "clone", "-q", str(bare), str(tmp_path / name)], check=True, capture_output=True)
        run_git(tmp_path / name, "config", "user.email", f"{name}@example.com")
        run_git(tmp_path / name, "config", "user.name", name)
        clones.append(Repo(tmp_path / name))
        clones[-1].git("branch", "-q", "flow/state", "origin/flow/state")
    a, b = clones
    a.ok("claim", "P/T1", "--worker", "wa")
    a.ok("sync")
    b.ok("sync")
    path = log_path("P", "T1")
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=b.path, input="/etc/passwd",
                          capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "idx")}
    subprocess.run(["git", "read-tree", "flow/state"], cwd=b.path, env=env, check=True)
    subprocess.run(["git", "update-index", "--cacheinfo", f"120000,{blob},{path}"], cwd=b.path, env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=b.path, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    b.git("update-ref", "refs/heads/flow/state", b.git("commit-tree", tree, "-p", "flow/state", "-m", "link"))
    b.git("push", "-q", "origin", "flow/state")
    assert a.ok("sync", "--json").json["merge"] == "merged"  # not fast-forwarded: it dropped the claim
    res = a.run("claim", "P/T1", "--worker", "thief")
    # the claim stands (the link's text, carried as a line, holds the task besides)
    assert res.code == 1 and ("claimed by wa" in res.err or "it is blocked: unreadable event" in res.err), res
    assert "task.claimed" in a.git("show", f"flow/state:{path}")
    assert a.git("ls-tree", "flow/state", "--", path).split()[0] == "100644"
