"""Sixth session's adversary: attacks on what landed this session (shares of a synced claim,
no pace and no remote pre-check, the click-free hot path, the plumb helper's batching).
Each test is one finding of /work/team/adv6-findings.md (numbered as there)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_claim_refs import forged, hostile
from test_claim_rounds import SIXTEEN
from test_state_branch import clone, shared


def one_line_no_traceback(text: str) -> None:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) <= 1 and "Traceback" not in text, text


# ----- 1. a forged worker name that cannot be encoded stops every honest synced claim ---------
def test_a_forged_worker_name_with_a_lone_surrogate_does_not_crash_a_claim(tmp_path: Path) -> None:
    """A claim ref's event is JSON: `"actor": "\\udcff"` reads as a lone surrogate, which the
    event checks let through; the shares hash `worker\\0task` as UTF-8."""
    bare, _ = shared(tmp_path, SIXTEEN)
    mallory, b = clone(bare, tmp_path / "m"), clone(bare, tmp_path / "b")
    hostile(mallory, "T15", f"x\n\n{forged('T15', actor=chr(0xDCFF))}")
    b.ok("sync")
    res = b.run("claim", "P", "--sync", "--worker", "wb", "--json")
    one_line_no_traceback(res.err)
    assert res.code == 0, res.err
    assert "not UTF-8 text" in res.err or res.err.strip() == "" or "T15" in res.err


def test_a_log_line_with_a_lone_surrogate_escape_is_a_bad_line() -> None:
    """The same line in any event log (pulled on the state branch): never folded, so no union,
    compaction or merge has to encode it; an escaped pair is one character and reads."""
    from flowgit.core.events import parse_log

    bad = (forged("T1", actor="\udcff") + "\n").encode()
    read = parse_log(bad, "log", "P", "T1")
    assert not read.events and "not UTF-8 text" in read.bad[0].problem
    pair = (json.dumps(json.loads(forged("T1", actor="w\U0001F600")), ensure_ascii=True) + "\n").encode()
    assert b"\\ud83d\\ude00" in pair
    assert parse_log(pair, "log", "P", "T1").events[0].actor == "w\U0001F600"


# ----- 2. a crowd of forged names costs a claim three times the hashes ADR 0013 bounds --------
def test_a_hostile_crowd_hashes_each_task_owner_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """32 forged names, and none of this worker's share free among the first 16 per worker:
    the choice looked each task's owner up three times (the share, the later share, the
    steal), 52,272 hashes and ~29 ms of CPU a claim; once is 16 x 33 x 33."""
    from types import SimpleNamespace

    from flowgit.core import lifecycle

    crowd = [f"forged-{i:03d}" for i in range(32)]
    everyone = sorted({"wb", *crowd})
    free = [t for t in (f"T{i:05d}" for i in range(5000)) if lifecycle.owner(t, everyone) != "wb"]
    hashes: list[int] = []
    real = lifecycle.owner

    def counted(task_id: str, workers: Any) -> str:
        hashes.append(len(workers))
        return real(task_id, workers)

    monkeypatch.setattr(lifecycle, "owner", counted)
    monkeypatch.setattr(lifecycle, "free_order", lambda plan, state, also_held=(): free)
    plan = SimpleNamespace(task=lambda t: SimpleNamespace(priority=None))
    got = lifecycle.after_lost_race(plan, None, "", 0.0, 16, "wb", crowd)  # type: ignore[arg-type]
    assert got in free
    assert sum(hashes) <= lifecycle.SHARE_SCAN * len(everyone) ** 2


# ----- 3. with no remote of that name, git fetches from a directory of that name -------------
def test_a_missing_remote_is_not_a_directory_of_its_name(tmp_path: Path) -> None:
    """6a6a962 dropped the check that the remote exists before a synced claim's fetch: git
    reads a name that is no remote as a path (relative to the work tree), so a repository at
    `./origin` (a bare repository committed as plain files by a teammate, or any clone lying
    there) took the claim: `claim --sync` said it won, nothing reached the real remote."""
    import subprocess

    bare, _ = shared(tmp_path, SIXTEEN)
    b = clone(bare, tmp_path / "b")
    b.ok("status")
    b.git("remote", "remove", "origin")
    subprocess.run(["git", "clone", "-q", "--bare", str(bare), str(b.path / "origin")], check=True)
    before = b.git("for-each-ref"), refs(b.path / "origin")
    for args in (("claim", "P", "--sync", "--worker", "wb", "--json"), ("sync",)):
        res = b.run(*args)
        one_line_no_traceback(res.err)
        assert res.code == 1 and "no remote named 'origin'" in res.out + res.err, (args, res.code, res.out, res.err)
        assert (b.git("for-each-ref"), refs(b.path / "origin")) == before


def refs(path: Path) -> str:
    import subprocess

    return subprocess.run(["git", "for-each-ref"], cwd=path, capture_output=True, text=True, check=True).stdout


# ----- 4. names that never claim keep a high-priority task from every honest worker ----------
def test_a_phantom_owner_does_not_keep_the_best_task_from_the_honest(monkeypatch: pytest.MonkeyPatch) -> None:
    """A teammate who moves claim refs of tasks that are not in the plan (folded as logs of
    unknown tasks, so nothing visible is claimed) under a few names every 30 s keeps them in
    every clone's crowd. Where the one high-priority task is a phantom's, the honest worker
    takes its own low-priority task instead, claim after claim, for as long as the names stay
    fresh: within the ADR's words (the owner "is about to take" it), but nobody ever will."""
    from types import SimpleNamespace

    from flowgit.core import lifecycle

    phantoms = [f"ghost-{i}" for i in range(8)]
    high = next(f"H{i}" for i in range(1000) if lifecycle.owner(f"H{i}", sorted({"wb", *phantoms})) != "wb")
    free = [high, *(f"L{i:02d}" for i in range(60))]
    prio = {high: "high"}
    monkeypatch.setattr(lifecycle, "free_order", lambda plan, state, also_held=(): free)
    plan = SimpleNamespace(task=lambda t: SimpleNamespace(priority=prio.get(t, "low")))
    # the phantom keeps it for a round (it is its first), and no longer once this clone has
    # passed over it claim after claim (ops/claimrefs passed_over: `overdue`)
    assert lifecycle.after_lost_race(plan, None, "", 0.0, 16, "wb", phantoms) != high  # type: ignore[arg-type]
    assert lifecycle.after_lost_race(plan, None, "", 0.0, 16, "wb", phantoms, {high}) == high  # type: ignore[arg-type]


