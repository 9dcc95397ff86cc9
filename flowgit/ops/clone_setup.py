"""What each clone sets up for itself, since git does not carry it: the event-log merge driver
and the pre-commit hook, installed beside the user's own, never over it."""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Callable

from flowgit import git, resources
from flowgit.errors import FlowError, HookExists, HookIO, HookNotFile, HookSymlink

MARKER = "# flowgit pre-commit hook"
HOOK = "pre-commit"
LOCAL = "pre-commit.local"    # the hook that was there before ours; ours runs it after validating
LEGACY = "pre-commit.legacy"  # where the pre-commit framework's `pre-commit install` moves ours

# The same text as hooks/pre-commit (a test keeps them equal): used when the wheel was built
# without the hooks/ package data.
PRE_COMMIT_SCRIPT = r"""#!/bin/sh
# flowgit pre-commit hook
# Installed by `flowgit hooks install` (and `flowgit init`), which updates it in place.
# Checks the staged .flow/ files with `flowgit validate --staged` (schemas, semantic checks,
# conflict markers, append-only event logs), then runs the hook that was here before it,
# saved next to it as pre-commit.local. Skip both once with `git commit --no-verify`.

hook_dir=$(dirname "$0")

# FLOWGIT_INTERNAL=1 marks flowgit's own commits; a commit that stages nothing under .flow/
# has nothing to check. Either way the chained hook below still runs.
if [ "${FLOWGIT_INTERNAL:-}" != "1" ] && ! git diff --cached --quiet -- .flow; then
    # flowgit.python: the interpreter that ran `flowgit hooks install` (PATH may lack flowgit's
    # bin directory in GUI clients, cron jobs and test runners)
    if command -v flowgit >/dev/null 2>&1; then
        flowgit validate --staged >/dev/null
    elif python=$(git config flowgit.python) && [ -x "$python" ]; then
        "$python" -m flowgit validate --staged >/dev/null
    elif command -v python3 >/dev/null 2>&1 && python3 -c 'import flowgit' >/dev/null 2>&1; then
        python3 -m flowgit validate --staged >/dev/null
    else
        echo "flowgit pre-commit hook: flowgit is not on PATH and python3 cannot import it:" \
            "install flowgit, or commit once with --no-verify" >&2
        exit 1
    fi
    status=$?
    if [ "$status" -ne 0 ]; then
        echo "flowgit: commit refused: fix the .flow/ problems above and stage them again" \
            "(or skip the check once with git commit --no-verify)" >&2
        exit "$status"
    fi
fi

local_hook="$hook_dir/pre-commit.local"
if [ -f "$local_hook" ]; then
    if [ -x "$local_hook" ]; then
        exec "$local_hook" "$@"
    fi
    echo "flowgit pre-commit hook: $local_hook is not executable, so it was not run" \
        "(chmod +x it to run it)" >&2
fi
exit 0
"""

DONE = {
    "installed": "pre-commit hook",
    "updated": "pre-commit hook (updated)",
    "chained": "pre-commit hook (chained to the existing one, now pre-commit.local)",
}


def hook_script() -> bytes:
    """Our pre-commit hook: the copy shipped as package data, else the built-in one."""
    try:
        packaged = resources.folder("hooks") / HOOK
        if packaged.is_file():
            data = packaged.read_bytes()
            if is_ours(data):
                return data
    except (ModuleNotFoundError, TypeError, OSError):
        pass
    return PRE_COMMIT_SCRIPT.encode()


def is_ours(content: bytes) -> bool:
    return MARKER.encode() in content.splitlines()


def decide(current: bytes | None, ours: bytes, local_exists: bool) -> str:
    """installed | updated | unchanged | chained, or refuse (a foreign hook and no room to chain it)."""
    if current is None:
        return "installed"
    if is_ours(current):
        return "unchanged" if current == ours else "updated"
    return "refuse" if local_exists else "chained"


