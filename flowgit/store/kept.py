"""Results kept by content (a file's digest, a blob id) for one repository, in its common git
dir (`.git/flowgit/checked/`): no pull, clone or checkout writes there, so a teammate cannot
hand this clone a result for bytes it never checked. Issue 17: the splicing editor's index,
`validate`'s and `diff`'s reads."""
from __future__ import annotations

from pathlib import Path

from flowgit.store.cache import DerivedCache
from flowgit.store.repo import FlowRepo

_STORES: dict[Path, DerivedCache] = {}


def kept(repo: FlowRepo) -> DerivedCache:
    folder = repo.dirs.common_dir / "flowgit" / "checked"
    if folder not in _STORES:
        from flowgit import git_state

        git_state.state_dir(repo.dirs)
        _STORES[folder] = DerivedCache(folder, folder.parent)  # this clone's key: store/cache.py
    return _STORES[folder]
