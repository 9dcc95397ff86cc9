"""The watcher runs only commands this clone trusts (docs/SECURITY.md): an untrusted schedule
stays due, a wait keeps waiting, a signal stays pending, each said once."""
from __future__ import annotations

from typing import Callable

from flowgit.core.commands import Command
from flowgit.store.repo import FlowRepo

_said: set[str] = set()  # what this process has said already


def untrusted(repo: FlowRepo, cmd: Command | None, plan_id: str | None, what: str,
              log: Callable[[str], None]) -> bool:
    """True (and said once) when `cmd` is not trusted in this clone: leave it for later."""
    from flowgit.ops import trust

    if cmd is None:
        return False
    why = trust.why_untrusted(repo, cmd, plan_id)
    if why is None:
        return False
    say_once(f"{what}: not run: {why}", log)
    return True


def say_once(line: str, log: Callable[[str], None]) -> None:
    """Log `line` the first time this process has it to say (a watcher pass runs every second)."""
    if line not in _said:
        _said.add(line)
        log(line)
