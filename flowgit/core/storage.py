"""Where config.yaml says the state lives: `version: 1` keeps the event logs in the branch,
`version: 2` on a state branch of their own (`state.branch`, default flow/state; ADR 0011)."""
from __future__ import annotations

import re
from typing import Any, Mapping

from flowgit import __version__
from flowgit.errors import InvalidFile

FORMATS = (1, 2)
DEFAULT_BRANCH = "flow/state"
# `compact.threshold` when config.yaml names none. Format 2: a transition on a log this long
# stays within 1.2x of one on a fresh log (bench/bench_state.py, part e: 500 events 1.07x,
# 1,000 events 1.16x-1.22x, 10,000 events 2.4x-2.8x); format 1 compacts only when asked.
COMPACT_THRESHOLD = {1: 0, 2: 500}
# The largest event log flowgit reads (validate refuses a larger file; a state log this large,
# which only a sync or a hand-made commit can bring, is refused before it is read).
MAX_LOG_BYTES = 256 * 1024 * 1024
_BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,99}")


def storage_settings(data: Mapping[str, Any], where: str) -> tuple[int, str]:
    """(format version, state branch) from the config, or a one-line error."""
    version = data.get("version", 1)
    if version not in FORMATS or isinstance(version, bool):
        raise InvalidFile(f"{where}: version: must be 1 or 2, got {version!r}: this flowgit reads "
                          "formats 1 and 2; use a flowgit that knows this version")
    state = data.get("state") or {}
    if not isinstance(state, Mapping):
        raise InvalidFile(f"{where}: state: expected a mapping, got {type(state).__name__}")
    unknown = [k for k in state if k != "branch" and not (isinstance(k, str) and k.startswith("x-"))]
    if unknown:
        raise InvalidFile(f"{where}: state: unknown key {unknown[0]!r} (allowed: branch)")
    branch = state.get("branch", DEFAULT_BRANCH)
    if (not isinstance(branch, str) or not _BRANCH.fullmatch(branch) or ".." in branch
            or branch.endswith((".lock", "/", ".")) or "//" in branch):
        raise InvalidFile(f"{where}: state.branch: invalid branch name {branch!r}: use letters, "
                          "digits, '/', '-', '_' and '.', not starting with '-' or '.'")
    remote = data.get("remote") if isinstance(data.get("remote"), str) else "origin"
    if (branch == "HEAD" or branch.endswith("_HEAD") or branch.split("/")[0] in ("refs", "heads", "tags", "remotes")
            or branch.startswith(f"{remote}/")):
        # refs/heads/HEAD, refs/heads/origin/main ...: every git command of the user would warn
        # "refname is ambiguous" or pick the other ref
        raise InvalidFile(f"{where}: state.branch: {branch!r} reads as another ref to git (HEAD, "
                          f"refs/..., {remote}/...): name a branch of its own (default flow/state)")
    requires = data.get("requires")
    if requires is not None:
        wanted = _release(requires)
        if wanted is None:
            raise InvalidFile(f"{where}: requires: {requires!r} is not a version like \"0.2.0\"")
        if wanted > _release(__version__):  # type: ignore[operator]
            raise InvalidFile(f"{where}: requires: this repository needs flowgit {requires} or later "
                              f"(this is {__version__}): upgrade flowgit")
    return version, branch


def _release(text: object) -> tuple[int, ...] | None:
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{1,6}(\.[0-9]{1,6}){0,3}", text.strip()):
        return None
    return tuple(int(part) for part in text.strip().split("."))
