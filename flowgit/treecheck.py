"""A state tree holding one name twice (git fsck: duplicateEntries; `git mktree` writes it, a
remote without receive.fsckObjects takes it) looked up in the tree objects along each path
diff-tree called added, read by a `cat-file --batch` that runs anyway (the merge's read of
the logs, `git_state.read_blobs`): no `ls-tree` of its own. Pure: the object names to ask
for, and the raw trees judged. A path these cannot answer for is left to `ls-tree`."""
from __future__ import annotations

from typing import IO, Callable, Sequence

MAX_TREE = 8 << 20  # a bigger tree (a hostile one) is not held: ls-tree looks instead


class Unchecked:
    """Paths diff-tree called added in `commit`, not yet looked up for a second entry: the
    caller's `git_state.read_blobs(check=...)` does it in its `cat-file`, or
    `git_state.check_left` by `ls-tree`."""

    __slots__ = ("paths", "commit", "done")

    def __init__(self, commit: str, paths: list[str]) -> None:
        self.commit, self.paths, self.done = commit, paths, False


def requests(checks: Sequence[tuple[str, list[str]]]) -> dict[str, bytes | None]:
    """`COMMIT:DIR` of each tree along each added path (the root's is `COMMIT:`), each once."""
    out: dict[str, bytes | None] = {}
    for commit, paths in checks:
        for path in paths:
            parts = path.split("/")
            if _plain(path, parts):
                for i in range(len(parts)):
                    out.setdefault(f"{commit}:{'/'.join(parts[:i])}", None)
    return out


def _plain(path: str, parts: list[str]) -> bool:
    """A path a line of `cat-file --batch` names as it is (no line break, nor a carriage
    return, which git strips from a line's end; no '.' or '..' that git would read relative to
    the work tree; nothing lost in decoding)."""
    return not ("\n" in path or "\r" in path or "\ufffd" in path or any(p in ("", ".", "..") for p in parts))


def read_trees(stdout: IO[bytes], trees: dict[str, bytes | None]) -> None:
    """`cat-file --batch`'s answers to `trees`' names, in order: each tree's raw content."""
    for name in trees:
        header = stdout.readline().split()
        if len(header) != 3 or not header[2].isdigit():
            continue  # "<name> missing": ls-tree answers for its paths
        size = int(header[2])
        if header[1] == b"tree" and size <= MAX_TREE:
            trees[name] = stdout.read(size)
        else:
            left = size
            while left > 0:
                left -= len(stdout.read(min(left, 1 << 16)) or b"x" * left)
        stdout.read(1)


def judge(commit: str, paths: Sequence[str], trees: dict[str, bytes | None],
          twice: Callable[[str, str], Exception]) -> list[str]:
    """Raise `twice(commit, path)` for an added path along which some tree holds its next name
    twice; return the paths these trees could not answer for."""
    width = len(commit) // 2  # the bytes of an object id: SHA-1 or SHA-256
    doubled: dict[str, set[bytes] | None] = {}
    left = []
    for path in paths:
        parts = path.split("/")
        if not _plain(path, parts):
            left.append(path)
            continue
        for i, part in enumerate(parts):
            name = f"{commit}:{'/'.join(parts[:i])}"
            if name not in doubled:
                data = trees.get(name)
                doubled[name] = None if data is None else _doubled(data, width)
            names = doubled[name]
            if names is None:
                left.append(path)
                break
            if part.encode("utf-8") in names:
                raise twice(commit, path)
    return left


def _doubled(data: bytes, width: int) -> set[bytes] | None:
    """The names a raw tree holds more than once (None: not a tree this reads)."""
    seen: set[bytes] = set()
    twice: set[bytes] = set()
    at = 0
    while at < len(data):
        nul = data.find(b"\0", at)
        space = data.find(b" ", at, nul)
        if nul < 0 or space < 0 or nul + 1 + width > len(data):
            return None
        name = data[space + 1:nul]
        if name in seen:
            twice.add(name)
        seen.add(name)
        at = nul + 1 + width
    return twice
