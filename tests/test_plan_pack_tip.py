"""Issue 17: an edit continuing a big plan's chain of versions (store/planpack.py) knows the
chain's last version is the one it edits by that version's sha256 (the splice index's digest),
so it does not hash the 6 MB of it again for its git id; whatever the chain holds, every
version still reads back byte for byte and git finds the packs sound."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import init_repo

from flowgit.store import planpack


def test_the_chain_tip_is_known_by_its_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planpack, "BIG", 4096)
    r = init_repo(tmp_path / "repo", "2")
    r.plan("P", "id: P\ntitle: Big\ntasks:\n" + "".join(
        f"  - id: T{i}\n    title: Task number {i} of the big plan\n" for i in range(300)))
    r.ok("submit", "P")
    r.ok("task", "add", "P", "A0", "--title", "First")  # a new chain: the version before, whole
    hashed: list[int] = []
    real = planpack.blob_id

    def spy(data: bytes) -> Any:
        hashed.append(len(data))
        return real(data)
    monkeypatch.setattr(planpack, "blob_id", spy)
    plan = r.path / ".flow" / "plans" / "P" / "plan.yaml"
    for k in range(1, 4):
        hashed.clear()
        r.ok("task", "add", "P", f"A{k}", "--title", f"Added {k}")
        assert hashed == [plan.stat().st_size], hashed  # the new version only
        r.ok("task", "edit", f"P/T{k}", "--title", f"Edited {k}")
        assert r.git("show", "HEAD:.flow/plans/P/plan.yaml") + "\n" == plan.read_text()
    # a version the chain does not end with (a commit from outside): hashed, a new chain
    plan.write_text(plan.read_text().replace("Task number 9 ", "Task nine "))
    r.git("commit", "-q", "--no-verify", "-am", "from outside")
    hashed.clear()
    r.ok("task", "add", "P", "B1", "--title", "After the outside edit")
    assert len(hashed) == 2, hashed
    assert r.git("show", "HEAD:.flow/plans/P/plan.yaml") + "\n" == plan.read_text()
    subprocess.run(["git", "fsck", "--full", "--no-dangling"], cwd=r.path, check=True, capture_output=True)
