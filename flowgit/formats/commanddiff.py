"""The commands a change adds or changes, for `flowgit diff` (text, markdown, JSON): a reviewer
sees them first, since each is code that will run once someone trusts it."""
from __future__ import annotations

import shlex
from typing import Any, Mapping, Sequence

from flowgit.core import commands
from flowgit.core.commands import Command


def compare(old_config: Mapping[str, Any] | None, new_config: Mapping[str, Any] | None,
            plans: Sequence[tuple[str, Mapping[str, Any] | None, Mapping[str, Any] | None]]
            ) -> dict[str, Any]:
    """{"config": {...}, "plans": {plan: {...}}, "added": [...], "changed": [...]}, each list of
    Command.as_json(); plans are (id, old raw, new raw)."""
    out: dict[str, Any] = {"plans": {}}
    added: list[Command] = []
    changed: list[Command] = []
    a, c = commands.changes(commands.raw_config_commands(old_config), commands.raw_config_commands(new_config))
    out["config"] = {"commands_added": [x.as_json() for x in a], "commands_changed": [x.as_json() for x in c]}
    added += a
    changed += c
    for pid, old, new in plans:
        a, c = commands.changes(commands.raw_plan_commands(pid, old), commands.raw_plan_commands(pid, new))
        out["plans"][pid] = {"commands_added": [x.as_json() for x in a],
                             "commands_changed": [x.as_json() for x in c]}
        added += a
        changed += c
    out["added"] = [x.as_json() for x in added]
    out["changed"] = [x.as_json() for x in changed]
    return out


def _line(cmd: Mapping[str, Any]) -> str:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted((cmd.get("env") or {}).items()))
    return (env + " " if env else "") + " ".join(shlex.quote(a) for a in cmd["argv"])


def render_text(result: Mapping[str, Any]) -> str:
    added, changed = result.get("commands_added") or [], result.get("commands_changed") or []
    if not added and not changed:
        return ""
    lines = [f"commands added or changed ({len(added) + len(changed)}): they run only once "
             "trusted in each clone (`flowgit trust`)"]
    lines += [f"  + {c['file']} {c['key']}: {_line(c)}" for c in added]
    lines += [f"  ~ {c['file']} {c['key']}: {_line(c)}" for c in changed]
    return "\n".join(lines) + "\n"


def render_markdown(result: Mapping[str, Any]) -> str:
    added, changed = result.get("commands_added") or [], result.get("commands_changed") or []
    if not added and not changed:
        return ""
    out = ["#### Commands added or changed", "",
           f"This change adds or changes {len(added) + len(changed)} command(s) that flowgit runs. "
           "Review them: each runs in a clone only once trusted there (`flowgit trust`).", "",
           "| | file | key | command |", "|---|---|---|---|"]
    for sign, items in (("added", added), ("changed", changed)):
        for c in items:
            cmd = _line(c).replace("|", "\\|").replace("`", "'")
            out.append(f"| {sign} | `{c['file']}` | `{c['key']}` | `{cmd}` |")
    return "\n".join(out) + "\n\n"
