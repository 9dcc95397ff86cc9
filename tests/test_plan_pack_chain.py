"""Issue 17: a big plan's chain of versions (store/planpack.py) never writes the whole plan again
once it holds one: past DEPTH deltas in a row the next version is a delta against the chain's
first one (the splices since it, composed), and after a pull (the version edited is not the
chain's last) the new version is a delta against the chain's last one through what the pull
changed. The one whole version a new chain writes takes the place of its loose copy. Every
version reads back byte for byte through git, and `fsck`, `verify-pack` and `gc` agree."""
from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from helpers import Repo, init_repo

from flowgit.store import planpack
from flowgit.store.kept import kept
from flowgit.store.repo import FlowRepo


def git(path: Path, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], cwd=path, input=data, capture_output=True, check=True).stdout


def stored(path: Path, oid: str) -> tuple[int, str]:
    """The blob's size in .git and the object it is a delta against (zeros: none)."""
    size, base = git(path, "cat-file", "--batch-check=%(objectsize:disk) %(deltabase)",
                     data=f"{oid}\n".encode()).split()
    return int(size), base.decode()


def loose(path: Path, oid: str) -> bool:
    return (path / ".git" / "objects" / oid[:2] / oid[2:]).exists()


def apply(ops: planpack.Ops, base: bytes) -> bytes:
    return b"".join(op if isinstance(op, bytes) else base[op[0]: op[0] + op[1]] for op in ops)


def test_composed_copies_give_the_same_text() -> None:
    rng = random.Random(7)
    for _ in range(300):
        base = bytes(rng.randrange(97, 123) for _ in range(rng.randrange(0, 400)))
        ops: planpack.Ops = [(0, len(base))]
        text = base
        for _ in range(rng.randrange(1, 6)):
            start = rng.randrange(len(text) + 1)
            end = rng.randrange(start, len(text) + 1)
            new = bytes(rng.randrange(65, 91) for _ in range(rng.randrange(0, 30)))
            ops = planpack.compose([(0, start), new, (end, len(text) - end)], ops)
            text = text[:start] + new + text[end:]
            assert apply(ops, base) == text
        p, s = planpack.common_ends(base, text)
        assert base[:p] == text[:p] and base[len(base) - s:] == text[len(text) - s:]
        assert p + s <= min(len(base), len(text))


def big_plan(n: int) -> str:
    return "id: P\ntitle: Big\ntasks:\n" + "".join(
        f"  - id: T{i}\n    title: Task number {i} of the big plan\n" for i in range(n))


@pytest.fixture
def big(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setattr(planpack, "BIG", 4096)
    monkeypatch.setattr(planpack, "DEPTH", 4)
    r = init_repo(tmp_path / "repo", "2")
    r.plan("P", big_plan(600))
    r.ok("submit", "P")
    return r


def test_no_edit_writes_the_whole_plan_again(big: Repo) -> None:
    plan = big.path / ".flow" / "plans" / "P" / "plan.yaml"
    before = planpack.blob_id(plan.read_bytes()).hex()
    assert loose(big.path, before)
    big.ok("task", "add", "P", "A0", "--title", "First")  # the chain's first version: the one before
    assert not loose(big.path, before)  # in the chain's pack now, not twice
    assert git(big.path, "cat-file", "-p", before) == big.git("show", "HEAD~1:.flow/plans/P/plan.yaml").encode() + b"\n"
    versions = []
    for k in range(1, 24):
        if k % 3:
            big.ok("task", "add", "P", f"A{k}", "--title", f"Added {k}", "--dep", f"T{k}")
        else:
            big.ok("task", "edit", f"P/T{k * 7}", "--title", f"Edited {k}")
        oid = planpack.blob_id(plan.read_bytes()).hex()
        size, base = stored(big.path, oid)
        assert size < 400 and base.strip("0") and not loose(big.path, oid), (k, size, base)  # a delta
        versions.append(oid)
        assert kept(FlowRepo(big.path)).entry("pack-P")["depth"] <= planpack.DEPTH
    assert len(list((big.path / ".git" / "objects" / "pack").glob("pack-*.pack"))) == 1
    for oid in versions:
        assert planpack.blob_id(git(big.path, "cat-file", "-p", oid)).hex() == oid
    for idx in (big.path / ".git" / "objects" / "pack").glob("*.idx"):
        git(big.path, "verify-pack", str(idx))
    git(big.path, "fsck", "--full", "--no-dangling")
    git(big.path, "gc", "-q", "--prune=now")  # the chain's pack is kept: the chain goes on
    for oid in versions:
        assert planpack.blob_id(git(big.path, "cat-file", "-p", oid)).hex() == oid
    big.ok("task", "add", "P", "after-gc", "--title", "After gc")
    size, base = stored(big.path, planpack.blob_id(plan.read_bytes()).hex())
    assert size < 400 and base.strip("0")
    git(big.path, "fsck", "--full", "--no-dangling")


def test_a_pull_continues_the_chain(big: Repo) -> None:
    plan = big.path / ".flow" / "plans" / "P" / "plan.yaml"
    big.ok("task", "add", "P", "A0", "--title", "First")
    big.ok("task", "add", "P", "A1", "--title", "Second")
    packs = sorted((big.path / ".git" / "objects" / "pack").glob("pack-*.pack"))
    for k in range(3):
        plan.write_text(plan.read_text().replace(f"Task number {100 + k} ", f"Task {100 + k}, pulled "))
        big.git("commit", "-q", "--no-verify", "-am", "a teammate's edit")
        pulled = planpack.blob_id(plan.read_bytes()).hex()
        big.ok("task", "add", "P", f"B{k}", "--title", f"After pull {k}")
        oid = planpack.blob_id(plan.read_bytes()).hex()
        size, base = stored(big.path, oid)
        assert size < 400 and base.strip("0") and base != pulled, (size, base)  # against the chain
        assert big.git("show", "HEAD:.flow/plans/P/plan.yaml") + "\n" == plan.read_text()
        assert planpack.blob_id(git(big.path, "cat-file", "-p", pulled)).hex() == pulled
    assert len(sorted((big.path / ".git" / "objects" / "pack").glob("pack-*.pack"))) == len(packs)
    git(big.path, "fsck", "--full", "--no-dangling")
    assert "B2" in big.ok("status", "P", "--json").out


def test_too_much_new_text_since_the_first_version_starts_a_new_chain(
        big: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planpack, "REBASE", 200)
    plan = big.path / ".flow" / "plans" / "P" / "plan.yaml"
    versions = []
    for k in range(12):
        big.ok("task", "add", "P", f"A{k}", "--title", f"Added task number {k} with a longer title")
        versions.append(planpack.blob_id(plan.read_bytes()).hex())
    folder = big.path / ".git" / "objects" / "pack"
    assert len(list(folder.glob("pack-*.pack"))) >= 2
    assert len(list(folder.glob("pack-*.keep"))) == 1  # only the last chain is kept from gc
    git(big.path, "gc", "-q", "--prune=now")
    assert len(list(folder.glob("pack-*.pack"))) == 2
    for oid in versions:
        assert planpack.blob_id(git(big.path, "cat-file", "-p", oid)).hex() == oid
    git(big.path, "fsck", "--full", "--no-dangling")
