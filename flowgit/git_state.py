"""The git door's plumbing half: the state branch (ADR 0011) is read and advanced with
`ls-tree`, `diff-tree`, `cat-file`, `hash-object`, a private index, `write-tree`,
`commit-tree` and `update-ref OLD` as the compare-and-swap. No work tree and no user index
is touched, so no hook sees these writes. Every argument from data follows `--end-of-options`
or is checked to be a full object id first."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from contextlib import contextmanager
from typing import IO, Callable, Collection, Iterator, Mapping, NamedTuple, Sequence

from flowgit.git import (EOO, GIT_ENV_DROP, INTERNAL, RepoDirs, _remote_run, _run, check_full_id, check_not_option, failure,
                         is_full_id, refusal)
from flowgit.errors import GitError, InvalidFile, RaceLost
from flowgit import treecheck
from flowgit.treecheck import Unchecked

# objects and the ref reach the disk before update-ref returns (git 2.36+; older gits ignore it)
FSYNC = ("-c", "core.fsync=committed", "-c", "core.fsyncMethod=fsync")
ZERO = "0" * 40


class TreeChange:
    __slots__ = ("path", "blob")

    def __init__(self, path: str, blob: str | None) -> None:
        self.path = path
        self.blob = blob  # None: removed


def list_blobs(root: Path, commit: str, prefix: str) -> dict[str, str]:
    """path -> blob id of every regular file under `prefix` at `commit`."""
    check_full_id(commit, "list_blobs")
    proc = _run(["ls-tree", "-r", "-z", "--full-tree", EOO, commit, "--", prefix], root)
    out = {}
    for item in proc.stdout.decode("utf-8", "replace").split("\0"):
        meta, _, path = item.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob":  # a symlink's too: never followed, only read
            out[path] = parts[2]
    return out


def list_dirs(root: Path, commit: str, prefix: str) -> list[str]:
    """The subtrees directly under `prefix` (ending in '/') at `commit`."""
    check_full_id(commit, "list_dirs")
    proc = _run(["ls-tree", "-z", "--full-tree", EOO, commit, "--", prefix], root)
    out = []
    for item in proc.stdout.decode("utf-8", "replace").split("\0"):
        meta, _, path = item.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "tree":
            out.append(path)
    return out


def names_under(root: Path, commit: str, prefix: str = "") -> list[str]:
    """The paths of every entry directly under `prefix` ('' for the root, else ending in '/')."""
    check_full_id(commit, "names_under")
    proc = _run(["ls-tree", "-z", "--name-only", "--full-tree", EOO, commit, *(["--", prefix] if prefix else [])], root)
    return [p for p in proc.stdout.decode("utf-8", "replace").split("\0") if p]


def changed_blobs(root: Path, old: str, new: str, prefix: str) -> list[TreeChange]:
    """What changed under `prefix` from commit `old` to commit `new`."""
    check_full_id(old, "changed_blobs")
    check_full_id(new, "changed_blobs")
    proc = _run(["diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", EOO, old, new,
                 "--", prefix], root)
    fields = proc.stdout.decode("utf-8", "replace").split("\0")
    out = []
    added = []
    for meta, path in zip(fields[0::2], fields[1::2]):
        parts = meta.split()
        if len(parts) < 5:
            continue
        if set(parts[2]) == {"0"}:
            added.append(path)
        # a gitlink (160000) is no blob: list_blobs and blob_ids_at skip it, so a warm cache agrees
        blob = None if set(parts[3]) == {"0"} or parts[1] == "160000" else parts[3]
        out.append(TreeChange(path, blob))
    _refuse_twice(root, new, added, prefix)
    return out


class Change(NamedTuple):
    path: str
    old_mode: str  # "000000": the path is new
    old: str | None
    new_mode: str  # "000000": the path is removed
    new: str | None


def tree_changes(root: Path, old: str, new: str, clean: Collection[str] = ()) -> list[Change]:
    """Every path that differs between two commits' trees, with both sides' modes and blobs."""
    return tree_changes_many(root, [(old, new)], clean)[0]


def tree_changes_many(root: Path, pairs: Sequence[tuple[str, str]], clean: Collection[str] = (),
                      later: list[Unchecked] | None = None) -> list[list[Change]]:
    """`tree_changes` of each (old, new) pair, from one `diff-tree --stdin` (the new commits
    distinct); each new tree's added paths checked for a duplicate entry (`later`: handed to
    the caller, who checks them before it writes anything), but in the commits `clean` names
    (this clone built their trees with `write-tree`, from an index, which holds a path once)."""
    for old, new in pairs:
        check_full_id(old, "tree_changes")
        check_full_id(new, "tree_changes")
    if len({new for _, new in pairs}) != len(pairs):
        return [tree_changes_many(root, [pair], clean, later)[0] for pair in pairs]
    # each line `NEW OLD` is read as a commit and its parent: the diff from OLD to NEW, after a
    # line holding NEW alone (none when they do not differ)
    proc = _run(["diff-tree", "--stdin", "-r", "-z", "--no-renames"], root,
                input="".join(f"{new} {old}\n" for old, new in pairs).encode())
    found: dict[str, list[Change]] = {new: [] for _, new in pairs}
    fields = iter(proc.stdout.decode("utf-8", "replace").split("\0"))
    into: list[Change] | None = None
    for field in fields:
        if not field.startswith(":"):
            into = found.get(field)
            if into is None and field:
                raise GitError(f"git diff-tree --stdin said {field[:60]!r} where a commit of {len(pairs)} was due")
            continue
        path = next(fields, "")
        parts = field[1:].split()
        if len(parts) < 5 or into is None:
            continue
        into.append(Change(path, parts[0], None if set(parts[2]) == {"0"} else parts[2],
                           parts[1], None if set(parts[3]) == {"0"} else parts[3]))
    for _, new in pairs:
        added = [c.path for c in found[new] if c.old is None]
        if new in clean or not added:
            continue
        if later is not None:
            later.append(Unchecked(new, added))
        else:
            _refuse_twice(root, new, added, "")
    return [found[new] for _, new in pairs]


def check_left(root: Path, checks: Sequence[Unchecked]) -> None:
    """What no `read_blobs(check=...)` looked up: by `ls-tree`."""
    for u in checks:
        if not u.done:
            _refuse_twice(root, u.commit, u.paths, "")
            u.done = True


def _refuse_twice(root: Path, new: str, added: list[str], prefix: str) -> None:
    """A tree holding one name twice (`git mktree` writes it; git fsck calls it duplicateEntries,
    a remote without receive.fsckObjects takes it) reads in diff-tree as the second entry
    *added*, with no old version: a merge would take an emptied log over ours and never see the
    events it drops. Every path diff-tree calls added is looked up in the new tree; one listed
    twice is refused before anything is merged."""
    if not added:
        return
    many = len(added) > 256  # one listing of the whole prefix rather than an argv that long
    proc = _run(["--literal-pathspecs", "ls-tree", "-r", "-z", "--name-only", "--full-tree", EOO, new, "--",
                 *([prefix] if many and prefix else [] if many else added)], root)
    seen: set[str] = set()
    wanted = set(added)
    for path in proc.stdout.decode("utf-8", "replace").split("\0"):
        if path in seen and path in wanted:
            raise _twice(new, path)
        seen.add(path)


def _twice(commit: str, path: str) -> InvalidFile:
    return InvalidFile(f"state commit {commit[:12]}:{path}: the path is in its tree twice (git fsck: "
                       "duplicateEntries), which flowgit never writes: nothing was merged; remove "
                       "the copy from that state branch with a state commit, and set "
                       "receive.fsckObjects on the remote")


def write_blobs(root: Path, contents: Sequence[bytes], folder: Path | None = None) -> list[str]:
    """Store each content as a blob (fsynced: core.fsync=committed); their ids in order, from one
    git process whatever their number. One content goes by `hash-object --stdin`; more, by
    `hash-object --stdin-paths` over files written in `folder` (flowgit's folder in the common
    git dir by default: no temporary module, the objects' file system), removed after."""
    if folder is None and len(contents) > 1:
        from flowgit.git import find_dirs

        folder = find_dirs(root).common_dir / "flowgit"
    if len(contents) <= 1 or folder is None or "\n" in str(folder):  # a path --stdin-paths cannot take
        out = [_run([*FSYNC, "hash-object", "-w", "--stdin"], root, input=data).stdout.decode().strip()
               for data in contents]
    else:
        folder = folder / "blobs"
        folder.mkdir(parents=True, exist_ok=True)
        _sweep(folder)
        token = f"{os.getpid()}-{os.urandom(4).hex()}"
        paths = [folder / f"{token}.{number}" for number in range(len(contents))]
        try:
            for path, data in zip(paths, contents):
                with open(path, "wb") as fh:  # the blob is fsynced by git; this file is only read
                    fh.write(data)
            out = _run([*FSYNC, "hash-object", "-w", "--no-filters", "--stdin-paths"], root,
                       input=b"".join(os.fsencode(p) + b"\n" for p in paths)).stdout.decode().split()
        finally:
            for path in paths:
                path.unlink(missing_ok=True)
    if len(out) != len(contents) or not all(is_full_id(sha) for sha in out):
        raise RaceLost(f"git hash-object wrote {len(out)} of {len(contents)} blobs: run the command again")
    return out


def _sweep(folder: Path) -> None:
    """Files a writer killed between writing them and hashing them left (an hour old or more)."""
    import time

    for entry in os.scandir(folder):
        try:
            if entry.stat().st_mtime < time.time() - 3600:
                os.unlink(entry.path)
        except OSError:
            pass


def write_tree(root: Path, index: Path, base: str | None, changes: Mapping[str, str | None],
               based: bool) -> str:
    """The tree of commit `base` with `changes` (path -> blob id, None to remove) applied,
    built in the private `index`. `based`: the index already holds `base`'s tree."""
    env = {"GIT_INDEX_FILE": str(index)}
    if not based:
        if base is None:
            index.unlink(missing_ok=True)
        else:
            check_full_id(base, "write_tree")
            _run(["read-tree", EOO, base], root, env=env)
    lines = []
    for path, blob in sorted(changes.items()):
        if "\n" in path or "\0" in path:
            raise ValueError(f"unsafe path {path!r}")
        lines.append(f"0 {ZERO}\t{path}\n" if blob is None else f"100644 {check_full_id(blob, 'write_tree')}\t{path}\n")
    _run(["update-index", "--index-info"], root, env=env, input="".join(lines).encode())
    return _run([*FSYNC, "write-tree"], root, env=env).stdout.decode().strip()


def commit_tree(root: Path, tree: str, parents: Sequence[str], message: str, sign: bool = False) -> str:
    """`sign`: with `-S` (plumbing never reads commit.gpgSign itself)."""
    args = [*FSYNC, "commit-tree", *(["-S"] if sign else [])]
    for parent in parents:
        args += ["-p", check_full_id(parent, "commit_tree")]
    args += [EOO, check_full_id(tree, "commit_tree")]
    return _run(args, root, env=INTERNAL, input=message.encode()).stdout.decode().strip()


def advance_ref(root: Path, ref: str, new: str, old: str | None, message: str) -> None:
    """Move `ref` to `new` only if it still is `old` (None: only if it does not exist)."""
    check_not_option(ref, "ref")
    check_full_id(new, "advance_ref")
    args = [*FSYNC, "update-ref", "-m", message, EOO, ref, new, old or ZERO]
    proc = _run(args, root, check=False)
    if proc.returncode != 0:
        err = failure(args, proc)
        raise RaceLost(f"{ref} moved while flowgit wrote it: run the command again ({err})")


def maintain(root: Path) -> None:
    """What `git commit` does after itself and plumbing never does: pack when it is time."""
    _run(["maintenance", "run", "--auto", "--quiet"], root, check=False)


def is_ancestor(root: Path, commit: str, of: str) -> bool:
    check_full_id(commit, "is_ancestor")
    check_full_id(of, "is_ancestor")
    return _run(["merge-base", "--is-ancestor", EOO, commit, of], root, check=False).returncode == 0


def merge_base(root: Path, a: str, b: str) -> str | None:
    check_full_id(a, "merge_base")
    check_full_id(b, "merge_base")
    proc = _run(["merge-base", EOO, a, b], root, check=False)
    return proc.stdout.decode().strip() or None


def blob_versions(root: Path, tips: Sequence[str], path: str) -> list[str]:
    """Every blob id `path` has had in the history of any of `tips` (a log's whole past)."""
    args = ["log", "--format=", "--raw", "--no-abbrev", "--no-renames", "-m", EOO,
            *[check_full_id(t, "blob_versions") for t in tips], "--", path]
    proc = _run(args, root, check=False)
    out = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith(":"):
            meta = line.split("\t", 1)[0].split()
            for blob in (meta[2], meta[3]):
                if set(blob) != {"0"}:
                    out.append(blob)
    return list(dict.fromkeys(out))


def blob_sizes(root: Path, blobs: Sequence[str]) -> dict[str, int]:
    """blob id -> size in bytes, in one `cat-file --batch-check` (no content read)."""
    wanted = [check_full_id(b, "blob_sizes") for b in dict.fromkeys(blobs)]
    if not wanted:
        return {}
    proc = _run(["cat-file", "--batch-check=%(objectname) %(objectsize)"], root,
                input="".join(f"{b}\n" for b in wanted).encode())
    out = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def state_dir(dirs: RepoDirs) -> Path:
    """flowgit's own files in the common git dir (shared by every work tree, never pushed)."""
    path = dirs.common_dir / "flowgit"
    path.mkdir(exist_ok=True)
    return path


def checked_out_in(dirs: RepoDirs, ref: str) -> Path | None:
    """The work tree whose HEAD is `ref` (None: no work tree has it checked
    out). Read from the HEAD files; with the reftable backend, from `git worktree list`."""
    if (dirs.common_dir / "reftable").is_dir():
        proc = _run(["worktree", "list", "--porcelain", "-z"], dirs.root, check=False)
        tree = None
        for field in proc.stdout.decode("utf-8", "replace").split("\0"):
            if field.startswith("worktree "):
                tree = Path(field[9:])
            elif field == f"branch {ref}" and tree is not None:
                return tree
        return None
    heads = [dirs.common_dir / "HEAD"]
    try:
        heads += [d / "HEAD" for d in (dirs.common_dir / "worktrees").iterdir()]
    except OSError:
        pass
    for head in heads:
        try:
            text = head.read_text().strip()
        except OSError:
            continue
        if text == f"ref: {ref}":
            try:  # a linked work tree: its git dir names the `.git` file at its top
                return Path((head.parent / "gitdir").read_text().strip()).parent
            except OSError:
                return head.parent.parent if head.parent.name == ".git" else head.parent
    return None


def fetch_ref(root: Path, remote: str, branch: str, into: str,
              also: Sequence[tuple[str, str]] = ()) -> bool:
    """Fetch the remote's `branch` into the local ref `into`; False when it has none. `also`:
    more (remote glob, local glob) pairs fetched in the same process, their local refs pruned
    when the remote deleted them (the claim refs, ADR 0013)."""
    check_not_option(remote, "remote name")
    check_not_option(branch, "branch name")
    specs = [f"+refs/heads/{branch}:{into}"]
    for src, dst in also:
        check_not_option(src, "ref")
        check_not_option(dst, "ref")
        specs.append(f"+{src}:{dst}")
    # no `maintenance run --auto` after every fetch: the state writer runs it one write in 16
    proc = _remote_run(["-c", "maintenance.auto=false", "fetch", "--quiet", "--no-tags",
                        *(["--prune"] if also else []), EOO, remote, *specs], root, remote)
    if proc.returncode != 0:
        text = proc.stderr.decode("utf-8", "replace")
        if "couldn't find remote ref" in text:
            return False
        raise failure(["fetch", remote], proc)
    return True


def push_ref(root: Path, remote: str, branch: str, commit: str) -> bool:
    """Push `commit` to the remote's `branch` as a fast-forward; False when it was rejected
    (someone pushed first: fetch, merge and try again)."""
    check_not_option(remote, "remote name")
    check_not_option(branch, "branch name")
    check_full_id(commit, "push_ref")
    proc = _remote_run(["push", "--quiet", "--porcelain", EOO, remote, f"{commit}:refs/heads/{branch}"], root,
                       remote)
    if proc.returncode == 0:
        return True
    text = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
    why = refusal(text)  # a hook's refusal is no lost race: retried 16 times, it ended in exit 4
    if why is not None:
        raise GitError(f"git push {remote} failed: {why}")
    if "rejected" in text or "fetch first" in text or "non-fast-forward" in text:
        return False
    raise failure(["push", remote], proc)



def push_refs(root: Path, remote: str, updates: Sequence[tuple[str | None, str]],
              leases: Mapping[str, str | None], atomic: bool = False) -> dict[str, str]:
    """One `git push` of several refs: `updates` are (commit or None to delete, remote ref);
    `leases` the refs pushed only if the remote still has that value (None: only if it has no
    such ref): a compare-and-swap per ref. Never forced otherwise. Remote ref -> "" when it
    was updated, else git's reason (each on its own unless `atomic`)."""
    check_not_option(remote, "remote name")
    args = ["push", "--porcelain", *(["--atomic"] if atomic else [])]
    for ref, expect in leases.items():
        check_not_option(ref, "ref")
        args.append(f"--force-with-lease={ref}:{check_full_id(expect, 'push_refs') if expect else ''}")
    specs = []
    for commit, ref in updates:
        check_not_option(ref, "ref")
        specs.append(f"{check_full_id(commit, 'push_refs') if commit else ''}:{ref}")
    proc = _remote_run([*args, EOO, remote, *specs], root, remote)
    said = {ref: "not pushed" for _, ref in updates}
    seen = False
    # what the remote said about a ref it refused (a ref beside it that git will not put it next to)
    errors = [ln for ln in proc.stderr.decode("utf-8", "replace").splitlines() if "cannot lock ref" in ln]
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and ":" in parts[1] and parts[0] in (" ", "+", "-", "*", "=", "!"):
            dst = parts[1].rsplit(":", 1)[1]
            if dst in said:
                seen = True
                said[dst] = (parts[2] if len(parts) > 2 else "rejected") if parts[0] == "!" else ""
                said[dst] += "".join(f"; {ln.strip()}" for ln in errors if said[dst] and f"'{dst}'" in ln)
    if proc.returncode != 0 and not seen:
        raise failure(["push", remote], proc)
    return said


def ref_values(root: Path, prefix: str) -> dict[str, tuple[str, str]]:
    """Every ref under `prefix` (ending in '/'): full name -> (object id, object type)."""
    check_not_option(prefix, "ref prefix")
    proc = _run(["for-each-ref", "--format=%(objectname) %(objecttype) %(refname)", EOO, prefix], root,
                check=False)
    out = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3:
            out[parts[2]] = (parts[0], parts[1])
    return out


def read_objects(root: Path, shas: Sequence[str], limit: int) -> dict[str, tuple[str, bytes | None]]:
    """Object id -> (type, content) in one `cat-file --batch`; content None above `limit`
    bytes, passed over as it streams, never held (a ref someone pushed may point at anything)."""
    wanted = [check_full_id(s, "read_objects") for s in dict.fromkeys(shas)]
    out: dict[str, tuple[str, bytes | None]] = {}
    if not wanted:
        return out
    with _cat_batch(root, wanted) as stdout:
        for sha in wanted:
            header = stdout.readline().split()
            if len(header) < 3:  # "<sha> missing"
                continue
            size = int(header[2])
            if size > limit:
                left = size
                while left > 0:
                    left -= len(stdout.read(min(left, 1 << 16)) or b"x" * left)
                out[sha] = (header[1].decode(), None)
            else:
                out[sha] = (header[1].decode(), stdout.read(size))
            stdout.read(1)
    return out


@contextmanager
def _cat_batch(root: Path, wanted: Sequence[str]) -> Iterator[IO[bytes]]:
    """`git cat-file --batch` asked for `wanted` (fed from a thread, so that a long list never
    blocks on a full pipe): its output, read by the caller; the process is ended on the way
    out, however the caller left."""
    import threading

    env = dict(os.environ)
    for key in GIT_ENV_DROP:
        env.pop(key, None)
    proc = subprocess.Popen(["git", "cat-file", "--batch"], cwd=root, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin

    def feed() -> None:
        try:
            stdin.write("".join(f"{sha}\n" for sha in wanted).encode())
            stdin.close()
        except OSError:  # stopped early: the caller refused what it read
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        yield proc.stdout
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        writer.join(timeout=5)


def tree_of(root: Path, commit: str) -> str | None:
    check_full_id(commit, "tree_of")
    proc = _run(["rev-parse", "--verify", "-q", EOO, f"{commit}^{{tree}}"], root, check=False)
    return proc.stdout.decode().strip() or None


def first_parent(root: Path, commit: str) -> str | None:
    check_full_id(commit, "first_parent")
    proc = _run(["rev-parse", "--verify", "-q", EOO, f"{commit}^1"], root, check=False)
    return proc.stdout.decode().strip() or None


def move_back(root: Path, ref: str, current: str, parent: str | None) -> None:
    """Move `ref` from `current` back to `parent` (delete it when there is none)."""
    check_not_option(ref, "ref")
    check_full_id(current, "move_back")
    if parent is None:
        _run(["update-ref", "-d", EOO, ref, current], root)
    else:
        _run(["update-ref", "-m", "flowgit: take back an unpushed write", EOO, ref,
              check_full_id(parent, "move_back"), current], root)


def commits_between(root: Path, base: str | None, tip: str) -> set[str]:
    """Full ids of the commits reachable from `tip` and not from `base` (`base..tip`)."""
    check_full_id(tip, "commits_between")
    args = ["rev-list", EOO, tip]
    if base is not None:
        args.append("^" + check_full_id(base, "commits_between"))
    return set(_run(args, root).stdout.decode().split())


def branch_refs(root: Path) -> list[str]:
    """Every local and remote-tracking branch (full ref names), symbolic refs left out."""
    proc = _run(["for-each-ref", "--format=%(refname) %(symref)", "refs/heads", "refs/remotes"], root)
    out = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        name, _, symref = line.partition(" ")
        if name and not symref:
            out.append(name)
    return out


def present_commits(root: Path, commits: Sequence[str]) -> set[str]:
    """Which of these commit ids this repository has (one `cat-file --batch-check`)."""
    wanted = [c for c in commits if c and all(ch in "0123456789abcdef" for ch in c)]
    if not wanted:
        return set()
    proc = _run(["cat-file", "--batch-check"], root, input="".join(f"{c}\n" for c in wanted).encode())
    out = set()
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "commit":
            out.add(parts[0])
    return out


def commit_merge(root: Path, message: str) -> None:
    """Conclude the merge in progress (format 2: the code merge alone; its `done` goes to the
    state branch)."""
    args = ["-c", "maintenance.auto=false", "commit", "--no-verify", "--quiet", "-m", message]
    proc = _run(args, root, env=INTERNAL, check=False)
    if proc.returncode != 0:
        raise failure(args, proc)


def read_blobs(root: Path, shas: Sequence[str], limit: int, name: Callable[[str], str],
               check: Sequence[Unchecked] = ()) -> dict[str, bytes]:
    """The contents of many blobs in one `cat-file --batch`, as `git.cat_blobs`, but a blob
    above `limit` bytes is refused by `name(sha)` as its header arrives, before its content is
    read (a state log a sync brought may be of any size). `check`: added paths looked up for a
    second entry in the same process, in the trees along each path (`treecheck`)."""
    wanted = list(dict.fromkeys(shas))
    out: dict[str, bytes] = {}
    trees = treecheck.requests([(u.commit, u.paths) for u in check if not u.done])
    if not wanted and not trees:
        return out
    with _cat_batch(root, wanted + list(trees)) as stdout:
        for sha in wanted:
            header = stdout.readline().split()
            if len(header) < 3:  # "<sha> missing": not in this repository
                continue
            size = int(header[2])
            if size > limit:
                raise InvalidFile(f"{name(sha)}: {size} bytes, above the {limit} byte limit of a log: "
                                  "nothing was read; a sync or a hand-made commit brought it: put back "
                                  "an earlier version of the log with a state commit")
            out[sha] = stdout.read(size)
            stdout.read(1)
        treecheck.read_trees(stdout, trees)
    for u in check:
        if not u.done:
            _refuse_twice(root, u.commit, treecheck.judge(u.commit, u.paths, trees, _twice), "")
            u.done = True
    return out


def odd_entries(root: Path, commit: str) -> list[tuple[str, str]]:
    """(path, mode) of every entry at `commit` that is neither a regular file nor a tree: a
    symlink (120000) or a submodule's commit (160000), which flowgit never writes."""
    check_full_id(commit, "odd_entries")
    proc = _run(["ls-tree", "-r", "-z", "--full-tree", EOO, commit], root)
    out = []
    for item in proc.stdout.decode("utf-8", "replace").split("\0"):
        meta, _, path = item.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[0] not in ("100644", "100755", "040000"):
            out.append((path, parts[0]))
    return out
