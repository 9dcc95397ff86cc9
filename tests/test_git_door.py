"""One door for git: `flowgit/git.py` is the only module that builds git argv, reads git's
own state files (MERGE_HEAD, index.lock, HEAD) or imports GitPython. An ast scan, so a new
`subprocess.run(["git", ...])` or `git._run([...])` anywhere else fails here."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flowgit import git

PACKAGE = Path(__file__).resolve().parents[1] / "flowgit"
DOOR = PACKAGE / "git.py"

# Subcommands (and global options) an argv list for git could start with.
GIT_WORDS = frozenset({
    "git", "add", "am", "apply", "bisect", "blame", "branch", "cat-file", "checkout",
    "cherry-pick", "clean", "clone", "commit", "config", "diff", "diff-index", "diff-tree",
    "fetch", "for-each-ref", "gc", "grep", "hash-object", "init", "log", "ls-files", "ls-remote",
    "ls-tree", "maintenance", "merge", "merge-base", "mv", "notes", "pull", "push", "read-tree",
    "rebase", "reflog", "remote", "reset", "restore", "rev-list", "rev-parse", "revert", "rm",
    "show", "show-ref", "stash", "status", "switch", "symbolic-ref", "tag", "update-index",
    "update-ref", "verify-commit", "worktree", "write-tree", "-c", "-C", "--no-optional-locks",
    "--git-dir", "--work-tree",
})
# Files of git's own that only the door reads (as `something / "NAME"`).
GIT_FILES = frozenset({
    "MERGE_HEAD", "MERGE_MODE", "MERGE_MSG", "index.lock", "index", "HEAD", "HEAD.lock",
    "FETCH_HEAD", "ORIG_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "BISECT_LOG", "packed-refs",
    "rebase-merge", "rebase-apply", "commondir",
})


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p not in (DOOR, PACKAGE / "git_state.py"))


def _first_string(node: ast.AST) -> str | None:
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        first = node.elts[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def violations(path: Path, package: Path = PACKAGE) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    rel = path.relative_to(package.parent).as_posix()
    found = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                word = _first_string(arg)
                if word in GIT_WORDS:
                    found.append(f"{where}: git argv {word!r} built outside flowgit/git.py")
        elif isinstance(node, ast.Assign) and _first_string(node.value) in GIT_WORDS:
            found.append(f"{where}: git argv {_first_string(node.value)!r} built outside flowgit/git.py")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "git" and (node.attr.startswith("_") or node.attr in ("run", "out")):
            found.append(f"{where}: git.{node.attr} is the door's own: add a named function to git.py")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) \
                and isinstance(node.right, ast.Constant) and node.right.value in GIT_FILES:
            found.append(f"{where}: reads git's {node.right.value} directly: ask flowgit/git.py")
        elif isinstance(node, ast.Import) and any(a.name == "git" or a.name.startswith("git.") for a in node.names):
            found.append(f"{where}: imports GitPython outside flowgit/git.py")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and (node.module == "git" or node.module.startswith("git.")):
            found.append(f"{where}: imports GitPython outside flowgit/git.py")
    return found


def test_git_py_is_the_only_module_that_speaks_git() -> None:
    problems = [v for path in modules() for v in violations(path)]
    assert problems == []


def test_the_scan_catches_what_it_is_for(tmp_path: Path) -> None:
    """The scan itself: each way around the door is seen."""
    bad = tmp_path / "flowgit" / "bad.py"
    bad.parent.mkdir()
    bad.write_text(
        "import subprocess\nimport git as gitpython\nfrom flowgit import git\n"
        "subprocess.run(['git', 'status'])\n"
        "git._run(['merge-base', a, b], root)\n"
        "args = ['worktree', 'add', path]\n"
        "(dirs.git_dir / 'MERGE_HEAD').exists()\n"
        "git.out(['rev-parse', 'HEAD'], root)\n")
    found = violations(bad, bad.parent)
    assert sorted({int(v.split(":")[1]) for v in found}) == [2, 4, 5, 6, 7, 8], found


def test_gitpython_is_behind_the_door_and_off_the_hot_path() -> None:
    """GitPython is imported inside git.file_history only (history), never at module level."""
    tree = ast.parse(DOOR.read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any(isinstance(n, ast.Import) and any(a.name == "git" for a in n.names) for n in top)
    users = [f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
             and any(isinstance(n, ast.Import) and any(a.name == "git" for a in n.names) for n in ast.walk(f))]
    assert users == ["file_history"]


@pytest.mark.parametrize("text, version", [
    ("git version 2.39.5", (2, 39)), ("git version 2.24.0.windows.1", (2, 24)),
    ("git version 2.39.3 (Apple Git-146)", (2, 39)), ("nonsense", None),
])
def test_git_version_is_read_from_any_build(text: str, version: tuple[int, int] | None) -> None:
    assert git.parse_version(text) == version


@pytest.mark.parametrize("value, ok", [
    ("a" * 40, True), ("0123456789abcdef" * 4, True), ("A" * 40, False), ("a" * 39, False),
    ("a" * 41, False), ("--output=/tmp/x", False), ("HEAD", False), (None, False), (40, False),
    ("a" * 40 + "\n", False),
])
def test_full_ids_only(value: object, ok: bool) -> None:
    assert git.is_full_id(value) is ok