# ----- 5. a closed stdout or stderr was a traceback (both parsers) ---------------------------
@pytest.mark.parametrize("fd", [1, 2])
def test_a_closed_stream_is_no_traceback(tmp_path: Path, fd: int) -> None:
    """`flowgit status >&-`: Python's sys.stdout is None, and Output wrote to it (hot path and
    click alike): AttributeError, exit 1. Now the command runs and says nothing there."""
    import os
    import subprocess
    import sys

    bare, _ = shared(tmp_path, SIXTEEN)
    b = clone(bare, tmp_path / "b")
    other = 2 if fd == 1 else 1
    for args in (("status", "P"), ("status", "P", "--json"), ("plan", "list"), ("next", "P")):
        proc = subprocess.run([sys.executable, "-m", "flowgit", "--repo", str(b.path), *args],
                              stdin=subprocess.DEVNULL, **{("stderr" if other == 2 else "stdout"): subprocess.PIPE},
                              preexec_fn=lambda: os.close(fd))  # noqa: PLW1509
        said = (proc.stderr if other == 2 else proc.stdout).decode()
        assert proc.returncode == 0 and "Traceback" not in said, (args, proc.returncode, said)


# ----- 6. a claims-seen file holding a number past a float's range was a traceback -----------
def test_a_corrupt_claims_seen_reads_as_none(tmp_path: Path) -> None:
    """`.git/flowgit/claims-seen` is this clone's own, but a torn disk or a hand edit can leave
    anything: an int of 400 digits made every synced claim an OverflowError traceback."""
    import os

    bare, _ = shared(tmp_path, SIXTEEN)
    b = clone(bare, tmp_path / "b")
    b.ok("status")
    seen = b.path / ".git" / "flowgit" / "claims-seen"
    seen.mkdir(parents=True)  # a folder: read as none, the write refused quietly
    got = b.run("claim", "P", "--sync", "--worker", "wb")
    assert got.code == 0 and got.err.strip() == "", got.err
    seen.rmdir()
    for text in ('{"x": ' + "9" * 400 + ', "y": 1e999, "z": NaN}', "[1, 2]", "\xff"):
        seen.write_text(text, encoding="latin-1")
        got = b.run("claim", "P", "--sync", "--worker", "wb")
        assert got.code == 0 and got.err.strip() == "", (text[:20], got.err)
    seen.unlink()
    os.symlink(tmp_path / "nowhere", seen)
    got = b.run("claim", "P", "--sync", "--worker", "wb")
    assert got.code == 0 and got.err.strip() == "", got.err


