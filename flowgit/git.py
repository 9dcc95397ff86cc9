"""Git behind one door: every git argv flowgit builds lives in this module, behind functions
named for what they do. No other module passes a list of git arguments anywhere (a test
scans for it).

No data becomes a git option: every argument that comes from data (a revision, a commit id,
a path, a branch or remote name) stands after `--end-of-options` or `--`, a revision a user
types is resolved to a full commit id first (`resolve_commit`), and an id read from an event
must be full hex (`check_full_id`). `--end-of-options` needs git 2.24; `require_git` checks
that once per process, and only commands that pass data to git pay for it.

The hot path (every transition) uses the git CLI directly: GitPython's import alone costs
~90 ms and its pure-Python index is several times slower than `git commit --only`. GitPython
(the design card's dependency) serves one cold path, a file's history (`file_history`).
"""
from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

from flowgit.errors import FlowError, GitError, InvalidFile, NotARepo, RaceLost, UsageError

GIT_ENV_DROP = ("GIT_INDEX_FILE",)
EOO = "--end-of-options"
MIN_VERSION = (2, 24)  # --end-of-options
INTERNAL = {"FLOWGIT_INTERNAL": "1"}  # our own commits: the pre-commit hook lets them through
# git's messages untranslated: flowgit reads its stderr ("couldn't find remote ref", a fetch that
# fails for good, a push race), which LANG=de_DE.UTF-8 (fr, es, zh_CN, ...) turned into German;
# "C" (not C.UTF-8) is the locale in which gettext also ignores LANGUAGE. Bytes are bytes in it.
UNTRANSLATED = {"LC_ALL": "C"}
HEX = "0123456789abcdef"


