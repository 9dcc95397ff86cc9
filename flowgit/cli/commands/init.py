"""`flowgit init`: the .flow/ directory, git attributes, merge driver and hooks."""
from __future__ import annotations

import shlex
import shutil
import sys
from importlib import resources
from pathlib import Path

from flowgit import git
from flowgit.app import App
from flowgit.store import write_atomic

GITATTRIBUTES = ".flow/**/*.jsonl merge=flowgit-jsonl"
GITIGNORE = (".flow/.cache/", ".flow/logs/")


def template_dir() -> Path:
    """The template shipped with the package, or the repository's own in a checkout."""
    try:
        packaged = resources.files("flowgit") / "template"
        if packaged.is_dir():
            return Path(str(packaged))
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / ".flow-template"


def _ensure_line(path: Path, line: str) -> bool:
    text = path.read_text() if path.exists() else ""
    if line in text.splitlines():
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    write_atomic(path, (text + line + "\n").encode())
    return True


def driver_command() -> str:
    """How git should call our merge driver: the console script if on PATH, else this Python."""
    exe = shutil.which("flowgit")
    prefix = shlex.quote(exe) if exe else f"{shlex.quote(sys.executable)} -m flowgit"
    return f"{prefix} merge-driver %O %A %B"


def setup_local(root: Path) -> list[str]:
    """Per-clone settings that git does not carry: the merge driver and the hooks."""
    done = []
    if git.config_get(root, "merge.flowgit-jsonl.driver") is None:
        git.run(["config", "merge.flowgit-jsonl.name", "flowgit event-log union"], root)
        git.run(["config", "merge.flowgit-jsonl.driver", driver_command()], root)
        done.append("merge driver")
    try:
        from flowgit.commands import hooks
    except ImportError:
        return done
    done.extend(hooks.install_quiet(root))
    return done


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
        local = setup_local(root)
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
