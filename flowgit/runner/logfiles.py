"""Executor output logs under `.flow/logs/`, opened without following a symlink anywhere.

`.flow/logs/` is ignored by git, but a branch can still commit a symlink there (a tracked file
is tracked whatever .gitignore says); appending through it would write the executor's output
wherever the link points."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO

from flowgit.errors import FlowError, IsSymlink

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_NONBLOCK", 0))


def refuse(rel: str) -> IsSymlink:
    return IsSymlink(f"{rel} is a symlink (or not a plain file or directory): flowgit never writes "
                     f"through one; remove it (`git rm --cached {rel}` if it is committed) and run again")


def _cannot(rel: str, exc: OSError) -> FlowError:
    return FlowError(f"{rel}: cannot write the executor's log ({exc.strerror})")


def open_log(root: Path, log: Path) -> BinaryIO:
    """Open `log` (under `root`/.flow) for appending: each directory from `.flow` down is opened
    relative to its parent with O_NOFOLLOW and made if missing, then the file itself, so no
    component, now or in a race, can be a symlink."""
    parts = log.relative_to(root).parts
    rel = "/".join(parts)
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise _cannot(str(root), exc) from None
    try:
        for i, part in enumerate(parts[:-1]):
            rel = "/".join(parts[: i + 1])
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise refuse(rel) from None
                raise _cannot(rel, exc) from None
            os.close(fd)
            fd = nxt
        rel = "/".join(parts)
        try:
            out = os.open(parts[-1], _FILE_FLAGS, 0o644, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise refuse(rel) from None
            raise _cannot(rel, exc) from None
    except OSError as exc:  # mkdir, or .flow itself
        raise _cannot(rel, exc) from None
    finally:
        os.close(fd)
    if not _is_plain(out):
        os.close(out)
        raise refuse(rel)
    os.set_blocking(out, True)
    return os.fdopen(out, "ab")


def _is_plain(fd: int) -> bool:
    import stat

    return stat.S_ISREG(os.fstat(fd).st_mode)


def symlinked_logs(root: Path, plan_id: str) -> list[str]:
    """`.flow/logs`, `.flow/logs/PLAN` or an entry of it that is a symlink (repository-relative),
    for `run` to refuse before it claims anything."""
    found = []
    base = root / ".flow" / "logs"
    for path in (root / ".flow", base, base / plan_id):
        if path.is_symlink():
            return [path.relative_to(root).as_posix()]
    if (base / plan_id).is_dir():
        for entry in os.scandir(base / plan_id):
            if entry.is_symlink():
                found.append((base / plan_id / entry.name).relative_to(root).as_posix())
    return sorted(found)
