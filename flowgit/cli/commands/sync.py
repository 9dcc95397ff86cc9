"""`flowgit sync [--remote NAME] [--allow-unrelated]`."""
from __future__ import annotations

from flowgit.cli.app import App
from flowgit.ops import sync as syncing
from flowgit.store.configpin import follow_work
from flowgit.store.repo import FlowRepo

UNKNOWN_SAID = 8  # lines; a teammate can push a thousand made-up claims


def sync(app: App, remote: str | None, allow_unrelated: bool = False) -> int:
    repo = app.repo
    repo.require_init()
    follow_work(repo)
    result = syncing.sync(repo, remote, allow_unrelated=allow_unrelated)
    store = repo.state_store
    unknown = sorted(line for _, line in store.unknown_claims.values()) if store is not None else []
    if store is not None:  # claim refs of tasks no plan here has, said once (ops/claimrefs)
        result["unknown_claims"] = unknown
    app.out.result(result, f"synced with {result['remote']}/{result['branch']} ({result['merge']})")
    held = result.get("held_claims")
    for line in held if isinstance(held, list) else ():  # claim refs that hold their task
        app.out.warn(str(line))
    for line in unknown[:UNKNOWN_SAID]:
        app.out.warn(line)
    if len(unknown) > UNKNOWN_SAID:
        app.out.warn(f"{len(unknown) - UNKNOWN_SAID} more claim ref(s) of tasks no plan here has, none of "
                     "them folded: `flowgit doctor` lists them")
    if store is not None and store.unknown_claims:
        from flowgit.ops.claimrefs import note_said

        note_said(repo, store.unknown_claims)
    fresh = FlowRepo(repo.root)  # as the next command will read it
    still = follow_work(fresh)
    if still is not None:
        app.out.warn(f"{still}: every command but sync and doctor stops on it")
    elif fresh.state_store is not None:
        _unreadable_lines(app, fresh)
    return 0


def _unreadable_lines(app: App, repo: FlowRepo) -> None:
    """Name each line of the state's logs the checker refuses (only logs not found clean
    before are read): what the sync brought that holds a task, or a plan."""
    from flowgit.store import plansplice
    from flowgit.store.statelogs import check_state_logs

    _, errors, _ = check_state_logs(repo)
    plansplice.store(repo).save()
    for line in errors[:5]:
        app.out.warn(f"unreadable event at {line}: it holds its task (its plan, in _plan.jsonl) "
                     "until the line is removed")
    if len(errors) > 5:
        app.out.warn(f"{len(errors) - 5} more unreadable event line(s): `flowgit validate` lists them")