# ----- 7. a crowd's claim groups by the first task's priority, but ready order is critical path first
RANKED = """id: P
title: ranked
goal: ranked
tasks:
  - id: X0
    title: long chain, low
    priority: low
  - id: X1
    title: chain
    depends_on: [X0]
  - id: X2
    title: chain
    depends_on: [X1]
  - id: H0
    title: high
    priority: high
  - id: L1
    title: low
    priority: low
"""


def test_a_crowd_claim_does_not_take_the_worst_task_over_a_better_one(tmp_path: Path) -> None:
    """Ready order (core/fold) is critical-path rank first, then priority: X0 (low, heads a
    chain of three), H0 (high), L1 (low). `next` says X0. With a crowd, `after_lost_race` takes
    "the free tasks of the best priority" as those of free[0]'s priority (low): X0 is wa's, so
    wb takes L1, the last task by rank and by priority, over H0 (high, before it in the order,
    and nobody's first of share among the peers). ADR 0013: "a share of a lower priority is
    never taken while a higher one has tasks no owner is about to take"."""
    from flowgit.core.lifecycle import owner
    from flowgit.ops import claimrefs
    from flowgit.store.repo import FlowRepo

    assert (owner("X0", ["wa", "wb"]), owner("H0", ["wa", "wb"]), owner("L1", ["wa", "wb"])) == ("wa", "wa", "wb")
    bare, _ = shared(tmp_path, RANKED)
    b = clone(bare, tmp_path / "b")
    assert b.ok("next", "P", "--json").json["task"] == "P/X0"
    claimrefs.seen_others(FlowRepo(b.path), ["wa"])
    got = b.ok("claim", "P", "--sync", "--worker", "wb", "--json").json["task"]
    assert got != "P/L1", got


# ----- 8. a repository under a path that is not UTF-8: every format 2 write was a traceback --
def test_a_repository_path_of_any_bytes_takes_writes(tmp_path: Path) -> None:
    """75ce595 writes a state commit's blobs as files in the common git dir and hands their
    paths to `hash-object --stdin-paths`, encoded as UTF-8: a repository under `odd\\xff`
    (a name from another system) failed every claim with UnicodeEncodeError (the files of the
    earlier private temporary directory were under /tmp)."""
    from test_state_branch import executing

    r = executing(tmp_path / "odd\udcff")
    for args in (("claim", "P/T1", "--worker", "w"), ("done", "P/T1", "--worker", "w")):
        got = r.run(*args)
        one_line_no_traceback(got.err)
        assert got.code == 0, (args, got.err)
    assert not list((r.path / ".git" / "flowgit" / "blobs").iterdir())


