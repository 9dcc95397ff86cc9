"""`flowgit sync [--remote NAME] [--allow-unrelated]`."""
from __future__ import annotations

from flowgit.cli.app import App
from flowgit.ops import sync as syncing


def sync(app: App, remote: str | None, allow_unrelated: bool = False) -> int:
    app.repo.require_init()
    result = syncing.sync(app.repo, remote, allow_unrelated=allow_unrelated)
    app.out.result(result, f"synced with {result['remote']}/{result['branch']} ({result['merge']})")
    return 0
