"""Issue 17: `diff` keeps what it parsed by content. A big plan file is parsed once per content
(its YAML kept by digest in the git dir), the states of a plan without task logs once per plan
and plan log, and each state log blob read once for the code commits its events name. Every
answer is the one a run with nothing kept gives."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import Repo, copy_repo, init_repo, isolate_env

from flowgit.formats import yamlio
from flowgit.store import snapshot

N = 1600  # tasks: a plan.yaml above snapshot.BIG


def plan_text(n: int, renamed: int | None = None) -> str:
    return "id: P\ntitle: Big\ntasks:\n" + "".join(
        f"  - id: T{i}\n    title: {'Renamed' if i == renamed else 'Task'} {i}\n"
        + (f"    depends_on: [T{i - 10}]\n" if i >= 10 else "") for i in range(n))


def big_repo(path: Path) -> Repo:
    r = init_repo(path, "2")
    r.plan("P", plan_text(N))
    r.ok("submit", "P")
    plan = r.path / ".flow" / "plans" / "P" / "plan.yaml"
    assert len(plan.read_bytes()) >= snapshot.BIG
    for k in range(3):
        plan.write_text(plan_text(N, renamed=100 + k) + "".join(
            f"  - id: X{j}\n    title: Extra {j}\n    depends_on: [T{N - 1}]\n" for j in range(k + 1)))
        r.git("commit", "-qam", f"edit {k}")
        r.ok("claim", f"P/T{k}", "--worker", "w")
        r.ok("done", f"P/T{k}", "--worker", "w")
    return r


def diff_json(r: Repo, *args: str) -> Any:
    return json.loads(r.proc("diff", *args, "--format", "json").stdout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`big_repo` once for the module; each test works on a copy of it."""
    base = tmp_path_factory.mktemp("big")
    with pytest.MonkeyPatch.context() as mp:  # module scope: before the test's own `_isolate`
        isolate_env(mp, base / "home")
        return big_repo(base / "repo").path


def test_diff_kept_by_content_answers_as_a_fresh_one(built: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    r = copy_repo(built, tmp_path / "repo")
    first = diff_json(r, "HEAD~2", "HEAD")
    assert {t["id"] for t in first["plans"][0]["tasks_added"]} == {"X1", "X2"}
    assert [t["id"] for t in first["plans"][0]["tasks_modified"]] == ["T100", "T102"]
    assert {t["task"] for t in first["tasks_completed"]} >= {"T1", "T2"}
    kept = r.path / ".git" / "flowgit" / "checked"
    assert list(kept.glob("yaml-*.marshal")) and list(kept.glob("codes-*.marshal"))
    sizes: list[int] = []
    real = yamlio.loads

    def spy(text: str, path: str) -> Any:
        sizes.append(len(text))
        return real(text, path)
    monkeypatch.setattr(yamlio, "loads", spy)
    again = r.run("diff", "HEAD~2", "HEAD", "--format", "json")
    assert json.loads(again.out) == first
    assert all(size < snapshot.BIG for size in sizes), sizes  # neither plan parsed again
    monkeypatch.setattr(yamlio, "loads", real)
    shutil.rmtree(kept)
    assert diff_json(r, "HEAD~2", "HEAD") == first
    # the text and markdown forms read the same result
    assert "T102" in r.ok("diff", "HEAD~2", "HEAD").out


def test_new_events_and_new_versions_are_read(built: Path, tmp_path: Path) -> None:
    r = copy_repo(built, tmp_path / "repo")
    before = diff_json(r, "HEAD~1", "HEAD")
    r.ok("claim", "P/T5", "--worker", "w")
    r.ok("done", "P/T5", "--worker", "w")  # names HEAD: completed in HEAD~1..HEAD now
    after = diff_json(r, "HEAD~1", "HEAD")
    assert {t["task"] for t in after["tasks_completed"]} == {t["task"] for t in before["tasks_completed"]} | {"T5"}
    plan = r.path / ".flow" / "plans" / "P" / "plan.yaml"
    plan.write_text(plan.read_text().replace("title: Task 7\n", "title: Seventh\n"))
    work = diff_json(r, "HEAD")  # HEAD against the work tree
    assert [t["id"] for t in work["plans"][0]["tasks_modified"]] == ["T7"]
    shutil.rmtree(r.path / ".git" / "flowgit" / "checked")
    assert diff_json(r, "HEAD") == work
