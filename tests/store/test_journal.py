"""store/journal.py: what a write has begun, so that the next command recovers a crash. Each
test leaves what a command killed between append and commit leaves (the journal and the
appended lines, nothing committed) and calls `recover` under the lock, as the write door does."""
from __future__ import annotations

import json

import pytest
from helpers import Repo, events, log_path, subjects, trailers

from flowgit.clock import wall_now
from flowgit.core.events import make_event
from flowgit.store.files import append
from flowgit.store.repo import FlowRepo

PLAN = "id: p\ntitle: P\ntasks:\n  - id: a\n    title: A\n  - id: b\n    title: B\n"


@pytest.fixture
def planned(repo: Repo) -> Repo:
    repo.plan("p", PLAN)
    return repo


def crashed_claim(repo: Repo, task: str, actor: str = "w9") -> FlowRepo:
    """A claim appended and journaled by a command that died before its commit."""
    fr = FlowRepo(repo.path)
    now = wall_now()
    ev = make_event("task.claimed", "p", task, actor, 1,
                    {"lease_until": None, "lease_seconds": 900}, now)
    path = log_path(repo, "p", task)
    fr.journal.note_write([fr.rel(path)])
    append(path, [ev])
    return fr


@pytest.mark.format1
def test_recover_commits_what_a_crashed_write_appended(planned: Repo) -> None:
    fr = crashed_claim(planned, "a")
    before = planned.commits()
    assert fr.journal.exists() and planned.git("status", "--porcelain") != ""
    with fr.lock():
        sha = fr.journal.recover()
    assert sha is not None and planned.commits() == before + 1
    assert trailers(planned)["Flow-Event"] == "recover"
    assert subjects(planned, "-n", "1") == ["flow: recover events appended before a crash"]
    assert not fr.journal.exists() and planned.git("status", "--porcelain") == ""
    assert [e["actor"] for e in events(planned, "p", "a")] == ["w9"]


def test_recover_without_a_journal_does_nothing(planned: Repo) -> None:
    fr = FlowRepo(planned.path)
    before = planned.commits()
    with fr.lock():
        assert fr.journal.recover() is None
    assert planned.commits() == before


def test_recover_when_the_commit_went_through_only_clears_the_journal(planned: Repo) -> None:
    planned.ok("claim", "p/a", "--worker", "w1")
    fr = FlowRepo(planned.path)
    fr.journal.note_write([fr.rel(log_path(planned, "p", "a"))])  # died after its commit
    before = planned.commits()
    with fr.lock():
        assert fr.journal.recover() is None
    assert planned.commits() == before and not fr.journal.exists()


@pytest.mark.format1
def test_recover_cuts_a_torn_last_line_and_keeps_the_whole_ones(planned: Repo) -> None:
    fr = crashed_claim(planned, "a")
    path = log_path(planned, "p", "a")
    with path.open("ab") as fh:
        fh.write(b'{"id": "01J')  # the next append, cut by the crash
    with fr.lock():
        assert fr.journal.recover() is not None
    assert path.read_bytes().endswith(b"\n")
    assert [e["type"] for e in events(planned, "p", "a")] == ["task.claimed"]
    assert planned.git("status", "--porcelain") == ""


def test_recover_commits_only_files_under_flow(planned: Repo) -> None:
    fr = FlowRepo(planned.path)
    (planned.path / "README.md").write_text("the user's edit\n")
    fr.journal.path.write_text(json.dumps({"paths": ["README.md", ".flow/../README.md"]}))
    before = planned.commits()
    with fr.lock():
        assert fr.journal.recover() is None
    assert planned.commits() == before and not fr.journal.exists()
    assert planned.git("status", "--porcelain") == "M README.md"


def test_any_write_recovers_first(planned: Repo) -> None:
    crashed_claim(planned, "a")
    planned.ok("claim", "p/b", "--worker", "w1")
    assert subjects(planned, "-n", "2")[1] == "flow: recover events appended before a crash"
    assert planned.git("status", "--porcelain") == ""


def test_a_journal_that_is_not_json_is_dropped(planned: Repo) -> None:
    fr = FlowRepo(planned.path)
    fr.journal.path.write_text("{not json")
    with fr.lock():
        assert fr.journal.recover() is None
    assert not fr.journal.exists()
    assert fr.journal.merge_entry() is None
