"""Follow-ups to the review of issue 13: a config `remote:` that is not a remote name stops every
command as validate does; `sync --remote` refuses what git would not take for a remote name and
never echoes it inside a suggested command; the checkpoint view says when the base commit is not
in this clone instead of counting no changes; task `files:` are normal paths outside .flow/; the
demo executor answers --help and refuses unknown options."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from helpers import Repo
from flowgit.core.model import PATH_RULE, path_problem
from flowgit.ids import FORMAT_CHARS, REMOTE_PATTERN, remote_problem

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"

GATED = """\
id: g
title: Gated plan
tasks:
  - {id: a, title: Store}
  - {id: b, title: API}
  - {id: c, title: Uses the reviewed work, depends_on: [CP]}
checkpoints:
  - {id: CP, title: Store and API reviewed, after: [a, b]}
"""


def one_line(res: object, code: int) -> str:
    out, err, got = getattr(res, "out", ""), getattr(res, "err", ""), getattr(res, "code", None)
    assert got == code, (got, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out + err, err
    return lines[0]


def snapshot(repo: Repo) -> tuple[str, str]:
    return repo.git("rev-parse", "HEAD"), repo.git("status", "--porcelain", "--untracked-files=all")


# ----- remote: in config ------------------------------------------------------------------------

@pytest.mark.parametrize("value", ['["a"]', "7", "null", "{x: 1}", '"--upload-pack=touch /tmp/x"',
                                   '"origin --upload-pack=x"', '"a..b"', '"up\\u202estream"', '""'],
                         ids=["list", "number", "null", "mapping", "option", "space", "dotdot",
                              "bidi", "empty"])
def test_a_config_remote_that_is_no_remote_name_stops_every_command(repo: Repo, value: str) -> None:
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: A, title: a}\n")
    config = repo.path / ".flow/config.yaml"
    config.write_text(config.read_text() + f"remote: {value}\n")
    before = snapshot(repo)
    res = repo.run("validate")
    first = one_line(res, 1)
    assert first.startswith(".flow/config.yaml:") and ": remote: " in first, first
    assert "git would read it as an option)" not in first
    for args in (["status"], ["next"], ["sync"], ["claim", "p", "--worker", "w"],
                 ["claim", "p", "--sync", "--worker", "w"], ["plan", "show", "p"], ["graph", "p"]):
        assert one_line(repo.run(*args), 1) == f"flowgit: error: {first}", args
    assert snapshot(repo) == before


def test_a_bad_remote_string_reads_as_one_sentence(repo: Repo) -> None:
    config = repo.path / ".flow/config.yaml"
    config.write_text(config.read_text() + 'remote: "--upload-pack=touch /tmp/x"\n')
    line = one_line(repo.run("status"), 1)
    assert line.startswith("flowgit: error: .flow/config.yaml:")
    assert "remote: invalid remote name '--upload-pack=touch /tmp/x': use a name from `git remote`" in line
    assert line.count("(") == line.count(")"), line


@pytest.mark.parametrize("value", ["origin --upload-pack=touch {x}", "--upload-pack=touch {x}",
                                   "origin\ttouch {x}", "-c", "a..b", "up\u202estream", "o\x85x", ""])
def test_sync_refuses_a_remote_flag_that_is_no_remote_name(repo: Repo, tmp_path: Path, value: str) -> None:
    victim = tmp_path / "victim"
    value = value.format(x=victim)
    before = snapshot(repo)
    for args in (["sync", "--remote", value], ["sync", f"--remote={value}"]):
        proc = repo.proc(*args)
        line = one_line(type("R", (), {"code": proc.returncode, "out": proc.stdout,
                                       "err": proc.stderr})(), 2)
        assert "invalid --remote" in line and "git remote add" not in line, line
    assert not victim.exists() and snapshot(repo) == before


def test_a_missing_remote_is_suggested_quoted(repo: Repo) -> None:
    line = one_line(repo.run("sync", "--remote", "up;stream$(id)"), 1)
    assert "no remote named 'up;stream$(id)'" in line
    assert "`git remote add 'up;stream$(id)' URL`" in line


def test_a_remote_git_accepts_still_syncs(repo: Repo, tmp_path: Path) -> None:
    bare = tmp_path / "hub.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    repo.git("remote", "add", "up/stream", str(bare))
    config = repo.path / ".flow/config.yaml"
    config.write_text(config.read_text() + "remote: up/stream\n")
    repo.git("commit", "-q", "-m", "remote", "--", ".flow/config.yaml")
    assert repo.ok("--json", "sync").json["remote"] == "up/stream"
    assert repo.ok("--json", "sync", "--remote", "up/stream").json["remote"] == "up/stream"


def test_the_remote_rule_agrees_with_the_schema_and_with_git(tmp_path: Path) -> None:
    schema = json.loads((SCHEMAS / "config.json").read_text())["properties"]["remote"]
    assert schema["pattern"] == REMOTE_PATTERN
    assert schema["description"].startswith("a remote name: ")
    pattern = re.compile(REMOTE_PATTERN[:-1] + r"\Z")
    names = ["origin", "up/stream", "a.b", "@", "é", "a;b", "-x", "a b", "a..b", ".a", "a/.b",
             "a.lock", "a.lock/b", "a//b", "/a", "a/", "a@{1}", "a:b", "x~1", "a^b", "a?b", "a*b",
             "a[b", "a\\b", "a\x7fb", "a\u200bb", "a\u2066b", "", "a\nb"]
    plain = tmp_path / "plain"
    subprocess.run(["git", "init", "-q", str(plain)], check=True)
    for name in names:
        assert (pattern.match(name) is None) == (remote_problem(name) is not None), repr(name)
        if name and not name.startswith("-"):
            took = subprocess.run(["git", "remote", "add", name, "/nowhere"], cwd=plain,
                                  capture_output=True).returncode == 0
            # git takes some names flowgit refuses (format characters), never the other way
            assert took or remote_problem(name) is not None, repr(name)


# ----- the checkpoint view and a base commit this clone lacks --------------------------------------

def at_checkpoint(repo: Repo) -> str:
    """Plan g at its checkpoint, with src/store.py committed during execution; the commit
    before that."""
    repo.plan("g", GATED)
    repo.ok("submit", "g")
    before = repo.git("rev-parse", "HEAD")
    repo.write("src/store.py", "x = 1\n")
    repo.git("add", "src/store.py")
    repo.git("commit", "-q", "-m", "work")
    for task in ("a", "b"):
        repo.ok("claim", f"g/{task}", "--worker", "w")
        repo.ok("done", f"g/{task}", "--worker", "w")
    repo.ok("advance", "g")
    assert repo.ok("status", "g", "--json").json["phase"] == "checkpoint"
    return before


def set_base_commit(repo: Repo, value: str) -> None:
    log = repo.path / ".flow/plans/g/events/_plan.jsonl"
    lines = log.read_text().splitlines()
    for i, raw in enumerate(lines):
        ev = json.loads(raw)
        if ev["type"] == "plan.phase" and ev["data"].get("base_commit"):
            ev["data"]["base_commit"] = value
            lines[i] = json.dumps(ev, separators=(",", ":"))
    log.write_text("\n".join(lines) + "\n")
    repo.git("commit", "-q", "--no-verify", "-m", "from another clone", "--", str(log))


@pytest.mark.format1
@pytest.mark.parametrize("missing", ["deadbeef" * 5, "0123abcd" * 8], ids=["sha1", "sha256-length"])
def test_the_checkpoint_view_says_the_base_commit_is_not_here(repo: Repo, missing: str) -> None:
    at_checkpoint(repo)
    set_base_commit(repo, missing)
    before = snapshot(repo)
    text = repo.ok("checkpoint", "g").out
    assert f"the base commit {missing} is not in this clone" in text and "fetch it" in text
    assert "0 files" not in text
    review = repo.ok("--json", "checkpoint", "g").json
    assert review["base_commit"] == missing and review["base_commit_missing"] is True
    assert {"plan", "checkpoint", "state", "changes", "validations", "notes"} <= set(review)
    assert snapshot(repo) == before


@pytest.mark.format1
def test_the_checkpoint_view_counts_changes_from_a_base_commit_it_has(repo: Repo) -> None:
    set_base_commit(repo, at_checkpoint(repo))
    review = repo.ok("--json", "checkpoint", "g").json
    assert review["base_commit_missing"] is False
    assert [f["path"] for f in review["changes"]["files"]] == ["src/store.py"]
    assert "changes since execution began: 1 files, +1 -0" in repo.ok("checkpoint", "g").out


# ----- task files: -----------------------------------------------------------------------------------

REFUSED = [
    ("dot-part", "src/./app.py", "not a normal path"),
    ("empty-part", "src//app.py", "not a normal path"),
    ("dot-last", "src/.", "not a normal path"),
    ("tilde", "~/.ssh/id_rsa", "leading '~'"),
    ("tilde-user", "~root/x", "leading '~'"),
    ("space-first", " src/app.py", "whitespace"),
    ("space-last", "src/app.py ", "whitespace"),
    ("nbsp-last", "src/app.py\u00a0", "whitespace"),
    ("rlo", "src/\u202eyp.ppa", "format character"),
    ("lri", "src/\u2066x\u2069.py", "format character"),
    ("zero-width", "src/a\u200bpp.py", "format character"),
    ("bom", "\ufeffsrc/app.py", "format character"),
    ("flow", ".flow/config.yaml", "in .flow/"),
    ("flow-dir", ".flow", "in .flow/"),
    ("flow-dot-slash", "./.flow/plans/p/plan.yaml", "in .flow/"),
    ("flow-case", ".Flow/plans", "in .flow/"),
    ("flow-windows-dot", ".flow./plans", "in .flow/"),
    ("flow-short-name", "FLOW~1/plans", "in .flow/"),
    ("c1-control", "src/a\x85b", "control character"),
]


@pytest.mark.parametrize("path,why", [(p, w) for _, p, w in REFUSED], ids=[n for n, _, _ in REFUSED])
def test_task_files_that_are_no_normal_path_outside_flow_are_refused(repo: Repo, path: str, why: str) -> None:
    entry = json.dumps(path)
    repo.write(".flow/plans/p/plan.yaml", "id: p\ntitle: p\ntasks:\n  - {id: A, title: a}\n"
               f"  - id: B\n    title: b\n    files: [src/ok.py, {entry}]\n")
    res = repo.run("validate")
    first = one_line(res, 1)
    assert first.startswith(".flow/plans/p/plan.yaml:7: tasks[1].files[1]: invalid path "), first
    assert " in task B (" in first and why in first and first.endswith(PATH_RULE), first
    for args in (("status", "p"), ("next", "p"), ("claim", "p", "--worker", "w"), ("plan", "show", "p")):
        assert one_line(repo.run(*args), 1) == f"flowgit: error: {first}", args
    repo.git("add", ".flow")
    hook = subprocess.run(["git", "commit", "-q", "-m", "from a branch"], cwd=repo.path,
                          capture_output=True, text=True)
    assert hook.returncode != 0 and "plan.yaml" in hook.stderr
    repo.git("reset", "-q")
    doctor = repo.run("doctor")
    assert any("task B: files[1]" in ln and why in ln for ln in doctor.out.splitlines()), doctor.out
    # through flowgit: refused, nothing written
    repo.git("clean", "-fdq", ".flow/plans/p")
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: A, title: a}\n")
    before = snapshot(repo)
    res = repo.run("task", "add", "p", "B", "--title", "b", "--file", path)
    assert res.code == 1 and "invalid path" in res.err and "Traceback" not in res.err, res.err
    assert snapshot(repo) == before


@pytest.mark.parametrize("path", ["./README.md", "src/", "flow/x", ".flowx/a", "docs/.flow/x", "a/~b",
                                  "dir with space/é.txt", "src/a..b.py"])
def test_normal_paths_are_still_taken(repo: Repo, path: str) -> None:
    repo.plan("p", f"id: p\ntitle: p\ntasks:\n  - id: A\n    title: a\n    files: [{json.dumps(path)}]\n")
    repo.ok("validate")
    repo.ok("claim", "p/A", "--worker", "w")


def test_the_path_rule_agrees_with_the_schema() -> None:
    schema = json.loads((SCHEMAS / "plan.json").read_text())["$defs"]["path"]
    assert schema["description"] == f"a path inside the repository: {PATH_RULE}"
    pattern = re.compile(schema["pattern"][:-1] + r"\Z")
    cases = [p for _, p, _ in REFUSED] + [
        "./README.md", "src/", "flow/x", ".flowx/a", "docs/.flow/x", "a/~b", "a/./", "././a", "./",
        ".", "a/.", ".//a", "a//", "./.flowx", "./.flow", " ", "a\u2028b", "\u2029", "a\u3000",
        "~", "a~", ".flow ", "flow~1", "flow~2/x"]
    # every format character this Python knows, anywhere in a path
    cases += [f"a{chr(c)}b" for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf"]
    for path in cases:
        assert (pattern.match(path) is None) == (path_problem(path) is not None), repr(path)
    assert all(re.search(f"[{FORMAT_CHARS}]", chr(c))
               for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf")


# ----- the demo executor ------------------------------------------------------------------------------

def demo(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOWGIT_")}
    return subprocess.run([sys.executable, "-m", "flowgit.demo_executor", *args], cwd=cwd,
                          capture_output=True, text=True, env={**base, **(env or {})})


def test_the_demo_executor_answers_help_and_refuses_unknown_options(tmp_path: Path) -> None:
    proc = demo(tmp_path, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m flowgit.demo_executor")
    for args in (["--bogus"], ["-x", "prompt.md"], ["prompt.md", "--verbose"]):
        proc = demo(tmp_path, *args, env={"FLOWGIT_TASK": "T"})
        assert proc.returncode == 2 and "unknown option" in proc.stderr and "usage:" in proc.stderr
    proc = demo(tmp_path, "prompt.md")  # not run by flowgit: writes nothing here
    assert proc.returncode == 2 and "FLOWGIT_TASK" in proc.stderr
    assert list(tmp_path.iterdir()) == []
    proc = demo(tmp_path, "prompt.md", env={"FLOWGIT_TASK": "T", "FLOWGIT_FILES": "out/a.md"})
    assert proc.returncode == 0 and (tmp_path / "out/a.md").is_file()


# ----- a task log that is a symlink ---------------------------------------------------------------

@pytest.mark.format1
def test_a_task_log_that_is_a_symlink_holds_its_task(repo: Repo, tmp_path: Path) -> None:
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: T-1, title: first, priority: high}\n"
              "  - {id: T-2, title: second}\n  - {id: T-3, title: third}\n")
    repo.ok("submit", "p")
    repo.ok("claim", "p/T-1", "--worker", "bob")
    claimed = repo.git("rev-parse", "HEAD")
    # a collaborator's branch swaps bob's log for a link to a log that never saw his claim
    log = repo.path / ".flow/plans/p/events/T-1.jsonl"
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_bytes(b"")
    log.unlink()
    log.symlink_to(elsewhere)
    repo.git("add", ".flow")
    repo.git("commit", "-q", "--no-verify", "-m", "from a branch")
    rel = ".flow/plans/p/events/T-1.jsonl"

    res = repo.ok("status", "p")
    assert res.err.count(rel) == 1 and "never follows symlinks in .flow/" in res.err, res.err
    assert "task p/T-1 is held" in res.err
    assert f"blocked      T-1  first ({rel} is a symlink)" in res.out
    assert f"held by {rel}, a symlink, which flowgit never follows in .flow/" in res.out
    data = repo.ok("--json", "status", "p").json
    row = {t["id"]: t for t in data["tasks"]}["T-1"]
    assert row["state"] == "blocked" and row["unreadable"] == rel and data["unreadable"] == [rel]
    assert "T-1" not in data["ready"]

    res = repo.ok("next", "p")
    assert "T-1" not in res.out and "p/T-2" in res.out and res.err.count(rel) == 1, res.out + res.err
    # claim PLAN passes over it to the other ready tasks, each named once
    for expected in ("p/T-2", "p/T-3"):
        res = repo.ok("--json", "claim", "p", "--worker", "w")
        assert res.json["task"] == expected and res.err.count(rel) == 1, res.err
    assert repo.run("claim", "p", "--worker", "w").code == 3  # nothing else ready: T-1 is held
    res = repo.run("claim", "p/T-1", "--worker", "w")
    line = one_line(res, 1)
    assert rel in line and "never follows" in line and "blocked" in line, line
    assert elsewhere.read_bytes() == b""  # never read, never written through
    # once the log is itself again, bob still holds the task
    log.unlink()
    repo.git("checkout", claimed, "--", rel)
    assert {t["id"]: t for t in repo.ok("--json", "status", "p").json["tasks"]}["T-1"]["worker"] == "bob"
