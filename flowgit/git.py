"""Git behind one door: small functions over the git CLI (argv lists only).

The hot path (every transition) uses the git CLI directly: GitPython's import alone costs
~90 ms and its pure-Python index is several times slower than `git commit --only`.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

from flowgit.errors import FlowError, GitError, NotARepo, RaceLost

GIT_ENV_DROP = ("GIT_INDEX_FILE",)


def run(
    args: Sequence[str], cwd: Path, *, check: bool = True, input: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    full_env = dict(os.environ)
    for key in GIT_ENV_DROP:
        full_env.pop(key, None)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, input=input, capture_output=True, env=full_env, check=False
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH: install git") from None
    if check and proc.returncode != 0:
        raise failure(args, proc)
    return proc


def failure(args: Sequence[str], proc: subprocess.CompletedProcess[bytes]) -> FlowError:
    """The error for a failed git command: its first fatal/error line (the last is often advice)."""
    msg = [ln.strip() for ln in proc.stderr.decode("utf-8", "replace").strip().splitlines() if ln.strip()]
    detail = next((ln for ln in msg if ln.startswith(("fatal:", "error:"))), msg[-1] if msg else "")
    detail = detail or f"exit {proc.returncode}"
    if ".lock': File exists" in detail or "cannot lock ref" in detail:
        return RaceLost(f"git {args[0]} failed: {detail} (another git command is using the "
                        "repository: retry when it has finished)")
    return GitError(f"git {args[0]} failed: {detail}")


def out(args: Sequence[str], cwd: Path, **kw: object) -> str:
    return run(args, cwd, **kw).stdout.decode("utf-8", "replace").strip()  # type: ignore[arg-type]


@dataclass(frozen=True)
class RepoDirs:
    root: Path        # the work tree
    git_dir: Path     # this work tree's git dir (HEAD, index, MERGE_HEAD)
    common_dir: Path  # shared by all worktrees (refs, objects, our lock)


def find_dirs(start: Path) -> RepoDirs:
    """Like `git rev-parse`, without a subprocess: walk up to the first `.git`."""
    cur = start.resolve()
    for candidate in (cur, *cur.parents):
        dotgit = candidate / ".git"
        if dotgit.is_dir():
            return RepoDirs(candidate, dotgit, dotgit)
        if dotgit.is_file():
            text = dotgit.read_text().strip()
            if text.startswith("gitdir:"):
                git_dir = (candidate / text[len("gitdir:"):].strip()).resolve()
                common = git_dir
                commondir = git_dir / "commondir"
                if commondir.exists():
                    common = (git_dir / commondir.read_text().strip()).resolve()
                return RepoDirs(candidate, git_dir, common)
    raise NotARepo(f"{start}: not a git repository: run `git init` first (or pass --repo DIR)")


def operation_in_progress(dirs: RepoDirs) -> str | None:
    """The git operation that owns the index right now, if any."""
    g = dirs.git_dir
    checks = (
        ("MERGE_HEAD", "a merge"), ("rebase-merge", "a rebase"), ("rebase-apply", "a rebase"),
        ("CHERRY_PICK_HEAD", "a cherry-pick"), ("REVERT_HEAD", "a revert"),
        ("BISECT_LOG", "a bisect"),
    )
    for name, what in checks:
        if (g / name).exists():
            return what
    return None


def head(root: Path) -> str | None:
    proc = run(["rev-parse", "--verify", "-q", "HEAD"], root, check=False)
    return proc.stdout.decode().strip() or None


def add(root: Path, paths: Sequence[str]) -> None:
    if paths:
        run(["add", "--", *paths], root)


def read_head(dirs: RepoDirs) -> str | None:
    """HEAD's commit from the files, without a subprocess (None on an unborn branch)."""
    try:
        text = (dirs.git_dir / "HEAD").read_text().strip()
    except OSError:
        return None
    if not text.startswith("ref: "):
        return text or None
    return read_ref(dirs, text[5:])