def hooks_dir(root: Path) -> Path:
    """core.hooksPath (relative paths from the work tree root, where git runs hooks), else
    <git-common-dir>/hooks, shared by every worktree."""
    configured = git.config_get_path(root, "core.hooksPath")
    if configured:
        return Path(os.path.abspath(root / configured))
    return git.common_dir(root) / "hooks"


def _read_hook(path: Path) -> bytes | None:
    if os.path.islink(path):
        raise HookSymlink(
            f"{path}: the pre-commit hook is a symlink and flowgit never writes through one: "
            "replace it with a regular file (or call `flowgit validate --staged` from the script "
            "it points to), then run `flowgit hooks install` again")
    if not os.path.lexists(path):
        return None
    if not path.is_file():
        raise HookNotFile(f"{path}: is not a regular file: remove it, then run "
                        "`flowgit hooks install` again")
    return path.read_bytes()


def _write_executable(path: Path, content: bytes) -> Path:
    """Write `content` to a temporary file beside `path` (mode 755) and return it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o755)
    try:
        os.write(fd, content)
        os.fchmod(fd, 0o755)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def record_python(root: Path) -> str | None:
    """Remember this interpreter (it imports flowgit) as `flowgit.python`, for a hook run where
    flowgit is not on PATH."""
    python = sys.executable
    if not python or not os.path.isabs(python):
        return None
    if git.config_get(root, "flowgit.python") != python:
        git.config_set(root, "flowgit.python", python)
    return python


def install_hook(root: Path) -> dict[str, str | None]:
    """Install or update the pre-commit hook; an existing foreign hook becomes pre-commit.local."""
    directory = hooks_dir(root)
    hook = directory / HOOK
    local = directory / LOCAL
    current = _read_hook(hook)
    legacy = directory / LEGACY
    if (current is not None and not is_ours(current) and legacy.is_file()
            and not legacy.is_symlink() and is_ours(legacy.read_bytes())):
        # `pre-commit install` moved ours aside and runs it first: keep that arrangement.
        hook, current = legacy, legacy.read_bytes()
    ours = hook_script()
    action = decide(current, ours, os.path.lexists(local))
    if action == "refuse":
        raise HookExists(
            f"{hook}: a pre-commit hook is already there and {local} exists too, so flowgit "
            f"cannot chain to it: merge the two into {LOCAL} and remove {HOOK} (or add "
            "`flowgit validate --staged` to your hook), then run `flowgit hooks install` again")
    if action != "unchanged":
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = _write_executable(hook, ours)
            try:
                if action == "chained":
                    os.rename(hook, local)
                os.replace(tmp, hook)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise HookIO(f"{hook}: cannot install the pre-commit hook: {exc.strerror or exc}: "
                            "check the hooks directory's permissions") from None
    return {"hook": str(hook), "action": action,
            "local": str(local) if os.path.lexists(local) else None,
            "python": record_python(root)}


def install_quiet(root: Path, warn: Callable[[str], None]) -> list[str]:
    """For `init`: what was set up; a hook that cannot be installed is a warning, not a failed init."""
    try:
        action = str(install_hook(root)["action"])
    except FlowError as exc:
        warn(f"pre-commit hook not installed: {exc.message}")
        return []
    return [DONE[action]] if action in DONE else []


GITATTRIBUTES = ".flow/**/*.jsonl merge=flowgit-jsonl"


def driver_command() -> str:
    """How git should call our merge driver: the console script if on PATH, else this Python."""
    exe = shutil.which("flowgit")
    prefix = shlex.quote(exe) if exe else f"{shlex.quote(sys.executable)} -m flowgit"
    return f"{prefix} merge-driver %O %A %B"


def setup_local(root: Path, warn: Callable[[str], None]) -> list[str]:
    """Per-clone settings that git does not carry: the merge driver and the hooks."""
    done = []
    if git.config_get(root, "merge.flowgit-jsonl.driver") is None:
        git.config_set(root, "merge.flowgit-jsonl.name", "flowgit event-log union")
        git.config_set(root, "merge.flowgit-jsonl.driver", driver_command())
        done.append("merge driver")
    done.extend(install_quiet(root, warn))
    return done
