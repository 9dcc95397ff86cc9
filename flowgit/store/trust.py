"""What this clone trusts to run, recorded under the git common dir (`flowgit-trust.json`):
never committed, never pushed, never brought by a fetch, shared by the clone's worktrees.

Two kinds of record, as direnv's `allow` and mise's `trust` do for files that run code:
- a command from `.flow/` (core/commands.py): its digest covers file, key path and argv;
- a plan whose text becomes an agent's prompt: the digest of plan.yaml, spec.yaml and the
  ADRs it names, as they were when trusted.

Who is acting matters: what a person writes through flowgit here is trusted as written; what
an agent writes (through `flowgit mcp`, or from a process that `flowgit run` started, whose
environment says so) is not, and an agent can neither trust nor approve (docs/SECURITY.md).
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from flowgit import git
from flowgit.core.commands import Command
from flowgit.core.events import format_time
from flowgit.errors import FlowError
from flowgit.proc import AGENT_ENV  # set for every process flowgit starts: not a person

STORE = "flowgit-trust.json"
MAX_PLAN_VERSIONS = 64

_channel: str | None = None  # "mcp" while this process serves MCP
_session_commands: set[str] = set()  # --trust: digests trusted for this process only
_session_plans: set[tuple[str, str]] = set()


def set_channel(name: str | None) -> None:
    global _channel
    _channel = name


def channel() -> str:
    """How the current command reaches flowgit: `cli` (a person at a shell, as far as flowgit
    can tell), `mcp`, or `run` (a process that flowgit started: an executor, a validation)."""
    if _channel is not None:
        return _channel
    if os.environ.get(AGENT_ENV):
        return "run"
    return "cli"


def is_agent() -> bool:
    return channel() != "cli"


def identity(root: Path) -> dict[str, str]:
    """The git identity of whoever acts here (user.name / user.email), as far as git says."""
    out = {}
    for key in ("name", "email"):
        value = git.config_get(root, f"user.{key}")
        if value:
            out[key] = value
    return out


def trust_for_session(commands: Iterable[Command], plans: Iterable[tuple[str, str]]) -> None:
    """`--trust`: these commands and plan versions run in this process, nothing is recorded."""
    _session_commands.update(c.digest for c in commands)
    _session_plans.update(plans)


def clear_session() -> None:
    _session_commands.clear()
    _session_plans.clear()


class TrustStore:
    def __init__(self, common_dir: Path) -> None:
        self.path = common_dir / STORE
        self._data: dict[str, Any] | None = None
        self._stamp: tuple[int, int, int] | None = None

    # ----- reading ---------------------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        try:
            st = os.stat(self.path, follow_symlinks=False)
            stamp: tuple[int, int, int] | None = (st.st_size, st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if self._data is None or stamp != self._stamp:
            self._data = self._read() if stamp is not None else _empty()
            self._stamp = stamp
        return self._data

    def _read(self) -> dict[str, Any]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise FlowError(f"{self.path} is a symlink: remove it (flowgit never follows one)") from None
            return _empty()
        with os.fdopen(fd, "rb") as f:
            raw = f.read()
        try:
            data = json.loads(raw)
        except ValueError:
            raise FlowError(f"{self.path}: not valid JSON: remove it and trust again with "
                            "`flowgit trust`") from None
        if not isinstance(data, dict):
            return _empty()
        data.setdefault("commands", {})
        data.setdefault("plans", {})
        return data

    def trusted(self, cmd: Command) -> bool:
        return cmd.digest in _session_commands or cmd.digest in self.data()["commands"]

    def was_trusted(self, cmd: Command) -> bool:
        """Another command stood at this key when it was trusted: this one changed since."""
        return any(r.get("file") == cmd.file and r.get("key") == cmd.key
                   for r in self.data()["commands"].values())

    def plan_trusted(self, plan_id: str, digest: str) -> bool:
        return (plan_id, digest) in _session_plans or digest in self.data()["plans"].get(plan_id, {})

    def plan_was_trusted(self, plan_id: str) -> bool:
        return bool(self.data()["plans"].get(plan_id))

    def may_trust_plan(self, plan_id: str) -> bool:
        """Whether some version of the plan is trusted here (recorded, or for this run): when
        not, no digest of its text needs computing to know it is not trusted."""
        return self.plan_was_trusted(plan_id) or any(pid == plan_id for pid, _ in _session_plans)

    # ----- writing ---------------------------------------------------------------------------
    def record(self, commands: Iterable[Command], plans: Iterable[tuple[str, str]], how: str,
               by: Mapping[str, str]) -> tuple[list[Command], list[str]]:
        """Trust these commands and plan versions; returns those that were not trusted yet."""
        commands, plans = list(commands), list(plans)
        if not commands and not plans:
            return [], []
        with self._locked():
            self._data = None
            data = self.data()
            at = format_time(time.time())
            new_cmds = []
            for cmd in commands:
                if cmd.digest not in data["commands"]:
                    new_cmds.append(cmd)
                    data["commands"][cmd.digest] = {**cmd.as_json(), "at": at, "how": how, "by": dict(by)}
                    del data["commands"][cmd.digest]["hash"]
            new_plans = []
            for plan_id, digest in plans:
                versions = data["plans"].setdefault(plan_id, {})
                if digest not in versions:
                    new_plans.append(plan_id)
                    versions[digest] = {"at": at, "how": how, "by": dict(by)}
                    while len(versions) > MAX_PLAN_VERSIONS:  # the oldest go first
                        versions.pop(next(iter(versions)))
            if new_cmds or new_plans:
                from flowgit.store.files import write_atomic

                write_atomic(self.path, (json.dumps(data, indent=1, sort_keys=False) + "\n").encode())
                self._data = None
            return new_cmds, new_plans

    def _locked(self) -> _FileLock:
        return _FileLock(self.path.with_name(STORE + ".lock"))


def _empty() -> dict[str, Any]:
    return {"version": 1, "commands": {}, "plans": {}}


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> _FileLock:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            self.fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise FlowError(f"{self.path} is a symlink: remove it (flowgit never follows one)") from None
            raise
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# ----- the text of a plan that reaches an agent ---------------------------------------------------

_ADR = re.compile(r"^(ADR-\d+)")


def plan_material(flow: Path, plan_id: str, adrs: Iterable[str],
                  plan_bytes: bytes | None = None) -> tuple[str, list[str]]:
    """The digest of what a plan's prompts are built from (plan.yaml, spec.yaml and the ADR
    files it names), and those files, relative to the work tree. `plan_bytes`: the plan.yaml
    execution follows when it is not the work tree's (format 2, a recorded plan)."""
    root = flow.parent
    files = [flow / "plans" / plan_id / "plan.yaml", flow / "plans" / plan_id / "spec.yaml"]
    wanted = set(adrs)
    adr_dir = flow / "adrs"
    if wanted and adr_dir.is_dir() and not adr_dir.is_symlink():
        for path in sorted(adr_dir.glob("ADR-*.yaml")):
            m = _ADR.match(path.name)
            if m and m.group(1) in wanted and not path.is_symlink():
                files.append(path)
    h = hashlib.sha256()
    used = []
    for path in files:
        try:
            data = path.read_bytes() if not path.is_symlink() else None
        except OSError:
            data = None
        if plan_bytes is not None and path == files[0]:
            data = plan_bytes
        if data is None:
            continue
        rel = path.relative_to(root).as_posix()
        used.append(rel)
        h.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest(), used
