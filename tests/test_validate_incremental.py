"""Issue 17: `validate` reads again only what changed. A plan file whose exact bytes passed the
checks one file gets on its own is not parsed again (its plan comes from the cache; the rules
between files still run), and a state log blob found clean at its path is not read again. The
answer is the one a run with no cache gives, whatever changed in between."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import Repo, init_repo
from helpers.cache import drop_derived

from flowgit.core.events import make_event
from flowgit.formats import yamlio
from flowgit.store.state import log_path

PLAN = "id: P\ntitle: Big enough\ntasks:\n" + "".join(
    f"  - id: T{i}\n    title: Task {i}\n" + (f"    depends_on: [T{i - 1}]\n" if i else "")
    for i in range(40))


def executing(path: Path) -> Repo:
    r = init_repo(path, "2")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.ok("claim", "P/T0", "--worker", "w")
    r.ok("done", "P/T0", "--worker", "w")
    return r


def fresh(r: Repo) -> dict[str, Any]:
    """`validate --json` with every cache of this clone gone."""
    drop_derived(r.path)
    shutil.rmtree(r.path / ".git" / "flowgit" / "checked", ignore_errors=True)
    return json.loads(r.proc("validate", "--json").stdout)


def forge(r: Repo, path: str, text: str) -> None:
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=r.path, input=text,
                          capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "GIT_INDEX_FILE": str(r.path.parent / "forge.index")}
    subprocess.run(["git", "read-tree", "flow/state"], cwd=r.path, env=env, check=True)
    subprocess.run(["git", "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"], cwd=r.path,
                   env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=r.path, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    r.git("update-ref", "refs/heads/flow/state", r.git("commit-tree", tree, "-p", "flow/state", "-m", "forged"))


def test_a_second_validate_parses_no_plan_and_answers_the_same(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    r = executing(tmp_path / "repo")
    first = r.ok("validate", "--json").json
    sizes: list[int] = []
    real = yamlio.loads

    def spy(text: str, path: str) -> Any:
        sizes.append(len(text))
        return real(text, path)
    monkeypatch.setattr(yamlio, "loads", spy)
    second = r.ok("validate", "--json").json
    assert second == first and second["ok"]
    assert all(size < len(PLAN) for size in sizes), sizes
    monkeypatch.setattr(yamlio, "loads", real)
    assert fresh(r) == first


def test_what_changed_is_checked_again(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    r.ok("validate")
    plan = r.path / ".flow" / "plans" / "P" / "plan.yaml"
    # a schema error in the plan: new bytes, so they are checked
    plan.write_text(PLAN.replace("title: Task 3\n", "title: Task 3\n    colour: red\n"))
    res = r.run("validate", "--json")
    assert res.code == 1 and "colour" in res.out
    assert json.loads(r.proc("validate", "--json").stdout) == fresh(r)
    plan.write_text(PLAN)
    assert r.ok("validate", "--json").json["ok"]
    # what other files decide is checked every time: the same plan bytes, an ADR it names gone
    plan.write_text(PLAN.replace("title: Big enough\n", "title: Big enough\nadrs: [ADR-0001]\n"))
    r.write(".flow/adrs/ADR-0001-x.yaml", "id: ADR-0001\ntitle: X\nstatus: accepted\n")
    assert r.ok("validate", "--json").json["ok"]
    (r.path / ".flow/adrs/ADR-0001-x.yaml").unlink()
    res = r.run("validate", "--json")
    assert res.code == 1 and "ADR-0001" in res.out
    assert json.loads(r.proc("validate", "--json").stdout) == fresh(r)


def test_a_log_changed_on_the_state_branch_is_read_again(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    assert r.ok("validate", "--json").json["ok"]
    path = log_path("P", "T0")
    text = r.git("show", f"flow/state:{path}") + "\n"
    forge(r, path, text + '{"not": "an event"}\n')
    res = r.run("validate", "--json")
    assert res.code == 1 and f"{path}" in res.out or "T0" in res.out
    assert json.loads(r.proc("validate", "--json").stdout) == fresh(r)
    # an unknown type is a warning, every time it is asked (a clean blob only is remembered)
    odd = make_event("task.shiny", "P", "T1", "w", 99, {}, 1_767_225_600.0).to_line()
    forge(r, path, text)
    forge(r, log_path("P", "T1"), odd)
    for _ in range(2):
        out = r.ok("validate", "--json").json
        assert out["ok"] and any("task.shiny" in w for w in out["warnings"])
    assert fresh(r) == out


def test_staged_validate_uses_what_the_work_tree_check_found(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    plan = r.path / ".flow" / "plans" / "P" / "plan.yaml"
    plan.write_text(PLAN + "  - id: extra\n    title: Extra\n")
    r.ok("validate")
    r.git("add", str(plan))
    assert r.ok("validate", "--staged", "--json").json["ok"]
    plan.write_text(PLAN + "  - id: extra\n    title: Extra\n    depends_on: [nothing]\n")
    r.git("add", str(plan))
    res = r.run("validate", "--staged", "--json")
    assert res.code == 1 and "nothing" in res.out