def _run(
    args: Sequence[str], cwd: Path, *, check: bool = True, input: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    if EOO in args:
        require_git(cwd)
    full_env = dict(os.environ)
    for key in GIT_ENV_DROP:
        full_env.pop(key, None)
    full_env.update(UNTRANSLATED)
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


def refusal(said: str) -> str | None:
    """What a remote said when it refused a push for good (a hook declined, any other "remote
    rejected"), its own words first; None for a lost race (another push went first, or the
    remote failed to lock or update the ref: its own compare-and-swap) or no refusal."""
    raced = any(m in said for m in ("failed to update ref", "cannot lock ref", "failed to lock"))
    if not ("declined" in said or ("remote rejected" in said and not raced)):
        return None
    lines = [ln.strip() for ln in said.splitlines()]
    words = [ln[len("remote:"):].strip() for ln in lines if ln.startswith("remote:")]
    why = next((" ".join(ln.split()) for ln in lines if "remote rejected" in ln), "refused")
    return "; ".join([*filter(None, words), why])


def failure(args: Sequence[str], proc: subprocess.CompletedProcess[bytes]) -> FlowError:
    """The error for a failed git command: its first fatal/error line (the last is often advice)."""
    msg = [ln.strip() for ln in proc.stderr.decode("utf-8", "replace").strip().splitlines() if ln.strip()]
    detail = next((ln for ln in msg if ln.startswith(("fatal:", "error:"))), msg[-1] if msg else "")
    detail = detail or f"exit {proc.returncode}"
    what = next((a for a in args if not a.startswith("-") and "=" not in a), args[0] if args else "")
    if ".lock': File exists" in detail or "cannot lock ref" in detail:
        return RaceLost(f"git {what} failed: {detail} (another git command is using the "
                        "repository: retry when it has finished)")
    return GitError(f"git {what} failed: {detail}")


def _out(args: Sequence[str], cwd: Path, **kw: object) -> str:
    return _run(args, cwd, **kw).stdout.decode("utf-8", "replace").strip()  # type: ignore[arg-type]


def _ok(args: Sequence[str], cwd: Path) -> bool:
    return _run(args, cwd, check=False).returncode == 0


# ----- the git this needs ------------------------------------------------------------------------

def parse_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from `git --version` ("git version 2.39.5", "... (Apple Git-146)")."""
    import re

    m = re.search(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


@functools.lru_cache(maxsize=1)
def require_git(where: Path | None = None) -> tuple[int, int]:
    """This git's version, checked against what flowgit needs, once per process; with `where`
    (a repository), also once per git binary: the answer is kept in the common git dir, keyed
    by the path, inode, size and mtime of the `git` PATH finds, so a command that passes data to
    git does not start `git --version` each time. An upgrade or another git on PATH asks again;
    a git too old is never kept."""
    key = _git_binary()
    kept = _version_file(where) if key is not None else None
    if kept is not None:
        try:
            said = kept.read_text("utf-8", "surrogateescape").split("\n")  # a PATH of any bytes
            if said[0] == key and (version := parse_version(said[1])) is not None and version >= MIN_VERSION:
                return version
        except (OSError, UnicodeError, IndexError):
            pass
    try:
        proc = subprocess.run(["git", "--version"], capture_output=True, check=False)
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH: install git") from None
    text = proc.stdout.decode("utf-8", "replace").strip()
    version = parse_version(text)
    if version is None or version < MIN_VERSION:
        raise GitError(f"flowgit needs git {'.'.join(map(str, MIN_VERSION))} or newer "
                       f"(this is {text or 'an unknown git'}): upgrade git")
    if kept is not None and key is not None and "\n" not in text:
        try:  # a cache: written whole (rename), never fsynced; a lost or torn one asks git again
            kept.parent.mkdir(exist_ok=True)
            part = kept.with_name(f"{kept.name}.{os.getpid()}")
            part.write_text(f"{key}\n{text}\n", "utf-8", "surrogateescape")
            os.replace(part, kept)
        except OSError:
            pass
    return version


def _git_binary() -> str | None:
    """The `git` a subprocess runs (the first executable on PATH), as path and file identity;
    None when it cannot tell (then git is asked)."""
    for folder in os.get_exec_path():
        path = os.path.join(folder or ".", "git")
        try:
            st = os.stat(path)
        except OSError:
            continue
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return f"{os.path.abspath(path)}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}".replace(
                "\n", "?")
    return None


def _version_file(where: Path | None) -> Path | None:
    if where is None:
        return None
    try:
        return find_dirs(where).common_dir / "flowgit" / "git-version"
    except (FlowError, OSError):
        return None


# ----- data that reaches git ----------------------------------------------------------------------

def is_full_id(value: object) -> bool:
    """A full commit id (SHA-1 or SHA-256, lower-case hex), as flowgit writes into events."""
    return isinstance(value, str) and len(value) in (40, 64) and not value.strip(HEX)


def check_full_id(value: object, where: str, field: str = "commit id") -> str:
    """An id read from data (an event, a journal) before it reaches git: full hex, or refused."""
    if not is_full_id(value):
        raise InvalidFile(f"{where}: {field} {value!r} is not a full commit id (40 or 64 hex "
                          "digits): restore the line from git (`git log -p` on the file)")
    return str(value)


def check_not_option(value: str, what: str) -> str:
    """A name from data that git would read as an option if it began with '-' (a remote, a
    branch): refused before git sees it."""
    if not value or value.startswith("-") or any(c in value for c in "\0\n\r"):
        raise UsageError(f"invalid {what} {value!r}: it cannot be empty, start with '-' or hold a "
                         "line break")
    return value


def resolve_commit(root: Path, rev: str, what: str = "revision") -> str | None:
    """The full id of the commit a revision a user typed names (`HEAD~5`, `main@{1}`, a short
    id, a branch), or None when there is none.

    git 2.39's `rev-parse` does not honour `--end-of-options` (it passes it through as an
    unknown flag and still parses an option after it, e.g. `--git-dir`), so a revision that
    starts with '-' is refused here, before git sees it; the `--end-of-options` stays for the
    gits that honour it. No revision starts with '-': git refuses such ref names."""
    if not rev or rev.startswith("-") or any(c in rev for c in "\0\n\r"):
        raise UsageError(f"invalid {what} {rev!r}: a revision is a commit id, branch, tag or an "
                         "expression like HEAD~1 (it never starts with '-')")
    proc = _run(["rev-parse", "--verify", "--quiet", EOO, f"{rev}^{{commit}}"], root, check=False)
    sha = proc.stdout.decode("utf-8", "replace").strip()
    return sha if proc.returncode == 0 and is_full_id(sha) else None


def short_id(root: Path, commit: str) -> str:
    """The unambiguous short form of a full commit id."""
    check_full_id(commit, "short_id")
    return _out(["rev-parse", "--short", commit], root)


# ----- where the repository is, read from files ----------------------------------------------------

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


def _own_dirs(root: Path) -> RepoDirs | None:
    """The repository's dirs as git would find them from `root`, for reading a file instead of
    starting git; None when git would look elsewhere (GIT_DIR and its kind, as in a hook) or
    there is none."""
    if any(k in os.environ for k in ("GIT_DIR", "GIT_COMMON_DIR", "GIT_WORK_TREE")):
        return None
    try:
        return find_dirs(root)
    except FlowError:
        return None


def common_dir(root: Path) -> Path:
    """The directory shared by every worktree (hooks live under it), as git says."""
    return Path(os.path.abspath(root / _out(["rev-parse", "--git-common-dir"], root)))


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


def in_merge(dirs: RepoDirs) -> bool:
    """A merge is in progress in this work tree (MERGE_HEAD exists)."""
    return (dirs.git_dir / "MERGE_HEAD").exists()


def merge_head(dirs: RepoDirs) -> str | None:
    """The commit being merged in (MERGE_HEAD's first line), None without a merge."""
    try:
        words = (dirs.git_dir / "MERGE_HEAD").read_text().split()
    except OSError:
        return None
    return words[0] if words else None


def drop_merge_state(dirs: RepoDirs) -> None:
    """Take back the MERGE_* files a merge wrote before it found the index locked (nothing
    else of it happened): only for a merge of our own, under our lock."""
    for name in ("MERGE_HEAD", "MERGE_MODE", "MERGE_MSG"):
        (dirs.git_dir / name).unlink(missing_ok=True)


def index_lock(dirs: RepoDirs) -> Path:
    return dirs.git_dir / "index.lock"


def index_locked(dirs: RepoDirs) -> bool:
    """Another git command holds this work tree's index (or died holding it)."""
    return index_lock(dirs).exists()


def said_index_locked(stderr: bytes) -> bool:
    """git's stderr says it could not take or write the index (someone else holds it)."""
    return b"index.lock" in stderr or b"Unable to write index" in stderr


def lock_files(dirs: RepoDirs) -> list[Path]:
    """The lock files a git commit takes (index, HEAD, the split index's, the branch ref's):
    what a commit killed half-way can leave behind."""
    g = dirs.git_dir
    candidates = [g / "index.lock", g / "HEAD.lock", *sorted(g.glob("next-index-*.lock"))]
    try:
        head_text = (g / "HEAD").read_text().strip()
    except OSError:
        head_text = ""
    if head_text.startswith("ref: refs/heads/"):
        candidates.append(dirs.common_dir / f"{head_text[5:]}.lock")
    return candidates


def head_detached(dirs: RepoDirs) -> bool | None:
    """HEAD names a commit, not a branch (None when HEAD cannot be read)."""
    try:
        text = (dirs.git_dir / "HEAD").read_bytes()
    except OSError:
        return None
    return not text.startswith(b"ref:")


def head_branch(dirs: RepoDirs) -> str | None:
    """The branch HEAD names (`main`, `flow/p/t`), from the files; None when detached or unreadable."""
    try:
        text = (dirs.git_dir / "HEAD").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text.removeprefix("ref: refs/heads/") if text.startswith("ref: refs/heads/") else None


def read_head(dirs: RepoDirs) -> str | None:
    """HEAD's commit from the files, without a subprocess (None on an unborn branch)."""
    try:
        text = (dirs.git_dir / "HEAD").read_text().strip()
    except OSError:
        return None
    if not text.startswith("ref: "):
        return text or None
    return read_ref(dirs, text[5:])


def read_ref(dirs: RepoDirs, ref: str) -> str | None:
    """A ref's commit from the files (loose, then packed), without a subprocess; with the
    reftable backend, from git."""
    if (dirs.common_dir / "reftable").is_dir():
        check_not_option(ref, "ref")
        proc = _run(["rev-parse", "--verify", "-q", EOO, ref], dirs.root, check=False)
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


# ----- revisions and refs ---------------------------------------------------------------------------

def head(root: Path) -> str | None:
    """HEAD's commit (None on an unborn branch), read from the files when they say it plainly
    (HEAD names a branch whose ref is a full id, or holds one); else from git."""
    dirs = _own_dirs(root)
    if dirs is not None and not (dirs.common_dir / "reftable").is_dir():
        try:
            text = (dirs.git_dir / "HEAD").read_text().strip()
        except OSError:
            text = ""
        if is_full_id(text):
            return text
        if text.startswith("ref: refs/heads/"):
            sha = read_ref(dirs, text[5:].strip())
            if sha is None or is_full_id(sha):
                return sha
    proc = _run(["rev-parse", "--verify", "-q", "HEAD"], root, check=False)
    return proc.stdout.decode().strip() or None


def fetched_commit(root: Path) -> str:
    """What the last fetch brought (FETCH_HEAD), as a full id."""
    return _out(["rev-parse", "--verify", "FETCH_HEAD^{commit}"], root)


def merge_base(root: Path, a: str, b: str) -> str | None:
    proc = _run(["merge-base", EOO, a, b], root, check=False)
    return proc.stdout.decode().strip() or None


def is_ancestor(root: Path, commit: str, of: str = "HEAD") -> bool:
    """`commit` is in `of`'s history (false too when either names nothing)."""
    return _ok(["merge-base", "--is-ancestor", EOO, commit, of], root)


def default_branch(root: Path) -> str | None:
    """origin/HEAD if known, else main or master if they exist."""
    proc = _run(["symbolic-ref", "-q", "--short", "refs/remotes/origin/HEAD"], root, check=False)
    name = proc.stdout.decode().strip()
    if name:
        return name
    for candidate in ("main", "master"):
        if _ok(["rev-parse", "--verify", "-q", candidate], root):
            return candidate
    return None


def current_branch(root: Path) -> str | None:
    proc = _run(["symbolic-ref", "-q", "--short", "HEAD"], root, check=False)
    return proc.stdout.decode().strip() or None


def commit_count(root: Path) -> int:
    return int(_out(["rev-list", "--count", "HEAD"], root))


def delete_branches(root: Path, names: Sequence[str]) -> None:
    """Delete branches in one process; one some worktree has checked out is refused, not lost."""
    if names:
        _run(["branch", "-q", "-D", EOO, *names], root, check=False)


# ----- reading content -----------------------------------------------------------------------------

def show_blob(root: Path, rev: str, path: str) -> bytes | None:
    """The file `path` at commit `rev` (a full id or HEAD), None when it is not there."""
    proc = _run(["show", EOO, f"{rev}:{path}"], root, check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout


def read_tree(root: Path, rev: str, prefix: str) -> dict[str, bytes]:
    """Every file under `prefix` at `rev`, read in one `git cat-file --batch`."""
    ids = tree_blob_ids(root, rev, prefix)
    blobs = cat_blobs(root, list(ids.values()))
    return {path: blobs[sha] for path, sha in ids.items() if sha in blobs}


def tree_blob_ids(root: Path, rev: str, prefix: str) -> dict[str, str]:
    """The blob id of every regular file under `prefix` at `rev` (symlinks left out)."""
    proc = _run(["ls-tree", "-r", "-z", "--full-tree", EOO, rev, "--", prefix], root, check=False)
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
    batch = _run(["cat-file", "--batch"], root, input="".join(f"{sha}\n" for sha in wanted).encode()).stdout
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


def commits_touching(root: Path, path: str, grep: str | None = None) -> list[str]:
    """Full ids of the commits that changed `path`, newest first (those whose message matches
    `grep`, a regular expression, if given)."""
    args = ["log", "--format=%H", *([f"--grep={grep}"] if grep else []), EOO, "--", path]
    return [sha for sha in _out(args, root).split() if is_full_id(sha)]


class Version:
    """One commit of a file's history. (Plain classes here, not NamedTuples: this module is
    imported by every command, and each NamedTuple costs ~0.1 ms to create.)"""

    __slots__ = ("commit", "author", "date", "subject")

    def __init__(self, commit: str, author: str, date: str, subject: str) -> None:
        self.commit, self.author, self.subject = commit, author, subject
        self.date = date  # ISO 8601, the committer's date


def file_history(root: Path, path: str) -> list[Version]:
    """Every commit that changed `path`, newest first. GitPython (the design card's git
    library), imported here and nowhere else: `history` is a cold path, and its import costs
    ~90 ms that no transition pays."""
    import git as gitpython

    repo = gitpython.Repo(root)
    try:
        commits = list(repo.iter_commits(paths=path))
        return [Version(c.hexsha, str(c.author.name), c.committed_datetime.isoformat(),
                        str(c.summary)) for c in commits]
    except (gitpython.GitCommandError, ValueError):
        return []
    finally:
        repo.close()


def config_get(root: Path, key: str) -> str | None:
    proc = _run(["config", "--get", EOO, key], root, check=False)
    return proc.stdout.decode().strip() or None


def config_get_path(root: Path, key: str) -> str | None:
    """A path-valued setting (`~` expanded), as git reads it."""
    proc = _run(["config", "--type=path", "--get", EOO, key], root, check=False)
    return proc.stdout.decode("utf-8", "replace").strip() or None


def config_set(root: Path, key: str, value: str) -> None:
    _run(["config", EOO, key, value], root)


def user_email(root: Path) -> str | None:
    return config_get(root, "user.email")


# ----- the index and the work tree ---------------------------------------------------------------------

def changed_paths(root: Path, pathspec: str) -> list[str]:
    """Paths under `pathspec` that differ from HEAD or are untracked."""
    text = _run(  # no optional locks: a read must not rewrite the index (the watcher sees that)
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


def status_entries(root: Path) -> list[str]:
    """`git status --porcelain --ignored` lines: changes, untracked ("??") and ignored ("!!")."""
    return _out(["status", "--porcelain", "--ignored"], root).splitlines()


def has_staged_changes(root: Path) -> bool:
    """The index differs from HEAD."""
    return _run(["diff", "--cached", "--quiet"], root, check=False).returncode != 0


def staged_paths(root: Path, paths: Sequence[str]) -> list[str]:
    """Those of `paths` whose staged content differs from HEAD."""
    if not paths:
        return []
    out = _run(["diff", "--cached", "--name-only", "-z", EOO, "HEAD", "--", *paths], root).stdout
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def hook_index_env() -> dict[str, str]:
    """Inside a git hook for `git commit -a` or `git commit PATH`, git points GIT_INDEX_FILE at
    the temporary index being committed: staged checks must read that one."""
    index = os.environ.get("GIT_INDEX_FILE")
    return {"GIT_INDEX_FILE": os.path.abspath(index)} if index else {}


class StagedChange(NamedTuple):
    status: str
    path: str
    old: str
    new: str
    mode: str


def staged_changes(root: Path, prefix: str, env: Mapping[str, str] | None = None) -> list[StagedChange]:
    """The index against HEAD under `prefix`, with both blob ids, in one `git diff --raw`."""
    out = _run(["diff", "--cached", "--raw", "-z", "--no-renames", "--full-index", "--", prefix],
               root, env=env).stdout.decode("utf-8", "surrogateescape").split("\0")
    changes = []
    for meta, path in zip(out[0::2], out[1::2]):
        _old_mode, new_mode, old, new, status = meta.lstrip(":").split()
        if new_mode != "160000" and _old_mode != "160000":  # a submodule is no flowgit file
            changes.append(StagedChange(status[0], path, old, new, new_mode))
    return changes


class NumStat:
    __slots__ = ("path", "added", "removed")

    def __init__(self, path: str, added: int, removed: int) -> None:
        self.path, self.added, self.removed = path, added, removed  # 0 lines for a binary file


def diff_numstat(root: Path, old: str, new: str, *, since_fork: bool = False,
                 exclude: str | None = None) -> list[NumStat]:
    """Lines added and removed per file from `old` to `new` (renames as a delete and an add;
    paths as they are, no quoting). `since_fork`: from where `new` forked off `old`
    (`old...new`). `exclude`: a directory left out."""
    revs = [f"{old}...{new}"] if since_fork else [old, new]
    spec = ["--", ".", f":(exclude){exclude}"] if exclude else ["--"]
    text = _run(["diff", "--numstat", "-z", "--no-renames", EOO, *revs, *spec],
                root).stdout.decode("utf-8", "replace")
    stats = []
    for line in filter(None, text.split("\0")):
        added, removed, path = line.split("\t", 2)
        stats.append(NumStat(path, int(added) if added.isdigit() else 0,
                             int(removed) if removed.isdigit() else 0))
    return stats


def conflicted_paths(root: Path) -> list[str]:
    """The paths a merge left unmerged."""
    names = _run(["diff", "--name-only", "-z", "--diff-filter=U"], root, check=False).stdout
    return [p for p in names.decode("utf-8", "replace").split("\0") if p]


def add(root: Path, paths: Sequence[str]) -> None:
    if paths:
        _run(["add", "--", *paths], root)


def unstage(root: Path, paths: Sequence[str]) -> None:
    """Put these paths in the index back to HEAD (best effort)."""
    if paths:
        _run(["reset", "-q", "--", *paths], root, check=False)


def clean_all(root: Path) -> None:
    """Remove every untracked and ignored file in the work tree."""
    _run(["clean", "-q", "-ffdx"], root)


# ----- commits ---------------------------------------------------------------------------------------

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
    proc = _run(args, root, env=INTERNAL, check=False)
    if proc.returncode != 0 and b"did not match any file" in proc.stderr and new_paths is not None:
        add(root, paths)  # a path we took for tracked was not: add everything and retry
        proc = _run(args, root, env=INTERNAL, check=False)
    if proc.returncode != 0:
        raise failure(args, proc)
    sha = read_head(dirs)
    return sha if sha and sha != parent else _out(["rev-parse", "HEAD"], root)


def commit_tracked(root: Path, paths: Sequence[str], message: str, *, merging: bool) -> None:
    """Commit `paths` (tracked files): only them, or with the merge in progress (`merging`).

    No automatic maintenance after it: `git maintenance run --auto` is one more process while
    the caller holds its lock, and the other commits flowgit makes still run it."""
    args = ["-c", "maintenance.auto=false", "commit", "--no-verify", "--quiet", "-m", message,
            "--include" if merging else "--only", "--", *paths]
    proc = _run(args, root, env=INTERNAL, check=False)
    if proc.returncode != 0:
        raise failure(args, proc)


def commit_all(root: Path, message: str) -> None:
    """Commit everything in the work tree (new files too), as flowgit (no hook)."""
    _run(["add", "-A"], root)
    _run(["commit", "-q", "--no-verify", "-m", message], root, env=INTERNAL)


def stage_all(root: Path) -> None:
    _run(["add", "-A"], root)


def unstage_all(root: Path) -> None:
    _run(["reset", "-q"], root, check=False)


def commit_argv(message: str) -> tuple[str, ...]:
    """A commit of what is staged through the repository's own hooks (`run --verify`): the
    caller runs it through the process door, with a timeout, as it runs any project command."""
    return ("git", "commit", "-q", "-m", message)


def undo_last_commit(root: Path) -> None:
    """Move the branch back one commit, keeping the work tree's other changes."""
    _run(["reset", "--quiet", "--keep", "HEAD~1"], root)


def init_repo(directory: Path, branch: str) -> None:
    """A new repository whose first branch is `branch`."""
    _run(["init", "-q"], directory)
    _run(["symbolic-ref", "HEAD", f"refs/heads/{check_not_option(branch, 'branch name')}"], directory)


# ----- merges -------------------------------------------------------------------------------------

def merge(root: Path, commit: str, message: str) -> subprocess.CompletedProcess[bytes]:
    """Merge `commit` into HEAD and commit (no hook, no editor); the caller reads the result."""
    return _run(["merge", "--no-edit", "--no-verify", "-q", "-m", message, EOO, commit], root,
                check=False, env=INTERNAL)


def merge_no_commit(root: Path, branch: str) -> subprocess.CompletedProcess[bytes]:
    """Start merging `branch` (always a merge commit, not made yet); the caller reads the result."""
    return _run(["merge", "--no-ff", "--no-commit", "-q", EOO, branch], root, check=False, env=INTERNAL)


def merge_abort(root: Path) -> subprocess.CompletedProcess[bytes]:
    return _run(["merge", "--abort"], root, check=False)


# ----- remotes -----------------------------------------------------------------------------------

def check_remote(name: str) -> str:
    """A remote name as git allows it (flowgit.ids.remote_problem), or a usage error."""
    from flowgit.ids import check_remote as check  # few commands reach a remote

    return check(name)


def remote_exists(root: Path, name: str) -> bool:
    """Whether git knows the remote: yes at once when the repository's own config file gives it
    a url; otherwise (an include, the global config, a remotes/ file, no such remote) git says."""
    check_remote(name)
    dirs = _own_dirs(root)
    try:
        if dirs is not None and _config_url(dirs.common_dir / "config", name):
            return True
    except (OSError, UnicodeError):
        pass
    return _ok(["remote", "get-url", EOO, name], root)


def _config_url(config: Path, name: str) -> str | None:
    """The first `url` of a `[remote "NAME"]` section in this config file, read plainly: a line
    this does not follow (a section header with a key after it, an escape) only makes it say None."""
    return next((value for _, value in _config_values(config, f'[remote "{name}"]', ("url",))), None)


def _config_values(config: Path, header: str, keys: tuple[str, ...]) -> list[tuple[str, str]]:
    """(key, value) of `keys` (lowercase) in the `header` sections of this config file, read
    plainly: a quoted or escaped value comes as written."""
    found, inside = [], False
    for raw in config.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("["):
            inside = line == header
        elif inside:
            key, _, value = line.partition("=")
            if key.strip().lower() in keys and value.strip():
                found.append((key.strip().lower(), value.strip()))
    return found


def _rewrites(configs: Sequence[Path], push: bool) -> list[str]:
    """The url prefixes git rewrites (`url.BASE.insteadOf`, for a push also `pushInsteadOf`)
    in these config files."""
    keys = ("insteadof", "pushinsteadof") if push else ("insteadof",)
    prefixes = []
    for config in configs:
        try:
            text = config.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        if "insteadof" not in text.lower():
            continue
        inside = False
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("["):
                inside = line.lower().startswith("[url ")
            elif inside:
                key, _, value = line.partition("=")
                if key.strip().lower() in keys and value.strip():
                    prefixes.append(value.strip())
    return prefixes


def _user_configs() -> list[Path]:
    """The user's own git config files, whose `insteadOf` rules apply to every repository."""
    if os.environ.get("GIT_CONFIG_GLOBAL"):
        return [Path(os.environ["GIT_CONFIG_GLOBAL"])]
    home, xdg = os.environ.get("HOME"), os.environ.get("XDG_CONFIG_HOME")
    return [*([Path(xdg) / "git" / "config"] if xdg else [Path(home) / ".config" / "git" / "config"] if home else []),
            *([Path(home) / ".gitconfig"] if home else []),
            *([] if os.environ.get("GIT_CONFIG_NOSYSTEM") else [Path("/etc/gitconfig")])]


def remote_is_here(root: Path, name: str, push: bool = False) -> bool:
    """Whether the remote's git runs on this machine, on its cores (flowgit.turns): the url a
    fetch uses (for a push: its `pushurl`s, else every `url`, git pushes to each), read
    plainly from the repository's own config, is a path, and no `insteadOf` rule rewrites it.
    Anything this does not follow says no: the turn is then given back while git waits."""
    dirs = _own_dirs(root)
    if dirs is None:
        return False
    config = dirs.common_dir / "config"
    try:
        found = _config_values(config, f'[remote "{name}"]', ("url", "pushurl"))
        pushed = [v for k, v in found if k == "pushurl"] or [v for k, v in found if k == "url"]
        urls = pushed if push else [v for k, v in found if k == "url"][:1]
        rewritten = _rewrites([config, *_user_configs()], push) if urls else []
    except (OSError, UnicodeError):
        return False
    return bool(urls) and all(_is_path(url) and not any(url.startswith(p) or '"' in p or '\\' in p for p in rewritten)
                              for url in urls)


def _is_path(url: str) -> bool:
    if '"' in url or '\\' in url:  # quoted or escaped: not read plainly
        return False
    if url.startswith(("file://", "/", "./", "../")):
        return True
    return "://" not in url and ":" not in url.split("/", 1)[0]  # `host:path` is ssh


def _remote_run(args: Sequence[str], root: Path, remote: str) -> subprocess.CompletedProcess[bytes]:
    """A fetch or push: across the network without this process's turn on the cores."""
    from flowgit import turns

    verb = next((a for a in args if not a.startswith("-") and "=" not in a), "")
    # without a turn (the MCP server, `run`, a command that got none) no config is read for one
    with turns.aside(keep=not turns.held() or remote_is_here(root, remote, push=verb == "push")):
        return _run(args, root, check=False)


def fetch(root: Path, remote: str, branch: str) -> subprocess.CompletedProcess[bytes]:
    """Fetch one branch of a remote into FETCH_HEAD; the caller reads the result."""
    return _remote_run(["fetch", "--quiet", EOO, check_remote(remote), branch], root, remote)


def push_head(root: Path, remote: str, branch: str) -> subprocess.CompletedProcess[bytes]:
    """Push HEAD to `branch` on `remote` (no hook); the caller reads the result."""
    return _remote_run(["push", "--quiet", "--no-verify", EOO, check_remote(remote),
                        f"HEAD:refs/heads/{branch}"], root, remote)


def push_branch(root: Path, remote: str, branch: str) -> subprocess.CompletedProcess[bytes]:
    """Push a local branch to the same name on `remote` (no hook); the caller reads the result."""
    ref = f"refs/heads/{check_not_option(branch, 'branch name')}"
    return _remote_run(["push", "--quiet", "--no-verify", EOO, check_remote(remote), f"{ref}:{ref}"],
                       root, remote)


# ----- worktrees -----------------------------------------------------------------------------------

def worktree_add(root: Path, path: Path, branch: str, base: str) -> None:
    """A new worktree at `path` on `branch`, (re)set to the commit `base`; a worktree still
    registered there whose directory is gone is pruned first."""
    check_full_id(base, "worktree_add", "base")
    args = ["worktree", "add", "-q", "-B", check_not_option(branch, "branch name"), EOO,
            str(path), base]
    if not _ok(args, root):
        worktree_prune(root)
        _run(args, root)


def worktree_move(root: Path, src: Path, dst: Path) -> None:
    _run(["worktree", "move", EOO, str(src), str(dst)], root)


def worktree_remove(root: Path, path: Path) -> bool:
    """Remove a worktree, changes and all; False if git refused (not registered, say)."""
    return _ok(["worktree", "remove", "--force", EOO, str(path)], root)


def worktree_prune(root: Path) -> None:
    """Forget worktrees whose directories are gone."""
    _run(["worktree", "prune"], root, check=False)


def checkout_fresh(worktree: Path, branch: str, base: str) -> None:
    """In `worktree`, (re)create `branch` at the commit `base` and check it out, discarding
    local changes. `checkout` reads what follows `--end-of-options` as paths, so `base` is
    checked to be a full id instead (and the `--` says it is no path)."""
    check_full_id(base, "checkout_fresh", "base")
    _run(["checkout", "-q", "-f", "-B", check_not_option(branch, "branch name"), base, "--"], worktree)


def identity_problem(root: Path) -> str | None:
    """git's own words when it has no author or committer identity here (a commit would fail),
    else None."""
    for var in ("GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT"):
        proc = _run(["var", var], root, check=False)
        if proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
            return lines[-1] if lines else f"git var {var} failed"
    return None


# ----- the board (read-only) and the prompt a run gave a task ------------------------------------

def store_blob(root: Path, data: bytes) -> str:
    """Write `data` into the object store as a blob (`git hash-object -w`); its id.

    Nothing refers to it but the event that names it: it lives until `git gc` prunes
    unreachable objects (two weeks by default), and a clone does not carry it."""
    return _out(["hash-object", "-w", "--stdin"], root, input=data)


def file_versions(root: Path, path: str, limit: int = 200) -> list[tuple[str, int, str]]:
    """The commits on HEAD's history that changed `path`, newest first: (full id, commit time,
    subject). One `git log`, no GitPython: the board asks on every review page."""
    proc = _run(["log", f"--max-count={limit}", "--format=%H%x00%ct%x00%s", EOO, "HEAD", "--", path],
                root, check=False)
    out = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split("\0")
        if len(parts) == 3 and is_full_id(parts[0]) and parts[1].isdigit():
            out.append((parts[0], int(parts[1]), parts[2]))
    return out


def added_lines_by_commit(root: Path, head: str, since: str | None, pathspec: str,
                          ) -> list[tuple[str, bytes]]:
    """(commit, line) for every line that each commit after `since` up to `head` (full ids)
    added under `pathspec`, oldest first: one `git log -p` along the first parents, a merge
    shown against its first parent (what it brought onto the branch)."""
    check_full_id(head, "added_lines_by_commit", "head")
    span = head if since is None else f"{check_full_id(since, 'added_lines_by_commit', 'since')}..{head}"
    proc = _run(["log", "--reverse", "--first-parent", "-m", "--no-renames", "--no-color",
                 "--no-ext-diff", "--format=%x01%H", "-p", "-U0", EOO, span, "--", pathspec],
                root, check=False)
    out: list[tuple[str, bytes]] = []
    commit = ""
    for line in proc.stdout.split(b"\n"):
        if line.startswith(b"\x01"):
            commit = line[1:].decode("ascii", "replace")
        elif line.startswith(b"+") and not line.startswith(b"+++") and commit:
            out.append((commit, line[1:]))
    return out


# ----- approvals that git itself vouches for (approvals.via: merge, approvals.signed) -----------

class PathChange:
    """A commit that changed a path (a plain class: see Version)."""

    __slots__ = ("commit", "parents", "time", "blob")

    def __init__(self, commit: str, parents: tuple[str, ...], time: int, blob: str | None) -> None:
        self.commit = commit
        self.parents = parents
        self.time = time
        self.blob = blob  # the path's blob after the commit; None when deleted


def first_parent_changes(root: Path, commit: str, path: str) -> list[PathChange]:
    """Commits on the first-parent line of `commit` (a full id) that changed `path` against
    their first parent, newest first: a merge commit there is the merge that brought the change."""
    check_full_id(commit, "first_parent_changes")
    proc = _run(["log", "--first-parent", "-m", "--raw", "--no-abbrev", "--no-renames",
                 "--format=%x00%H %ct %P", EOO, commit, "--", path], root, check=False)
    if proc.returncode != 0:
        return []
    out = []
    for chunk in proc.stdout.decode("utf-8", "replace").split("\0")[1:]:
        lines = chunk.strip("\n").splitlines()
        if not lines:
            continue
        head = lines[0].split()
        blob = None
        for line in lines[1:]:
            if line.startswith(":") and "\t" in line:
                meta = line.split("\t", 1)[0].split()
                blob = None if set(meta[3]) == {"0"} else meta[3]
        out.append(PathChange(head[0], tuple(head[2:]), int(head[1]), blob))
    return out


def blob_id(root: Path, data: bytes) -> str:
    """The id git gives `data` as a blob (SHA-1 or SHA-256, as the repository uses)."""
    return _run(["hash-object", "--stdin"], root, input=data).stdout.decode().strip()


def commits_adding(root: Path, needle: str, path: str, rev: str = "HEAD") -> list[str]:
    """Commits reachable from `rev` that changed how often `needle` occurs in `path` (`log -S`;
    the needle is part of its own argument, never an option)."""
    check_not_option(rev, "rev")
    proc = _run(["log", "--format=%H", f"-S{needle}", EOO, rev, "--", path], root, check=False)
    return [c for c in proc.stdout.decode().split() if is_full_id(c)] if proc.returncode == 0 else []


def signing_key(root: Path, commit: str) -> str:
    """The fingerprint of the key that signed the commit (`%GF`), "" when git names none."""
    check_full_id(commit, "signing_key")
    proc = _run(["log", "-1", "--format=%GF", EOO, commit], root, check=False)
    return proc.stdout.decode("utf-8", "replace").strip() if proc.returncode == 0 else ""


def verify_commit(root: Path, commit: str) -> bool:
    """Whether `git verify-commit` accepts the commit's signature, with the keys the user's git
    configuration lists (gpg's keyring, gpg.ssh.allowedSignersFile)."""
    check_full_id(commit, "verify_commit")
    return _ok(["verify-commit", EOO, commit], root)


# ----- the approved plan on the state branch (format 2, ADR 0011) ---------------------------------

def symbolic_ref_file(dirs: RepoDirs, name: str, common: bool = True) -> str | None:
    """The ref a symbolic ref file names (`HEAD`, `refs/remotes/origin/HEAD`), read from the
    files without a subprocess; None when it is not a symbolic ref there."""
    try:
        text = ((dirs.common_dir if common else dirs.git_dir) / name).read_text().strip()
    except OSError:
        return None
    return text[5:].strip() if text.startswith("ref: ") else None


def blob_ids_at(root: Path, commit: str, paths: Sequence[str]) -> dict[str, str]:
    """path -> blob id of each of `paths` that is a regular file (or a symlink, read as the blob
    it is) at `commit`, in one `cat-file --batch-check`."""
    check_full_id(commit, "blob_ids_at")
    wanted = [p for p in paths if "\n" not in p]
    if not wanted:
        return {}
    out = _run(["cat-file", "--batch-check"], root,
               input="".join(f"{commit}:{p}\n" for p in wanted).encode()).stdout.decode("utf-8", "replace")
    found = {}
    for path, line in zip(wanted, out.splitlines()):
        parts = line.split()
        if len(parts) == 3 and parts[1] == "blob" and is_full_id(parts[0]):
            found[path] = parts[0]
    return found


def merge_texts(root: Path, base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """`ours` with the change from `base` to `theirs` applied (`git merge-file`), None when
    the two changes overlap."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="flowgit-merge-") as tmp:
        names = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            path.write_bytes(data)
            names.append(str(path))
        proc = _run(["merge-file", "-p", "-q", EOO, *names], root, check=False)
    if proc.returncode == 0:
        return proc.stdout
    if proc.returncode > 0:
        return None
    raise failure(["merge-file"], proc)
