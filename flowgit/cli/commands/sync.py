"""`flowgit sync [--remote NAME]`."""
from __future__ import annotations

from flowgit import syncing
from flowgit.app import App


def sync(app: App, remote: str | None) -> int:
    app.repo.require_init()
    result = syncing.sync(app.repo, remote)
    app.out.result(result, f"synced with {result['remote']}/{result['branch']} ({result['merge']})")
    return 0
