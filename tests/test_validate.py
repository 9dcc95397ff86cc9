"""A corpus of broken inputs. Each is written into `.flow/` (and, for plans, also passed to
`plan new --from`), and every command that reads it, run as a real process, must answer with
exit 1, one line naming the file and the line or the task, no traceback, and write nothing."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import WEBHOOKS, Repo, make_git_repo
from helpers.cache import ignore_derived

BAD = ".flow/plans/bad/plan.yaml"
LOG = ".flow/plans/webhooks/events/T-WH-01.jsonl"
SUMMARY = re.compile(r"^flowgit: \d+ problems in \d+ file\(s\)$")
YAML_LIMIT = 8 * 1024 * 1024


def plan(body: str) -> bytes:
    return ("id: bad\ntitle: Broken\n" + body).encode()


BOMB = plan("".join(
    f"x-{n}: &{n} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
    for p, n in zip([""] + list("abcdefgh"), "abcdefghi")
) + "tasks: []\n")


@dataclass(frozen=True)
class Case:
    name: str
    path: str                      # where the broken file goes
    data: bytes = b""              # its whole content, or
    append: bytes = b""            # bytes appended to the (committed) file already there
    must: tuple[str, ...] = ()     # text the one line must contain ("x|y": either)
    line: int | None = None        # `validate` names this line: "path:LINE:"
    status: str | None = None      # `status PLAN` refuses it too
    from_file: bool = False        # `plan new bad --from FILE` refuses it too


CASES = [
    Case("yaml-syntax", BAD, plan("tasks: [\n  - id: a\n"), must=("invalid YAML",), line=4,
         status="bad", from_file=True),
    Case("wrong-type-title", BAD, b"id: bad\ntitle: 5\ntasks: []\n", must=("title",), line=2,
         status="bad", from_file=True),
    Case("wrong-type-depends-on", BAD, plan("tasks:\n  - id: a\n    title: A\n    depends_on: T-0\n"),
         must=("depends_on",), line=6, status="bad", from_file=True),
    Case("wrong-type-tasks", BAD, plan("tasks: {a: 1}\n"), must=("tasks",), line=3,
         status="bad", from_file=True),
    Case("unknown-key", BAD, plan("tasks:\n  - id: a\n    titel: A\n    title: A\n"),
         must=("titel",), line=5, status="bad", from_file=True),
    Case("unknown-top-key", BAD, plan("taks: []\n"), must=("taks",), line=3, status="bad", from_file=True),
    Case("cycle", BAD, plan("tasks:\n  - {id: a, title: A, depends_on: [c]}\n"
                            "  - {id: b, title: B, depends_on: [a]}\n  - {id: c, title: C, depends_on: [b]}\n"),
         must=("cycle", "a -> c -> b -> a"), status="bad", from_file=True),
    Case("self-dependency", BAD, plan("tasks:\n  - {id: a, title: A, depends_on: [a]}\n"),
         must=("task a depends on itself|cycle a -> a",), status="bad", from_file=True),
    Case("dangling-dependency", BAD, plan("tasks:\n  - {id: a, title: A, depends_on: [zz]}\n"),
         must=("task a", "'zz'"), from_file=True),
    Case("dangling-cross-plan", BAD, plan("tasks:\n  - {id: a, title: A, depends_on: [webhooks/T-NOPE]}\n"),
         must=("task a", "T-NOPE"), from_file=True),
    Case("duplicate-task-ids", BAD, plan("tasks:\n  - {id: a, title: A}\n  - {id: a, title: A2}\n"),
         must=("duplicate id 'a'",), status="bad", from_file=True),
    Case("checkpoint-after-unknown", BAD,
         plan("tasks:\n  - {id: a, title: A}\ncheckpoints:\n  - {id: CP, after: [nope]}\n"),
         must=("checkpoint CP", "'nope'"), from_file=True),
    Case("missing-adr", BAD, plan("adrs: [ADR-0042]\ntasks:\n  - {id: a, title: A}\n"),
         must=("ADR-0042",), from_file=True),
    Case("task-adr-missing", BAD, plan("tasks:\n  - {id: a, title: A, adrs: [ADR-0007]}\n"),
         must=("task a", "ADR-0007"), from_file=True),
    Case("id-dotdot", BAD, plan("tasks:\n  - id: ../x\n    title: A\n"), must=("'../x'",), line=4,
         status="bad", from_file=True),
    Case("id-space", BAD, plan("tasks:\n  - id: a b\n    title: A\n"), must=("'a b'",), line=4,
         status="bad", from_file=True),
    Case("alias-bomb", BAD, BOMB, must=("alias",), status="bad", from_file=True),
    Case("non-utf8", BAD, b"id: bad\ntitle: caf\xe9 \xff\ntasks: []\n", must=("UTF-8",), line=2,
         status="bad", from_file=True),
    Case("above-8MiB", BAD, plan(f"description: \"{'a' * YAML_LIMIT}\"\ntasks: []\n"),
         must=(str(YAML_LIMIT),), status="bad", from_file=True),
    Case("id-differs-from-directory", BAD, b"id: other\ntitle: T\ntasks: []\n",
         must=("'other'", "'bad'"), status="bad"),
    Case("config-unknown-key", ".flow/config.yaml", append=b"lease_secs: 5\n", must=("lease_secs",)),
    Case("torn-last-line", LOG, append=b'{"id": "01JD', must=("torn",), line=2),
    # readers hold the task instead of refusing (an unknown type is only a warning):
    # tests/test_bad_lines.py
    Case("event-impossible-time", LOG, must=("'2026-13-45T00:00:00Z' is not a time",), line=2),
    Case("event-not-json", LOG, append=b"not json\n", must=("JSON",), line=2),
    Case("duplicate-event-id", LOG, must=("duplicate event id",), line=2),
]


def _event_lines(repo: Repo, case: Case) -> bytes:
    first = (repo.path / LOG).read_bytes().splitlines()[0]
    if case.name == "duplicate-event-id":
        return first + b"\n"
    obj = json.loads(first)
    obj.update(at="2026-13-45T00:00:00Z", id="01JDZZZZZZZZZZZZZZZZZZZZZZ")
    return json.dumps(obj).encode() + b"\n"


_TEMPLATE: list[Path] = []


@pytest.fixture
def base(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """A repository with a committed plan and one task log, so logs can be broken too. Built
    once (inside the isolated environment) and copied for each test, which keeps the corpus fast."""
    if not _TEMPLATE:
        repo = Repo(make_git_repo(tmp_path_factory.mktemp("template") / "repo"))
        repo.ok("init", "--format", "1")
        repo.plan("webhooks", WEBHOOKS)
        repo.ok("claim", "webhooks/T-WH-01", "--worker", "w1")
        _TEMPLATE.append(repo.path)
    path = tmp_path / "repo"
    shutil.copytree(_TEMPLATE[0], path, symlinks=True, ignore=ignore_derived())
    return Repo(path)


def snapshot(repo: Repo) -> tuple[str, str, dict[str, bytes]]:
    files = {}
    for path in sorted(repo.path.rglob("*")):
        rel = path.relative_to(repo.path).as_posix()
        if rel.startswith((".git/", ".flow/.cache")) or rel == ".git" or not path.is_file():
            continue
        files[rel] = path.read_bytes()
    return (repo.git("rev-parse", "HEAD"), repo.git("status", "--porcelain", "--untracked-files=all"), files)


def inproc(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    """The same command through `main([...])` in this process (cheaper than a process)."""
    res = repo.run(*args)
    return subprocess.CompletedProcess(list(args), res.code, res.out, res.err)


def one_line(proc: subprocess.CompletedProcess[str], *, validate: bool = False) -> str:
    """The one problem line on stderr (validate's count line aside), with no traceback."""
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.splitlines()
    if validate:
        lines = [line for line in lines if not SUMMARY.match(line)]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def break_it(repo: Repo, case: Case) -> None:
    path = repo.path / case.path
    path.parent.mkdir(parents=True, exist_ok=True)
    if case.path == LOG and not case.append:
        data = _event_lines(repo, case)
        path.write_bytes(path.read_bytes() + data)
    elif case.append:
        path.write_bytes(path.read_bytes() + case.append)
    else:
        path.write_bytes(case.data)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_file_in_flow(base: Repo, case: Case) -> None:
    break_it(base, case)
    before = snapshot(base)
    runs = [("validate", base.proc("validate")),
            ("validate PATH", inproc(base, "validate", str(base.path / case.path)))]
    if case.status:
        runs.append(("status", base.proc("status", case.status)))
        runs.append(("status --json", inproc(base, "--json", "status", case.status)))
    for what, proc in runs:
        assert proc.returncode == 1, (what, proc.stdout, proc.stderr)
        if what == "status --json":
            assert "Traceback" not in proc.stderr + proc.stdout
            error = json.loads(proc.stdout)["error"]
            assert set(error) == {"code", "message"}
            line = error["message"]
        else:
            line = one_line(proc, validate=what.startswith("validate"))
            assert proc.stdout == "" or what.startswith("validate"), (what, proc.stdout)
        assert case.path in line, (what, line)
        for text in case.must:
            assert any(alt in line for alt in text.split("|")), (what, line)
        if case.line is not None:  # `status` names the line too
            assert f"{case.path}:{case.line}:" in line, (what, line)
        assert len(line) < 600, (what, line[:600])
        assert snapshot(base) == before, f"{what} changed the repository"


FROM_CASES = [c for c in CASES if c.from_file]


@pytest.mark.parametrize("case", FROM_CASES, ids=[c.name for c in FROM_CASES])
def test_broken_plan_new_from(base: Repo, case: Case, tmp_path: Path) -> None:
    src = tmp_path / "src" / "broken.yaml"
    src.parent.mkdir()
    src.write_bytes(case.data)
    before = snapshot(base)
    for args in (["plan", "new", "bad", "--from", str(src)], ["--json", "plan", "new", "bad", "--from", str(src)]):
        proc = inproc(base, *args) if "--json" in args else base.proc(*args)
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        if "--json" in args:
            assert "Traceback" not in proc.stderr + proc.stdout
            assert proc.stderr == ""
            out = json.loads(proc.stdout)
            assert set(out) == {"error"} and out["error"]["code"] == "invalid_file"
            line = out["error"]["message"]
        else:
            line = one_line(proc)
            assert proc.stdout == ""
        assert "broken.yaml" in line or BAD in line, line
        for text in case.must:
            assert any(alt in line for alt in text.split("|")), line
        assert snapshot(base) == before
        assert not (base.path / ".flow/plans/bad").exists()


def test_torn_line_is_not_repaired_by_readers(base: Repo) -> None:
    log = base.path / LOG
    log.write_bytes(log.read_bytes() + b'{"id": "01JD')
    before = snapshot(base)
    proc = base.proc("--json", "status", "webhooks")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tasks"][0]["state"] == "claimed"
    assert snapshot(base) == before


@pytest.mark.parametrize("args,what", [
    (["task", "add", "webhooks", "../evil", "--title", "x"], "'../evil'"),
    (["task", "add", "webhooks", "a b", "--title", "x"], "'a b'"),
    (["task", "add", "../evil", "T1", "--title", "x"], "'../evil'"),
    (["plan", "new", "../evil"], "'../evil'"),
    (["plan", "new", "a/b"], "'a/b'"),
    (["plan", "new", ".hidden"], "'.hidden'"),
    (["plan", "show", "../webhooks"], "'../webhooks'"),
    (["status", "../x"], "'../x'"),
    (["events", "webhooks", "../T-WH-01"], "'../T-WH-01'"),
])
def test_path_like_ids_are_usage_errors(base: Repo, args: list[str], what: str) -> None:
    before = snapshot(base)
    proc = base.proc(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert what in one_line(proc)
    assert snapshot(base) == before
    assert not (base.path / ".flow" / "evil").exists() and not (base.path / "evil").exists()
    js = inproc(base, "--json", *args)
    assert js.returncode == 2
    assert json.loads(js.stdout)["error"]["code"] == "usage"


def test_validate_ok_on_a_good_repository(base: Repo) -> None:
    proc = base.proc("--json", "validate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is True and out["errors"] == [] and out["files"] >= 3


def test_validate_reports_each_problem_once(base: Repo) -> None:
    (base.path / BAD).parent.mkdir(parents=True)
    (base.path / BAD).write_bytes(plan("tasks:\n  - {id: a, title: A, priority: urgent}\n  - {id: b, title: 7}\n"))
    proc = base.proc("validate")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if not SUMMARY.match(line)]
    assert len(lines) == 2 and all(line.startswith(f"{BAD}:") for line in lines), proc.stderr
    assert "urgent" in proc.stderr and "title" in proc.stderr


# ----- the CLI.md contract for one problem ------------------------------------------------------

def test_validate_single_problem_is_exactly_one_line(base: Repo) -> None:
    (base.path / BAD).parent.mkdir(parents=True)
    (base.path / BAD).write_bytes(plan("tasks: [\n"))
    proc = base.proc("validate")
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_validate_json_error_envelope(base: Repo) -> None:
    (base.path / BAD).parent.mkdir(parents=True)
    (base.path / BAD).write_bytes(plan("tasks: [\n"))
    proc = base.proc("--json", "validate")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert set(out["error"]) >= {"code", "message"}
    assert BAD in out["error"]["message"]
