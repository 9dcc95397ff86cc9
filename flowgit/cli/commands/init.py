"""`flowgit init`: the .flow/ directory, git attributes, merge driver and hooks."""
from __future__ import annotations

import shutil
from pathlib import Path

from flowgit import git
from flowgit.cli.app import App
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


def init(app: App) -> int:
    root = app.repo.root
    flow = root / ".flow"
    created: list[str] = []
    with app.repo.lock():
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
        local = setup_local(root, app.out.warn)
        sha = None
        if created:
            sha = git.commit_paths(root, created, "flow: init\n\nFlow-Event: init")
    result = {"initialised": bool(created), "created": created, "commit": sha, "configured": local}
    if created:
        text = f"initialised .flow/ in {root} ({len(created)} files, commit {sha[:10] if sha else '-'})"
    elif local:
        text = f".flow/ already here; set up this clone: {', '.join(local)}"
    else:
        text = f".flow/ already initialised in {root}: nothing to do"
    app.out.result(result, text)
    return 0
