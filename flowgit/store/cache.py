"""The derived cache under `.flow/.cache/`: parsed plans and folded logs keyed by file stats.
Deleting it changes no answer; anything unreadable is rebuilt."""
from __future__ import annotations

import marshal
import os
from pathlib import Path
from typing import Any

CACHE_VERSION = 13  # 11: task files and ids under the path rules of issue 13; 12: the event checker


class DerivedCache:
    """One marshal file per key (a plan, its logs' records, the config). marshal, not JSON: it
    loads twice as fast, and the file is local (gitignored), written only by flowgit through a
    rename."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.marshal"

    def entry(self, key: str) -> dict[str, Any]:
        if key not in self._entries:
            data: dict[str, Any] = {}
            path = self._path(key)
            try:
                if not path.is_symlink():
                    loaded = marshal.loads(path.read_bytes())
                    if isinstance(loaded, dict) and loaded.get("version") == CACHE_VERSION:
                        data = loaded
            except (OSError, ValueError, EOFError, TypeError):
                data = {}
            data["version"] = CACHE_VERSION
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
        for key in list(self._dirty):
            if key not in self._entries:
                continue
            path = self._path(key)
            try:
                path.parent.mkdir(exist_ok=True)
                if path.parent.is_symlink():
                    continue
                tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
                try:
                    tmp.write_bytes(marshal.dumps(self._entries[key]))
                    os.replace(tmp, path)
                except OSError:  # a full disk: no half-written file stays behind
                    tmp.unlink(missing_ok=True)
                    raise
            except (OSError, ValueError):
                pass  # the cache is an optimisation only
        self._dirty.clear()
