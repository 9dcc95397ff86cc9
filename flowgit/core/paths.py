"""A path inside the repository, as a task's `files:` and `--file` name it: what is refused and why."""
from __future__ import annotations

import re

from flowgit.ids import FORMAT_CHARS

# patterns, compiled (and cached by re) on the first path checked, not by every command's import
_CONTROL = "[\\x00-\\x1f\\x7f-\\x9f\u2028\u2029\\\\]"
_FORMAT = f"[{FORMAT_CHARS}]"
_DRIVE = r"[A-Za-z]:"
_NOT_NORMAL = r"//|./\.(?:/|\Z)"  # an empty or '.' part, but for a leading './'
PATH_RULE = ("a relative path with '/' between its parts, without a '..' or .git part (as Windows "
             "reads them too), a drive letter, a backslash or a control character; normal (no "
             "'//' or '/./'), not in .flow/ (flowgit's own state), without a leading '~', "
             "whitespace at either end or an invisible format character")  # the plan schema's `path`


# what path_problem says of a path that leaves the repository (the rest are refused inside it)
OUTSIDE = frozenset({"an absolute path", "a '..' part leads outside",
                     "a .git part names git's own directory"})


def path_problem(value: str) -> str | None:
    """Why `value` is not a path inside the repository (task `files:`), or None. Windows drops
    the dots and spaces that end a name (`.. ` and `...` go up, `.git.` is .git) and knows .git
    as GIT~1 too. Tasks that share a file are never run at once: one file, one spelling."""
    if not value:
        return "an empty path"
    if value.startswith("/") or re.match(_DRIVE, value):
        return "an absolute path"
    if re.search(_CONTROL, value):
        return "a backslash or a control character"
    if re.search(_FORMAT, value):
        return ("an invisible format character, such as a bidirectional control that shows the "
                "text otherwise than it is")
    if value != value.strip():
        return "whitespace at its start or end"
    if value.startswith("~"):
        return "a leading '~', which a shell reads as a home directory"
    parts = value.split("/")
    if any(p not in ("", ".") and not p.strip(". ") for p in parts):
        return "a '..' part leads outside"
    if any(p.rstrip(". ").casefold() == ".git" or p.casefold() == "git~1" for p in parts):
        return "a .git part names git's own directory"
    if re.search(_NOT_NORMAL, value):
        return "not a normal path: an empty or '.' part, where a/b is meant"
    first = parts[1] if parts[0] == "." and len(parts) > 1 else parts[0]
    if first.rstrip(". ").casefold() == ".flow" or first.casefold() == "flow~1":
        return "in .flow/, flowgit's own state, which no task declares"
    return None