def commit_paths(root: Path, paths: Sequence[str], message: str,
                 new_paths: Sequence[str] | None = None, dirs: RepoDirs | None = None) -> str:
    """Commit exactly these paths (the user's other staged changes stay staged and out).

    `new_paths` (files this command created) are added first; tracked files need no `git add`
    with `--only`. Passing `dirs` saves the subprocesses that find HEAD."""
    dirs = dirs or find_dirs(root)
    parent = read_head(dirs)
    add(root, paths if new_paths is None else [p for p in paths if p in set(new_paths)])
    args = ["commit", "--no-verify", "--quiet", "-m", message, "--only", "--", *paths]
    if parent is None:
        args = ["commit", "--no-verify", "--quiet", "-m", message, "--", *paths]
    proc = run(args, root, env={"FLOWGIT_INTERNAL": "1"}, check=False)
    if proc.returncode != 0 and b"did not match any file" in proc.stderr and new_paths is not None:
        add(root, paths)  # a path we took for tracked was not: add everything and retry
        proc = run(args, root, env={"FLOWGIT_INTERNAL": "1"}, check=False)
    if proc.returncode != 0:
        raise failure(args, proc)
    sha = read_head(dirs)
    return sha if sha and sha != parent else out(["rev-parse", "HEAD"], root)


def changed_paths(root: Path, pathspec: str) -> list[str]:
    """Paths under `pathspec` that differ from HEAD or are untracked."""
    text = run(  # no optional locks: a read must not rewrite the index (the watcher sees that)
        ["--no-optional-locks", "status", "--porcelain=v1", "-z", "--untracked-files=all", "--",
         pathspec], root
    ).stdout.decode("utf-8", "replace")
    paths = []
    entries = text.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        if entry[0] in "RC":
            i += 1
        paths.append(entry[3:])
    return paths


def hook_index_env() -> dict[str, str]:
    """Inside a git hook for `git commit -a` or `git commit PATH`, git points GIT_INDEX_FILE at
    the temporary index being committed: staged checks must read that one."""
    index = os.environ.get("GIT_INDEX_FILE")
    return {"GIT_INDEX_FILE": os.path.abspath(index)} if index else {}


