"""A name from a teammate (a file or ref name: git allows newlines, ESC and bidi overrides in
them) is shown escaped in errors, warnings and doctor's problems: one line each, and the
terminal is never driven by it."""
from __future__ import annotations

import os

from helpers import Repo

from flowgit.cli.output import shown

NAME = "new\nli\x1b[2Jne\u202egnp.jsonl"


def test_shown_escapes_what_would_break_the_line() -> None:
    assert shown(NAME) == "new\\nli\\x1b[2Jne\\u202egnp.jsonl"
    assert shown("plain: ünïcode ok") == "plain: ünïcode ok"


def test_a_pulled_name_with_a_newline_and_escapes_stays_one_line(repo: Repo) -> None:
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - {id: a, title: A}\n")
    events = repo.path / ".flow" / "plans" / "p" / "events"
    events.mkdir(exist_ok=True)
    os.symlink("/etc/passwd", events / NAME)
    repo.git("add", "-A")
    repo.git("commit", "-q", "--no-verify", "-m", "a teammate's branch, merged")
    for args in (("validate",), ("doctor",)):
        res = repo.proc(*args)
        said = res.stdout + res.stderr
        assert res.returncode == 1, (args, said)
        assert "\x1b" not in said and "\u202e" not in said, args
        named = [line for line in said.splitlines() if "new\\nli\\x1b[2Jne\\u202egnp.jsonl" in line]
        assert len(named) == 1 and "symlink" in named[0], (args, said)
        assert not any(line.startswith("li") for line in said.splitlines()), said
