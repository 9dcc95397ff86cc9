"""Issue 17: `task add` and `task edit` splice over every row of the plan, so they read the rows
whole and never a task's bucket of them (store/planindex.py keeps 64 buckets per version for the
transitions): building a version's buckets wrote 64 cache files per edit (about 130 ms at 50,000
tasks, each edit being a new version). Real processes, as a user runs them."""
from __future__ import annotations

from pathlib import Path

from helpers import Repo

PLAN = "id: p\ntitle: Rows\ntasks:\n" + "".join(
    f"  - id: t{i}\n    title: Task {i}\n" + (f"    depends_on: [t{i - 1}]\n" if i else "") for i in range(40))


def _buckets(repo: Repo) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (repo.path / ".git").rglob("p@task*.marshal")}


def test_add_and_edit_write_no_bucket(repo: Repo) -> None:
    repo.plan("p", PLAN)
    for argv in (("task", "add", "p", "warm", "--title", "Warm"), ("claim", "p/t0", "--worker", "w")):
        assert repo.proc(*argv).returncode == 0
    before = _buckets(repo)
    assert before, "the claim keeps the rows in buckets"
    for argv in (("task", "add", "p", "n1", "--title", "New", "--dep", "t39"),
                 ("task", "edit", "p/t5", "--title", "Renamed")):
        res = repo.proc(*argv)
        assert res.returncode == 0, res.stderr
        assert _buckets(repo) == before, argv
    res = repo.proc("task", "edit", "p/nope", "--title", "x")
    assert res.returncode == 1 and "no task 'nope'" in res.stderr
    assert repo.ok("task", "show", "p/t5", "--json").json["title"] == "Renamed"