def show(root: Path, rev: str, path: str) -> bytes | None:
    proc = run(["show", f"{rev}:{path}"], root, check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout


def config_get(root: Path, key: str) -> str | None:
    proc = run(["config", "--get", key], root, check=False)
    return proc.stdout.decode().strip() or None


def user_email(root: Path) -> str | None:
    return config_get(root, "user.email")


def read_tree(root: Path, rev: str, prefix: str) -> dict[str, bytes]:
    """Every file under `prefix` at `rev`, read in one `git cat-file --batch`."""
    ids = tree_blob_ids(root, rev, prefix)
    blobs = cat_blobs(root, list(ids.values()))
    return {path: blobs[sha] for path, sha in ids.items() if sha in blobs}


def tree_blob_ids(root: Path, rev: str, prefix: str) -> dict[str, str]:
    """The blob id of every regular file under `prefix` at `rev` (symlinks left out)."""
    proc = run(["ls-tree", "-r", "-z", "--full-tree", rev, "--", prefix], root, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"unknown revision {rev!r}: {msg[-1] if msg else 'not found'}")
    ids = {}
    for item in proc.stdout.decode("utf-8", "replace").split("\0"):
        if not item:
            continue
        meta, _, path = item.partition("\t")
        mode, kind, sha = meta.split()
        if kind == "blob" and mode != "120000":
            ids[path] = sha
    return ids


def cat_blobs(root: Path, shas: Sequence[str]) -> dict[str, bytes]:
    """The contents of many blobs, read in one `git cat-file --batch`."""
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return {}
    batch = run(["cat-file", "--batch"], root, input="".join(f"{sha}\n" for sha in wanted).encode()).stdout
    out: dict[str, bytes] = {}
    pos = 0
    for sha in wanted:
        header_end = batch.index(b"\n", pos)
        header = batch[pos:header_end].split()
        if len(header) < 3:  # "<sha> missing": not in this repository (a partial clone, say)
            pos = header_end + 1
            continue
        size = int(header[2])
        start = header_end + 1
        out[sha] = batch[start:start + size]
        pos = start + size + 1
    return out


class StagedChange(NamedTuple):
    status: str
    path: str
    old: str
    new: str
    mode: str


def staged_changes(root: Path, prefix: str, env: Mapping[str, str] | None = None) -> list[StagedChange]:
    """The index against HEAD under `prefix`, with both blob ids, in one `git diff --raw`."""
    out = run(["diff", "--cached", "--raw", "-z", "--no-renames", "--full-index", "--", prefix],
              root, env=env).stdout.decode("utf-8", "surrogateescape").split("\0")
    changes = []
    for meta, path in zip(out[0::2], out[1::2]):
        _old_mode, new_mode, old, new, status = meta.lstrip(":").split()
        if new_mode != "160000" and _old_mode != "160000":  # a submodule is no flowgit file
            changes.append(StagedChange(status[0], path, old, new, new_mode))
    return changes


def merge_base(root: Path, a: str, b: str) -> str | None:
    proc = run(["merge-base", a, b], root, check=False)
    return proc.stdout.decode().strip() or None


def default_branch(root: Path) -> str | None:
    """origin/HEAD if known, else main or master if they exist."""
    proc = run(["symbolic-ref", "-q", "--short", "refs/remotes/origin/HEAD"], root, check=False)
    name = proc.stdout.decode().strip()
    if name:
        return name
    for candidate in ("main", "master"):
        if run(["rev-parse", "--verify", "-q", candidate], root, check=False).returncode == 0:
            return candidate
    return None


def current_branch(root: Path) -> str | None:
    proc = run(["symbolic-ref", "-q", "--short", "HEAD"], root, check=False)
    return proc.stdout.decode().strip() or None


def indexed_size(dirs: RepoDirs, path: str) -> int | None:
    """The size git's index recorded for `path` (what was last added or committed), read from
    the index file without a subprocess; None when it cannot tell (no entry, index format 4,
    a split or odd index): callers then skip the check it serves."""
    import mmap
    import struct

    try:
        with open(dirs.git_dir / "index", "rb") as fh, \
                mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data[:4] != b"DIRC" or struct.unpack(">I", data[4:8])[0] not in (2, 3):
                return None
            name = path.encode("utf-8")
            at = data.find(name + b"\0", 12)  # an entry's name follows its flags
            while at != -1:
                start = at
                for flags_at, extended in ((start - 2, False), (start - 4, True)):
                    flags = struct.unpack(">H", data[flags_at:flags_at + 2])[0]
                    if (flags & 0x0FFF) == min(len(name), 0x0FFF) and bool(flags & 0x4000) == extended:
                        size_at = flags_at - 20 - 4
                        return int(struct.unpack(">I", data[size_at:size_at + 4])[0])
                at = data.find(name + b"\0", at + 1)
    except (OSError, ValueError, struct.error):
        return None
    return None


def read_ref(dirs: RepoDirs, ref: str) -> str | None:
    """A ref's commit from the files (loose, then packed), without a subprocess; with the
    reftable backend, from git."""
    if (dirs.common_dir / "reftable").is_dir():
        proc = run(["rev-parse", "--verify", "-q", ref], dirs.root, check=False)
        return proc.stdout.decode().strip() or None
    try:
        return (dirs.common_dir / ref).read_text().strip() or None
    except OSError:
        pass
    try:
        for line in (dirs.common_dir / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref) and not line.startswith(("#", "^")):
                return line.split(" ", 1)[0]
    except OSError:
        pass
    return None


def commit_tracked(root: Path, paths: Sequence[str], message: str, *, merging: bool) -> None:
    """Commit `paths` (tracked files): only them, or with the merge in progress (`merging`).

    No automatic maintenance after it: `git maintenance run --auto` is one more process while
    the caller holds its lock, and the other commits flowgit makes still run it."""
    args = ["-c", "maintenance.auto=false", "commit", "--no-verify", "--quiet", "-m", message,
            "--include" if merging else "--only", "--", *paths]
    proc = run(args, root, env={"FLOWGIT_INTERNAL": "1"}, check=False)
    if proc.returncode != 0:
        raise failure(args[2:], proc)
