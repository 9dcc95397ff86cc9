"""The derived cache: parsed plans, folded logs and evaluated states, keyed by file stats,
content hashes and blob ids. Deleting it changes no answer; anything unreadable is rebuilt;
`FLOWGIT_NO_CACHE=1` turns it off (every read from the files).

It lives in the git dir, never in the work tree (ADR 0012), so a read writes nothing that
`git status` shows: what one work tree derived from its own files in its own git dir
(`.git/flowgit/cache/`, `.git/worktrees/NAME/flowgit/cache/`), the plan index (content-checked,
the same for every work tree) in the common one (`.git/flowgit/plans/`). A `.flow/.cache/` in
the work tree (an older flowgit's, or one a teammate committed) is never read.

A cache file is trusted only when it was written by this clone and this flowgit: each file
starts with a header naming the cache format, flowgit's version and a random key kept in the
common git dir (`.git/flowgit/cache.key`, which no push, pull or checkout carries)."""
from __future__ import annotations

import gc
import marshal
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from flowgit import __version__

CACHE_VERSION = 16  # 13: the event checker; 14: tuples, the plan index, the evaluated state; 15: rows apart;
# 16: clocks past 2**53-1 unreadable (a log folded or found clean before is read again)
NO_CACHE = "FLOWGIT_NO_CACHE"


def disabled() -> bool:
    return os.environ.get(NO_CACHE, "") not in ("", "0")


class DerivedCache:
    """One marshal file per key (a plan, its logs' records, the config). marshal, not JSON: it
    loads twice as fast, and the file is local (gitignored), written only by flowgit through a
    rename."""

    def __init__(self, folder: Path, key_dir: Path | None = None) -> None:
        self.folder = folder  # in a git dir: the parent of `flowgit/` is git's own
        self.key_dir = key_dir
        self.off = disabled()
        self._header: bytes | None = None
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.marshal"

    def beside(self, folder: Path) -> DerivedCache:
        """Another store of this clone's cache (the same key), in `folder`."""
        other = DerivedCache(folder, self.key_dir)
        other.off, other._header = self.off, self._header
        return other

    def _linked(self) -> bool:
        """The folder or the one holding it is a symlink: nothing is read or written there."""
        return self.folder.is_symlink() or self.folder.parent.is_symlink()

    def header(self) -> bytes | None:
        """What every file of this clone's cache starts with (None: no key can be kept, so
        nothing is read or written)."""
        if self._header is None:
            if self.key_dir is None:
                return None
            path = self.key_dir / "cache.key"
            try:
                secret = path.read_text().strip()
            except OSError:
                secret = ""
            if len(secret) != 32:
                try:
                    self.key_dir.mkdir(exist_ok=True)
                    tmp = path.with_name(f".cache.key.{os.getpid()}.tmp")
                    tmp.write_text(os.urandom(16).hex() + "\n")
                    os.replace(tmp, path)
                    secret = path.read_text().strip()
                except OSError:
                    return None
            self._header = f"flowgit-cache {CACHE_VERSION} {__version__} {secret}\n".encode()
        return self._header

    def entry(self, key: str) -> dict[str, Any]:
        if key not in self._entries:
            data: dict[str, Any] = {}
            path = self._path(key)
            header = None if self.off else self.header()
            try:
                if header is not None and not path.is_symlink() and not self._linked():
                    raw = path.read_bytes()
                    if raw.startswith(header):
                        loaded = marshal.loads(memoryview(raw)[len(header):])
                        if isinstance(loaded, dict):
                            data = loaded
            except (OSError, ValueError, EOFError, TypeError):
                data = {}
            self._entries[key] = data
        return self._entries[key]

    def changed(self, key: str) -> None:
        """The entry was updated in memory: `save` writes it."""
        self._dirty.add(key)

    def drop_all(self) -> None:
        """Forget what was read (another process rewrote the files under us)."""
        self._entries.clear()
        self._dirty.clear()

    def save(self) -> None:
        header = None if self.off else self.header()
        for key in list(self._dirty):
            if key not in self._entries or header is None:
                continue
            path = self._path(key)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if self._linked():
                    continue
                tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
                try:
                    tmp.write_bytes(header + marshal.dumps(self._entries[key]))
                    os.replace(tmp, path)
                except OSError:  # a full disk: no half-written file stays behind
                    tmp.unlink(missing_ok=True)
                    raise
            except (OSError, ValueError):
                pass  # the cache is an optimisation only
        self._dirty.clear()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic collector off while a plan is parsed or folded, and what was built
    then frozen out of its sight: tens of thousands of small records, none in a cycle, would
    make it scan every one of them again at each collection, during the fold and after it
    (at 50,000 tasks a third of the time). Reference counting still frees them. The next
    pause first gives the frozen objects back to the collector, so a long-running process
    (`watch`, `board`, `mcp`) never keeps a cycle of garbage frozen for more than one read."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
