"""`flowgit sync [--remote NAME] [--allow-unrelated]`."""
from __future__ import annotations

from flowgit.cli.app import App
from flowgit.ops import sync as syncing
from flowgit.store.configpin import follow_work
from flowgit.store.repo import FlowRepo


def sync(app: App, remote: str | None, allow_unrelated: bool = False) -> int:
    repo = app.repo
    repo.require_init()
    follow_work(repo)
    result = syncing.sync(repo, remote, allow_unrelated=allow_unrelated)
    app.out.result(result, f"synced with {result['remote']}/{result['branch']} ({result['merge']})")
    held = result.get("held_claims")
    for line in held if isinstance(held, list) else ():  # claim refs that hold their task
        app.out.warn(str(line))
    still = follow_work(FlowRepo(repo.root))  # as the next command will read it
    if still is not None:
        app.out.warn(f"{still}: every command but sync and doctor stops on it")
    return 0
