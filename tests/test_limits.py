"""Limits instead of crashes (issue 13): nesting in YAML and JSON is bounded before a parser
sees it, and a file system that refuses a write (read-only, full, not ours) gets one line,
exit 1, and leaves nothing behind: no half-written log, nothing staged, no journal."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from flowgit.errors import InvalidFile
from flowgit.formats import jsonlmerge, yamlio
from helpers import Repo, log_text, make_git_repo, state_branch

PLAN = """\
id: q
title: Q
tasks:
  - id: A
    title: a
  - id: B
    title: b
"""
DEEP = {
    "flow": "id: deep\ntitle: D\nx-n: " + "[" * 50_000 + "]" * 50_000 + "\n",
    "block": "id: deep\ntitle: D\nx-n:\n" + "- " * 50_000 + "x\n",
    "mapping": "id: deep\ntitle: D\nx-n: " + "{a: " * 30_000 + "1" + "}" * 30_000 + "\n",
}


def hook_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def one_line(proc: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def clean(repo: Repo) -> None:
    """Nothing staged or changed, no journal, no temporary files."""
    assert repo.git("status", "--porcelain", "--untracked-files=all") == ""
    assert not (repo.path / ".git" / "flowgit-journal").exists()
    assert not [p for p in (repo.path / ".flow").rglob("*.tmp")]


# ----- nesting --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(DEEP))
def test_a_deeply_nested_plan_is_one_line_not_a_crash(repo: Repo, kind: str) -> None:
    rel = ".flow/plans/deep/plan.yaml"
    repo.write(rel, DEEP[kind])
    repo.git("add", rel)
    proc = subprocess.run(["git", "commit", "-q", "-m", "deep"], cwd=repo.path, capture_output=True,
                          text=True, env=hook_env(), check=False)
    assert proc.returncode == 1 and f"{rel}:" in proc.stderr and "nested deeper than 100" in proc.stderr, proc
    repo.git("commit", "-q", "--no-verify", "-m", "deep")
    for args in (["status", "deep"], ["validate"], ["validate", str(repo.path / rel)], ["status"],
                 ["--json", "status", "deep"]):
        proc = repo.proc(*args)
        if "--json" in args:
            assert proc.returncode == 1 and "Traceback" not in proc.stderr
            assert "nested deeper than 100 levels" in json.loads(proc.stdout)["error"]["message"]
            continue
        line = one_line(proc)
        assert rel in line and "nested deeper than 100 levels" in line, (args, line)


def test_plan_new_from_a_deep_file_writes_nothing(repo: Repo, tmp_path: Path) -> None:
    src = tmp_path / "deep.yaml"
    src.write_text(DEEP["flow"])
    line = one_line(repo.proc("plan", "new", "deep", "--from", str(src)))
    assert "deep.yaml" in line and "nested deeper than 100" in line
    assert not (repo.path / ".flow/plans/deep").exists()
    clean(repo)


def test_a_deep_config_is_one_line(repo: Repo) -> None:
    repo.write(".flow/config.yaml", "x-a: " + "[" * 40_000 + "]" * 40_000 + "\n")
    line = one_line(repo.proc("status"))
    assert ".flow/config.yaml" in line and "nested deeper" in line


def test_nesting_up_to_the_limit_loads() -> None:
    ok = "id: p\ntitle: t\nx-n: " + "[" * 99 + "]" * 99 + "\n"  # the mapping is the first level
    assert yamlio.loads(ok, "p.yaml")["x-n"] is not None
    with pytest.raises(InvalidFile, match=r"p.yaml:3: nested deeper than 100 levels"):
        yamlio.loads(ok.replace("[" * 99, "[" * 100).replace("]" * 99, "]" * 100), "p.yaml")
    deep_block = "a:\n" + "".join(" " * i + "-\n" for i in range(1, 120))
    with pytest.raises(InvalidFile, match="nested deeper"):
        yamlio.loads(deep_block, "b.yaml")
    with pytest.raises(InvalidFile, match="nested deeper"):
        yamlio.rt_load(DEEP["block"], "rt.yaml")
    # big but shallow: the cheap look settles most files, the parser's events the rest
    wide = "id: p\ntitle: t\ntasks:\n" + "".join(f"  - {{id: T{i}, title: t, depends_on: [T0]}}\n"
                                                  for i in range(1, 400))
    assert len(yamlio.loads(wide, "w.yaml")["tasks"]) == 399


@pytest.mark.format1
def test_a_deep_event_line_is_one_line_not_a_recursion_error(repo: Repo) -> None:
    repo.plan("q", PLAN)
    rel = ".flow/plans/q/events/B.jsonl"
    line = {"id": "01JD5Z8Q3K7M9N2P4R6S8T0VWX", "type": "task.note", "plan": "q", "task": "B",
            "actor": "w", "at": "2026-11-22T10:00:00Z", "clock": 1, "data": {"text": "x", "deep": 0}}
    text = json.dumps(line).replace('"deep": 0', '"deep": ' + "[" * 100_000 + "]" * 100_000)
    repo.write(rel, text + "\n")
    repo.git("add", rel)
    repo.git("commit", "-q", "--no-verify", "-m", "deep")
    line_out = one_line(repo.proc("validate"))
    assert f"{rel}:1: " in line_out and "nested deeper than 100 levels" in line_out
    proc = repo.proc("status", "q")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert f"unreadable event at {rel}:1" in proc.stderr


def test_the_merge_driver_refuses_deep_json_in_one_line(tmp_path: Path) -> None:
    ok = b'{"id":"01JD5Z8Q3K7M9N2P4R6S8T0VWX","clock":1,"actor":"w"}\n'
    deep = b'{"id":"01JD5Z8Q3K7M9N2P4R6S8T0VWY","x":' + b"[" * 200_000 + b"]" * 200_000 + b"}\n"
    paths = []
    for name, data in (("base", ok), ("ours", ok), ("theirs", ok + deep)):
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    for argv in ([sys.executable, "-m", "flowgit.jsonlmerge", *paths, "T.jsonl"],
                 [sys.executable, "-m", "flowgit", "merge-driver", *paths, "T.jsonl"]):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        line = one_line(proc)
        assert "T.jsonl" in line and "theirs: line 2" in line and "nested deeper than 100" in line
        assert (tmp_path / "ours").read_bytes() == ok
    with pytest.raises(ValueError, match="nested deeper"):
        jsonlmerge.merge_logs(ok, ok, ok + deep)


@pytest.mark.parametrize("data", ["[" * 10_000 + "]" * 10_000, "NaN", '{"a": Infinity}', "1e999"])
def test_signal_data_is_bounded_and_finite(repo: Repo, data: str) -> None:
    repo.plan("q", PLAN)
    head = repo.git("rev-parse", "HEAD")
    line = one_line(repo.proc("signal", "q", "go", "--data", data), 2)
    assert "--data" in line
    assert repo.git("rev-parse", "HEAD") == head


# ----- a file system that refuses the write -------------------------------------------------------

def _mount_works() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"flowgit-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                            capture_output=True, check=False).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], capture_output=True, check=False)
        return ok
    finally:
        probe.rmdir()


MOUNT = _mount_works()
needs_mount = pytest.mark.skipif(not MOUNT, reason="needs root and `mount` (tmpfs, bind mounts)")


@contextmanager
def mounted(*argvs: list[str], at: Path) -> Iterator[Path]:
    for argv in argvs:
        subprocess.run(argv, check=True, capture_output=True)
    try:
        yield at
    finally:
        subprocess.run(["umount", "-l", str(at)], capture_output=True, check=False)


def read_only(path: Path) -> Any:
    """A real read-only directory (root ignores file modes, not a read-only mount)."""
    return mounted(["mount", "--bind", str(path), str(path)],
                   ["mount", "-o", "remount,ro,bind", str(path)], at=path)


@pytest.fixture
def planned(repo: Repo) -> Repo:
    repo.plan("q", PLAN)
    repo.ok("claim", "q/A", "--worker", "w")
    return repo


def _state(repo: Repo) -> tuple[str, dict[str, bytes]]:
    if state_branch(repo):  # format 2: the logs are on the state branch
        return repo.git("rev-parse", "HEAD", "flow/state"), {s: log_text(repo, "q", s).encode()
                                                            for s in ("_plan", "A", "B")}
    logs = {p.name: p.read_bytes() for p in (repo.path / ".flow/plans/q/events").iterdir()}
    return repo.git("rev-parse", "HEAD"), logs


@needs_mount
@pytest.mark.parametrize("where", [  # format 2 writes no transition in .flow/
    pytest.param(".flow", marks=pytest.mark.format1), ".git"])
def test_a_read_only_directory_is_one_line_and_nothing_changes(planned: Repo, where: str) -> None:
    before = _state(planned)
    with read_only(planned.path / where):
        for args in (["claim", "q/B", "--worker", "w"], ["heartbeat", "q/A", "--worker", "w"]):
            line = one_line(planned.proc(*args))
            assert "Read-only file system" in line, line
        assert planned.proc("status", "q").returncode == 0  # reading needs no write (the cache is optional)
    assert _state(planned) == before
    clean(planned)
    planned.ok("claim", "q/B", "--worker", "w")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file modes: see the read-only mount test")
def test_a_directory_without_write_permission_is_one_line(planned: Repo) -> None:
    events = planned.path / ".flow/plans/q/events"
    before = _state(planned)
    mode = events.stat().st_mode
    events.chmod(0o555)
    for log in events.iterdir():
        log.chmod(0o444)
    try:
        line = one_line(planned.proc("claim", "q/B", "--worker", "w"))
        assert "Permission denied" in line
    finally:
        events.chmod(mode)
        for log in events.iterdir():
            log.chmod(0o644)
    assert _state(planned) == before
    clean(planned)


@needs_mount
@pytest.mark.parametrize("spare_pages", [0, 1, 2, 6])
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, spare_pages: int) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], at=disk):
        repo = Repo(make_git_repo(disk / "repo"))
        repo.ok("init", "--format", "1")
        repo.plan("q", PLAN)
        repo.ok("claim", "q/A", "--worker", "w")
        spare = disk / "spare"
        spare.write_bytes(b"\0" * 4096 * spare_pages)
        fd = os.open(disk / "fill", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        spare.unlink()
        before = _state(repo)
        proc = repo.proc("claim", "q/B", "--worker", "w")
        (disk / "fill").unlink()
        if proc.returncode == 0:  # it fitted: then it is whole
            assert repo.git("rev-parse", "HEAD") != before[0]
        else:
            line = one_line(proc)
            assert "No space left on device" in line or "space" in line.lower(), line
            assert _state(repo) == before
        clean(repo)
        if proc.returncode:  # with room again, the same command goes through
            repo.ok("claim", "q/B", "--worker", "w")


@pytest.mark.format1
def test_an_append_cut_short_is_taken_back(planned: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full disk again, without a mount: the write of the log stops half-way."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell the log's descriptor")
    before = _state(planned)
    real = os.write

    def short(fd: int, data: Any) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".jsonl"):
            real(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", short)
    res = planned.run("heartbeat", "q/A", "--worker", "w")
    res_new = planned.run("claim", "q/B", "--worker", "w")  # a log that did not exist yet
    monkeypatch.undo()
    for r in (res, res_new):
        assert r.code == 1 and "Traceback" not in r.err, r
        assert len(r.err.splitlines()) == 1 and "No space left on device" in r.err, r.err
        assert ".jsonl: " in r.err  # which file
    assert _state(planned) == before
    clean(planned)


def test_a_plan_file_that_cannot_be_replaced_is_left_as_it_was(planned: Repo,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    plan = planned.path / ".flow/plans/q/plan.yaml"
    before = plan.read_bytes(), planned.git("rev-parse", "HEAD")

    def denied(src: Any, dst: Any) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(os, "replace", denied)
    res = planned.run("--json", "task", "add", "q", "C", "--title", "c")
    monkeypatch.undo()
    assert res.code == 1 and res.json["error"]["code"] == "io", res
    assert "Permission denied" in res.json["error"]["message"] and "plan.yaml" in res.json["error"]["message"]
    assert (plan.read_bytes(), planned.git("rev-parse", "HEAD")) == before
    clean(planned)