# ----- 9. git found on a PATH folder that is not UTF-8: the kept version was a traceback -----
def test_a_git_on_a_path_of_any_bytes_is_kept(tmp_path: Path) -> None:
    """`require_git` keeps `git --version` in .git/flowgit/git-version, keyed by the git's
    path, written as UTF-8: a git under `bin\\xff/` made the first command that runs git a
    UnicodeEncodeError traceback and left `git-version.PID` behind."""
    import os
    import shutil

    from test_state_branch import executing

    r = executing(tmp_path / "r")
    folder = tmp_path / "bin\udcff"
    folder.mkdir()
    os.symlink(shutil.which("git") or "/usr/bin/git", folder / "git")
    (r.path / ".git" / "flowgit" / "git-version").unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}
    for args in (("claim", "P/T1", "--worker", "w"), ("release", "P/T1", "--worker", "w")):
        got = r.proc(*args, env=env)
        one_line_no_traceback(got.stderr)
        assert got.returncode == 0, (args, got.stderr)
    kept = sorted(p.name for p in (r.path / ".git" / "flowgit").iterdir() if p.name.startswith("git-version"))
    assert kept == ["git-version"]


# ----- 10. a --note, --error or --files-modified that is not UTF-8 was a traceback ------------
@pytest.mark.parametrize("args", [("done", "P/T1", "--worker", "w", "--note", "n\udcff"),
                                  ("done", "P/T1", "--worker", "w", "--files-modified", "f\udcff"),
                                  ("fail", "P/T1", "--worker", "w", "--error", "e\udcff")])
def test_text_that_is_not_utf8_is_a_usage_error_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          args: tuple[str, ...]) -> None:
    """`done --note $'\\xff'`: the byte arrives as a lone surrogate, and the event line could
    not be encoded in the write door: UnicodeEncodeError, on the hot path and click's alike.
    Now one line, exit 2, nothing written."""
    from flowgit.cli import hot
    from test_state_branch import executing

    r = executing(tmp_path / "r")
    r.ok("claim", "P/T1", "--worker", "w")
    before = r.git("rev-parse", "flow/state")
    said = []
    for reader in (hot.read, lambda a: None):
        monkeypatch.setattr(hot, "read", reader)
        got = r.run(*args)
        one_line_no_traceback(got.err)
        assert got.code == 2 and "is not UTF-8 text" in got.err, got.err
        said.append(got.err)
    assert said[0] == said[1] and r.git("rev-parse", "flow/state") == before


# ----- 11. a teammate's title or claim drove the terminal through status's text -------------
def test_status_text_shows_control_characters_escaped(tmp_path: Path) -> None:
    """A claim ref's actor `\\x1b]0;...\\x07` (an event allows any character but a line break
    or NUL) and a task title with `\\x1b[2J`: `status` printed them raw, for the terminal to set
    its title, clear the screen or (OSC 52) write the clipboard. Text results now show them
    escaped, as errors already did (fifth session); JSON keeps the text as it is."""
    evil = "\x1b]0;pwned\x07\x1b[2J\u202e"
    plan = SIXTEEN.replace("title: task 3\n", 'title: "task \\e[2J three"\n')
    bare, _ = shared(tmp_path, plan)
    mallory, b = clone(bare, tmp_path / "m"), clone(bare, tmp_path / "b")
    hostile(mallory, "T01", f"x\n\n{forged('T01', actor=evil)}")
    b.ok("sync")
    for args in (("status", "P", "--all"), ("status",), ("events", "P", "T01")):
        got = b.run(*args)
        assert got.code == 0 and "\x1b" not in got.out and "\u202e" not in got.out, (args, got.out)
    assert "\\x1b]0;pwned\\x07" in b.run("status", "P", "--all").out
    assert "\\x1b[2J" in b.run("status", "P", "--all").out
    rows = {t["id"]: t for t in b.ok("status", "P", "--json").json["tasks"]}
    assert rows["T01"]["worker"] == evil
