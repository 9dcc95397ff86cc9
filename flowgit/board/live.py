"""The live channel's cheap version tag: what changes when the board would show something
new. HEAD (and the shared state ref, where there is one), and the size and mtime of every
file under .flow/ that the pages read; plus how many of the lease and retry deadlines seen on
the last pages have passed (an expired lease changes a task's state with no write)."""
from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Iterable

from flowgit import git
from flowgit.clock import wall_now

STATE_REF = "refs/heads/flow/state"
MIN_INTERVAL = 0.1  # seconds: many open pages share one computation


class Version:
    def __init__(self, dirs: git.RepoDirs, flow: Path) -> None:
        self.dirs = dirs
        self.flow = flow
        self._mu = threading.Lock()
        self._at = 0.0
        self._tag = ""
        self._deadlines: dict[str, tuple[float, ...]] = {}

    def note_deadlines(self, plan_id: str, deadlines: Iterable[float]) -> None:
        """Lease ends and retry times a page showed: when one passes, the tag changes."""
        with self._mu:
            self._deadlines[plan_id] = tuple(sorted(deadlines))
            self._at = 0.0

    def tag(self, now: float | None = None) -> str:
        with self._mu:
            clock = time.monotonic()
            if self._tag and clock - self._at < MIN_INTERVAL:
                return self._tag
            now = wall_now() if now is None else now
            passed = sum(1 for ds in self._deadlines.values() for d in ds if d <= now)
            h = hashlib.blake2b(digest_size=10)
            h.update(f"{git.read_head(self.dirs)}|{git.read_ref(self.dirs, STATE_REF)}|{passed}".encode())
            for item in self._files():
                h.update(item)
            self._tag, self._at = h.hexdigest(), clock
            return self._tag

    def _files(self) -> Iterable[bytes]:
        for path in (self.flow / "config.yaml",):
            yield _stat(path)
        yield from _tree(self.flow / "adrs")
        plans = self.flow / "plans"
        try:
            entries = sorted(os.scandir(plans), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.is_symlink() or not entry.is_dir():
                continue
            base = Path(entry.path)
            yield entry.name.encode()
            yield _stat(base / "plan.yaml")
            yield _stat(base / "spec.yaml")
            yield from _tree(base / "events")


def _stat(path: Path) -> bytes:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return b"-"
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()


def _tree(path: Path) -> Iterable[bytes]:
    try:
        entries = list(os.scandir(path))
    except OSError:
        yield b"-"
        return
    for entry in sorted(entries, key=lambda e: e.name):
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        yield f"{entry.name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()
