"""Ids are checked before any path is built from them."""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterable

from flowgit.errors import UsageError

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_ID = re.compile(ID_PATTERN)
# Windows opens these names as devices whatever the extension (CON.jsonl is the console), and
# drops a trailing '.', so such an id's files would not be its own on a Windows checkout.
_DEVICE = re.compile(r"(?:CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(?:\..*)?\Z", re.IGNORECASE)
DEVICE_NAMES = "CON, PRN, AUX, NUL, COM0-COM9, LPT0-LPT9"


def id_problem(value: object) -> str | None:
    """Why `value` cannot be an id (a few words), or None when it can."""
    if not isinstance(value, str) or not _ID.fullmatch(value) or ".." in value:
        return ("use letters, digits, '.', '_' or '-' "
                "(at most 64, starting with a letter or digit, no '..')")
    if _DEVICE.match(value):
        return (f"{value.split('.')[0]} is a Windows device name ({DEVICE_NAMES}, with or without "
                "an extension, any case): its files could not be written there; choose another id")
    if value.endswith("."):
        return "an id cannot end with '.' (Windows drops it from file names): remove it"
    if value.endswith(".lock"):
        return ("an id cannot end with '.lock' (git refuses such a branch name, so its claim ref "
                "and the branch `run` works on could not be made): rename it")
    return None


def is_valid_id(value: object) -> bool:
    return (isinstance(value, str) and bool(_ID.fullmatch(value)) and ".." not in value
            and not value.endswith((".", ".lock")) and not _DEVICE.match(value))


def check_id(value: str, what: str = "id") -> str:
    problem = id_problem(value)
    if problem:
        raise UsageError(f"invalid {what} {value!r}: {problem}")
    return value


MAX_ACTOR = 200


def actor_problem(name: str) -> str | None:
    """Why `name` cannot name who acts (a worker, a reviewer), or None. It goes into event
    lines and commit trailers: one line of printable text."""
    if not name.strip():
        return "it is empty"
    if len(name) > MAX_ACTOR:
        return f"it is {len(name)} characters long, more than {MAX_ACTOR}"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029" for c in name):
        return "it holds a newline or another control character"
    return None


def check_actor(name: str, what: str = "worker name") -> str:
    problem = actor_problem(name)
    if problem:
        raise UsageError(f"invalid {what} {name!r}: {problem}; use one line of at most "
                         f"{MAX_ACTOR} printable characters")
    return name


# Unicode format characters (category Cf, as of Unicode 15.1): invisible, and among them the
# bidirectional controls (U+202A-U+202E, U+2066-U+2069) that make text read otherwise than it
# is stored. A regex character class body; schemas/*.json repeat it.
FORMAT_CHARS = ("\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
                "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
                "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
                "\U000e0020-\U000e007f")
UNSEEN = f"[\\s\\x00-\\x1f\\x7f-\\x9f{FORMAT_CHARS}]"
# git's own rule for a remote name is a ref name's (refs/remotes/NAME/...): no '..', '@{', empty
# or '.'-led part, part ending '.lock', nor any of ~^:?*[\ ; a leading '-' would be an option
REMOTE_PATTERN = ("^(?![-./])(?!.*(?:\\.\\.|@\\{|//|/\\.|\\.lock(?:/|$)|/$))"
                  f"[^\\s\\x00-\\x1f\\x7f-\\x9f~^:?*\\[\\\\{FORMAT_CHARS}]+$")
REMOTE_RULE = ("a name from `git remote` (git's rules: no whitespace, control or format character, "
               "none of ~^:?*[\\, no '..', '@{' or '//', not starting with '-', '.' or '/')")


def remote_problem(value: object) -> str | None:
    """Why `value` cannot name a remote (`remote:` in config, `sync --remote`), or None. It
    reaches `git fetch` and `git push`, and is shown in hints: nothing git or a reader could take
    for something else."""
    if not isinstance(value, str):
        return "not text"
    if not value:
        return "it is empty"
    if value.startswith("-"):
        return "it starts with '-', so git would read it as an option"
    # compiled here, not at import: every command imports this module, few read a remote
    if re.search(UNSEEN, value):
        return "it holds whitespace, a control character or an invisible format character"
    if not re.match(REMOTE_PATTERN[:-1] + "\\Z", value):
        return "git does not allow it as a remote name"
    return None


def branch_problem(value: object) -> str | None:
    """Why `value` cannot name a branch (git check-ref-format's rules for refs/heads/NAME), or
    None. A branch name from data (an event's `base`) becomes a path under .git/ and a git
    argument: nothing that climbs out of refs/heads/ or reads as an option."""
    problem = remote_problem(value)
    if problem is not None:
        return problem.replace("a remote name", "a branch name")
    assert isinstance(value, str)
    if value.endswith(".") or value == "@" or any(p.startswith(".") for p in value.split("/")):
        return "git does not allow it as a branch name"
    return None


def check_remote(value: str, what: str = "remote name") -> str:
    problem = remote_problem(value)
    if problem:
        # shown with repr() and never inside a suggested command: the value is hostile
        raise UsageError(f"invalid {what} {value!r}: {problem}; use {REMOTE_RULE}")
    return value


def case_twins(ids: Iterable[str]) -> list[list[str]]:
    """Groups of ids that differ only by case (on macOS and Windows their files are one file),
    each sorted, in order of their first id."""
    ids = list(ids)
    if len({ident.casefold() for ident in ids}) == len(set(ids)):
        return []  # no two distinct ids share a folded form
    groups: dict[str, list[str]] = defaultdict(list)
    for ident in ids:
        if ident not in groups[ident.casefold()]:
            groups[ident.casefold()].append(ident)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def split_ref(ref: str) -> tuple[str | None, str]:
    """'PLAN/TASK' -> (PLAN, TASK); 'TASK' -> (None, TASK). Both parts are checked."""
    if "/" in ref:
        plan, _, task = ref.partition("/")
        if "/" in task:
            raise UsageError(f"invalid task reference {ref!r}: use PLAN/TASK or TASK")
        return check_id(plan, "plan id"), check_id(task, "task id")
    return None, check_id(ref, "task id")


__all__ = ["DEVICE_NAMES", "FORMAT_CHARS", "ID_PATTERN", "MAX_ACTOR", "REMOTE_PATTERN", "REMOTE_RULE",
           "actor_problem", "case_twins", "check_actor", "check_id", "check_remote", "id_problem",
           "is_valid_id", "remote_problem", "split_ref"]
