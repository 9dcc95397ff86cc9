"""`flowgit hooks install`: the pre-commit hook, installed beside the user's own, never over it."""
from __future__ import annotations

from flowgit.cli.app import App
from flowgit.ops.clone_setup import install_hook


def install(app: App) -> int:
    result = install_hook(app.repo.root)
    hook, action = result["hook"], result["action"]
    text = {
        "installed": f"installed the pre-commit hook: {hook}",
        "updated": f"updated the pre-commit hook: {hook}",
        "unchanged": f"the pre-commit hook is up to date: {hook}",
        "chained": (f"installed the pre-commit hook: {hook}; the hook that was there is now "
                    f"{result['local']} and still runs after validation passes"),
    }[str(action)]
    app.out.result(result, text)
    return 0
