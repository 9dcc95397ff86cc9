"""Issue 17: a big plan's new version goes into the plan's own pack as a delta against the one
before (store/planpack.py), so `task add` and `task edit` grow `.git` by the change, not by the
whole plan. What git reads back is the file, byte for byte; `fsck`, `verify-pack` and `gc` find
nothing wrong; an edit whose chain is gone or too long starts a new one."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import Repo, init_repo, make_git_repo

from flowgit.store import planpack
from flowgit.store.repo import FlowRepo


def git(path: Path, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], cwd=path, input=data, capture_output=True, check=True).stdout


def loose_plan_blobs(path: Path, ids: set[str]) -> set[str]:
    found = set()
    for oid in ids:
        if (path / ".git" / "objects" / oid[:2] / oid[2:]).exists():
            found.add(oid)
    return found


def flowgit_packs(path: Path) -> list[Path]:
    return sorted((path / ".git" / "objects" / "pack").glob("pack-*.pack"))


@pytest.mark.parametrize("rebase", [256 * 1024, 1000])
def test_versions_read_back_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rebase: int) -> None:
    monkeypatch.setattr(planpack, "BIG", 10)
    monkeypatch.setattr(planpack, "DEPTH", 3)
    monkeypatch.setattr(planpack, "REBASE", rebase)
    root = make_git_repo(tmp_path / "repo")
    Repo(root).ok("init", "--format", "1")
    repo = FlowRepo(root)
    old = ("".join(f"line {i} " + "é" * (i % 3) + "\n" for i in range(3000))).encode()
    git(root, "hash-object", "-w", "--stdin", data=old)
    versions = []
    edits = [(len(old), len(old), b"appended\n"), (100, 140, b"middle\n" * 40), (0, 0, b"first\n"),
             (5000, 5000, b"x" * 70000), (10, 2000, b""), (3, 9, b"tail")]
    for start, end, lines in edits:
        planpack.store_version(repo, "P", old, start, end, lines)
        new = old[:start] + lines + old[end:]
        oid = planpack.blob_id(new).hex()
        assert git(root, "cat-file", "-p", oid) == new
        versions.append(oid)
        old = new
    for oid in versions:  # every version stays readable after the chain moved on
        assert planpack.blob_id(git(root, "cat-file", "-p", oid)).hex() == oid
    assert not loose_plan_blobs(root, set(versions))
    for idx in (root / ".git" / "objects" / "pack").glob("*.idx"):
        git(root, "verify-pack", str(idx))
    git(root, "fsck", "--full", "--no-dangling")
    packs = flowgit_packs(root)
    # DEPTH 3: the fourth delta is made against the chain's first version, unless more than
    # REBASE new bytes came since it: then a second chain started, the first kept whole
    assert len(packs) == (1 if rebase > 80000 else 2)
    git(root, "gc", "-q", "--prune=now")
    git(root, "fsck", "--full", "--no-dangling")


def test_task_add_and_edit_grow_git_by_the_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planpack, "BIG", 4096)
    r = init_repo(tmp_path / "repo", "2")
    r.plan("P", "id: P\ntitle: Big\ntasks:\n" + "".join(
        f"  - id: T{i}\n    title: Task number {i} of the big plan\n" for i in range(400)))
    r.ok("submit", "P")
    r.ok("task", "add", "P", "A0", "--title", "First")
    plan = r.path / ".flow" / "plans" / "P" / "plan.yaml"
    ids = set()
    for k in range(1, 4):
        r.ok("task", "add", "P", f"A{k}", "--title", f"Added {k}", "--dep", "T3")
        ids.add(planpack.blob_id(plan.read_bytes()).hex())
        r.ok("task", "edit", f"P/T{k}", "--title", f"Edited {k}")
        ids.add(planpack.blob_id(plan.read_bytes()).hex())
    assert r.git("show", "HEAD:.flow/plans/P/plan.yaml") + "\n" == plan.read_text()
    assert not loose_plan_blobs(r.path, ids)
    sizes = dict(line.split() for line in r.git(
        "cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objectsize:disk)").splitlines())
    assert all(int(sizes[oid]) < 1000 for oid in ids), [sizes[oid] for oid in ids]
    assert len(flowgit_packs(r.path)) == 1
    subprocess.run(["git", "fsck", "--full", "--no-dangling"], cwd=r.path, check=True, capture_output=True)
    # after gc packed everything, the next edit starts a new chain
    subprocess.run(["git", "gc", "-q"], cwd=r.path, check=True)
    r.ok("task", "add", "P", "B1", "--title", "After gc")
    r.ok("task", "add", "P", "B2", "--title", "After gc too")
    assert r.git("show", "HEAD:.flow/plans/P/plan.yaml") + "\n" == plan.read_text()
    subprocess.run(["git", "fsck", "--full", "--no-dangling"], cwd=r.path, check=True, capture_output=True)
    assert "B2" in r.ok("status", "P", "--json").out


def test_a_chain_record_that_does_not_match_its_pack_starts_another(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from flowgit.store.kept import kept

    monkeypatch.setattr(planpack, "BIG", 10)
    root = make_git_repo(tmp_path / "repo")
    Repo(root).ok("init", "--format", "1")
    repo = FlowRepo(root)
    old = b"".join(b"row %d\n" % i for i in range(2000))
    git(root, "hash-object", "-w", "--stdin", data=old)
    planpack.store_version(repo, "P", old, len(old), len(old), b"one\n")
    first = flowgit_packs(root)
    entry = kept(repo).entry("pack-P")
    entry["entries"] = entry["entries"][:1]  # a record that lies about its pack
    new = old + b"one\n"
    planpack.store_version(repo, "P", new, 0, 0, b"two\n")
    assert git(root, "cat-file", "-p", planpack.blob_id(b"two\n" + new).hex()) == b"two\n" + new
    assert git(root, "cat-file", "-p", planpack.blob_id(new).hex()) == new
    assert set(first) <= set(flowgit_packs(root))  # the pack it could not vouch for is kept
    git(root, "fsck", "--full", "--no-dangling")
