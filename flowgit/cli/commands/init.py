"""`flowgit init`: the .flow/ directory, git attributes, merge driver and hooks."""
from __future__ import annotations

import shutil
from pathlib import Path

from flowgit import git
from flowgit.cli.app import App
from flowgit.errors import NoIdentity
from flowgit.ops.clone_setup import GITATTRIBUTES, setup_local
from flowgit.resources import template_dir
from flowgit.store.repo import write_atomic

GITIGNORE = (".flow/.cache/", ".flow/logs/")


def _ensure_line(path: Path, line: str) -> bool:
    text = path.read_text() if path.exists() else ""
    if line in text.splitlines():
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    write_atomic(path, (text + line + "\n").encode())
    return True


def _has_line(path: Path, line: str) -> bool:
    return path.exists() and line in path.read_text().splitlines()


def _would_commit(root: Path) -> bool:
    src = template_dir()
    return (any(not (root / ".flow" / item.relative_to(src)).exists()
                for item in src.rglob("*") if item.is_file())
            or not _has_line(root / ".gitattributes", GITATTRIBUTES)
            or not all(_has_line(root / ".gitignore", line) for line in GITIGNORE))


def _take_back(root: Path, created: list[str], kept: dict[str, bytes | None], dirs: list[Path]) -> None:
    """A failed init leaves the work tree and the index as it found them."""
    git.unstage(root, created)
    for rel in created:
        if rel.startswith(".flow/"):
            (root / rel).unlink(missing_ok=True)
    for name, data in kept.items():
        if data is None:
            (root / name).unlink(missing_ok=True)
        else:
            write_atomic(root / name, data)
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:
            pass


def init(app: App) -> int:
    root = app.repo.root
    flow = root / ".flow"
    created: list[str] = []
    if _would_commit(root):
        # the commit would fail after the files are written: say so before writing anything
        problem = git.identity_problem(root)
        if problem:
            raise NoIdentity(f"git has no identity to commit with here ({problem}): set one with "
                             "`git config user.name NAME` and `git config user.email EMAIL`, then "
                             "run `flowgit init` again")
    with app.repo.lock():
        dirs = [d for d in [flow, *(flow / i.relative_to(template_dir()) for i in template_dir().rglob("*")
                                     if i.is_dir())] if not d.exists()]
        kept = {name: (root / name).read_bytes() if (root / name).exists() else None
                for name in (".gitattributes", ".gitignore")}
        try:
            src = template_dir()
            for item in sorted(src.rglob("*")):
                rel = item.relative_to(src)
                dest = flow / rel
                if item.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                elif not dest.exists():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(item, dest)
                    created.append(f".flow/{rel.as_posix()}")
            if _ensure_line(root / ".gitattributes", GITATTRIBUTES):
                created.append(".gitattributes")
            if any([_ensure_line(root / ".gitignore", line) for line in GITIGNORE]):
                created.append(".gitignore")
            sha = None
            if created:
                sha = git.commit_paths(root, created, "flow: init\n\nFlow-Event: init")
        except BaseException:
            _take_back(root, created, kept, dirs)
            raise
        local = setup_local(root, app.out.warn)
    result = {"initialised": bool(created), "created": created, "commit": sha, "configured": local}
    if created:
        text = f"initialised .flow/ in {root} ({len(created)} files, commit {sha[:10] if sha else '-'})"
    elif local:
        text = f".flow/ already here; set up this clone: {', '.join(local)}"
    else:
        text = f".flow/ already initialised in {root}: nothing to do"
    app.out.result(result, text)
    return 0
