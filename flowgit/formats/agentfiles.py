"""The files `flowgit setup` writes for coding agents, merged into what is there: pure text in,
text out, so a rerun changes nothing and the user's own text is never lost. Each merge returns
the new text (None: leave the file as it is) or raises InvalidFile naming the file and line."""
from __future__ import annotations

import json
import re
from typing import Any, Mapping

from flowgit.errors import InvalidFile

BEGIN = "<!-- flowgit:begin (written by `flowgit setup`; rerun it to update this block) -->"
END = "<!-- flowgit:end -->"
_BEGIN_RE = re.compile(r"^<!-- flowgit:begin\b.*-->\s*$")
_END_RE = re.compile(r"^<!-- flowgit:end\b.*-->\s*$")

# A slash command file flowgit wrote (and may rewrite) carries this line; without it, it is yours.
GENERATED = "<!-- written by `flowgit setup claude`"


def merge_block(current: str | None, block: str, where: str) -> str | None:
    """`current` with flowgit's block between the markers: added at the end when it has none,
    replaced in place when it has one; None when it is there already, unchanged."""
    wrapped = f"{BEGIN}\n{block.strip()}\n{END}\n"
    if current is None or not current.strip():
        return wrapped
    lines = current.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if _BEGIN_RE.match(line)]
    ends = [i for i, line in enumerate(lines) if _END_RE.match(line)]
    if not begins and not ends:
        sep = "" if current.endswith("\n\n") else "\n" if current.endswith("\n") else "\n\n"
        return current + sep + wrapped
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        if not begins or not ends:
            bad = (begins + ends)[0]
        else:
            bad = begins[1] if len(begins) > 1 else ends[1] if len(ends) > 1 else ends[0]
        raise InvalidFile(f"{where}:{bad + 1}: the flowgit:begin / flowgit:end markers are not one pair "
                          "in order: leave one pair (or none) and run `flowgit setup` again")
    start, stop = begins[0], ends[0]
    new = "".join(lines[:start]) + wrapped + "".join(lines[stop + 1:])
    return None if new == current else new


def _load_json(current: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(current)
    except json.JSONDecodeError as exc:
        raise InvalidFile(f"{where}:{exc.lineno}: not valid JSON ({exc.msg}): fix it, then run "
                          "`flowgit setup` again") from None
    if not isinstance(data, dict):
        raise InvalidFile(f"{where}:1: not a JSON object: fix it, then run `flowgit setup` again")
    return data


def merge_server(current: str | None, key: str, name: str, entry: Mapping[str, Any], where: str,
                 force: bool = False) -> tuple[str | None, str]:
    """A JSON settings file with `entry` as server `name` under `key` (mcpServers), the other
    servers and settings kept in their order. Returns (new text or None, what happened):
    added, updated (--force), unchanged, or kept (the user's own entry differs)."""
    data = _load_json(current, where) if current is not None and current.strip() else {}
    servers = data.get(key, {})
    if not isinstance(servers, dict):
        raise InvalidFile(f"{where}: {key} is not an object: fix it, then run `flowgit setup` again")
    old = servers.get(name)
    if old == dict(entry):
        return None, "unchanged"
    if old is not None and not force:
        return None, "kept"
    servers = dict(servers)
    servers[name] = dict(entry)
    data = dict(data)
    data[key] = servers
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n", "updated" if old is not None else "added"


def toml_server(name: str, command: str, args: list[str]) -> str:
    """A Codex `[mcp_servers.NAME]` table (TOML strings as JSON strings: both escape alike for
    the characters a command line holds)."""
    return (f"[mcp_servers.{name}]\ncommand = {json.dumps(command)}\n"
            f"args = [{', '.join(json.dumps(a) for a in args)}]\n")


def merge_toml_table(current: str | None, name: str, table: str, where: str) -> tuple[str | None, str]:
    """`current` (a Codex config.toml) with the `[mcp_servers.NAME]` table: appended when it
    has none; (None, "unchanged" | "kept") when it has one (the user's, edited by hand)."""
    text = current or ""
    header = re.compile(rf"^\s*\[\s*mcp_servers\s*\.\s*\"?{re.escape(name)}\"?\s*\]\s*(#.*)?$", re.M)
    match = header.search(text)
    if match:
        body = text[match.start():]
        nxt = re.search(r"^\s*\[", body[match.end() - match.start():], re.M)
        existing = body if nxt is None else body[: match.end() - match.start() + nxt.start()]
        same = existing.strip() == table.strip()
        return None, "unchanged" if same else "kept"
    sep = "" if not text or text.endswith("\n\n") else "\n" if text.endswith("\n") else "\n\n"
    new = text + sep + table
    if not _toml_ok(new):  # the file was broken, or names the server in another form
        raise InvalidFile(f"{where}: flowgit cannot add [mcp_servers.{name}] to it (it does not "
                          "parse, or defines that server in another form): add the snippet "
                          "`flowgit setup codex --dry-run` prints by hand")
    return new, "added"


def _toml_ok(text: str) -> bool:
    try:
        import tomllib
    except ImportError:  # Python 3.10: no parser in the standard library; appended as is
        return True
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


__all__ = ["BEGIN", "END", "GENERATED", "merge_block", "merge_server", "merge_toml_table",
           "toml_server"]
