"""`flowgit init`: the .flow/ directory, git attributes, merge driver and hooks."""
from __future__ import annotations

from pathlib import Path

from flowgit import git
from flowgit.cli.app import App
from flowgit.errors import NoIdentity
from flowgit.ops.clone_setup import GITATTRIBUTES, setup_local
from flowgit.resources import template_files
from flowgit.store.repo import FlowRepo

GITIGNORE = (".flow/.cache/", ".flow/logs/")


def _with_lines(path: Path, lines: tuple[str, ...]) -> bytes | None:
    """The file with the missing `lines` added, or None when it has them all."""
    text = path.read_text() if path.exists() else ""
    missing = [line for line in lines if line not in text.splitlines()]
    if not missing:
        return None
    if text and not text.endswith("\n"):
        text += "\n"
    return (text + "".join(line + "\n" for line in missing)).encode()


def _would_commit(root: Path) -> bool:
    return (any(not (root / ".flow" / rel).exists() for rel, _ in template_files())
            or _with_lines(root / ".gitattributes", (GITATTRIBUTES,)) is not None
            or _with_lines(root / ".gitignore", GITIGNORE) is not None)


def init(app: App, fmt: int = 2) -> int:
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
    with app.repo.writing() as w:
        for rel, data in template_files():
            if not (flow / rel).exists():
                if str(rel) == "config.yaml" and fmt == 1:
                    data = data.replace(b"\nversion: 2 ", b"\nversion: 1 ", 1)
                w.replace(flow / rel, data)
                created.append(f".flow/{rel}")
        for name, lines in ((".gitattributes", (GITATTRIBUTES,)), (".gitignore", GITIGNORE)):
            content = _with_lines(root / name, lines)
            if content is not None:
                w.replace(root / name, content)
                created.append(name)
        w.message = "flow: init\n\nFlow-Event: init"
    sha = w.sha
    local = setup_local(root, app.out.warn)
    if ".flow/config.yaml" in created:  # written here, by whoever ran init: trusted as written
        from flowgit.ops import trust
        trust.written(app.repo, trust.config_commands(app.repo), [], "init")
        if fmt == 2:
            local += _name_default_branch(app.repo)
    result = {"initialised": bool(created), "created": created, "commit": sha, "configured": local}
    if created:
        text = f"initialised .flow/ in {root} ({len(created)} files, commit {sha[:10] if sha else '-'})"
    elif local:
        text = f".flow/ already here; set up this clone: {', '.join(local)}"
    else:
        text = f".flow/ already initialised in {root}: nothing to do"
    app.out.result(result, text)
    return 0


def _name_default_branch(repo: FlowRepo) -> list[str]:
    """The repository's first init, on a branch that no rule names the default one (no remote
    HEAD, main or master): this branch is, in this clone's git config (planpin.default_branch)."""
    from flowgit.store import planpin

    branch = git.head_branch(repo.dirs)
    if branch is None or planpin.default_branch(repo, repo.work_config) is not None:
        return []
    git.config_set(repo.root, "flowgit.defaultBranch", branch)
    return [f"flowgit.defaultBranch={branch}"]
