"""What tests read back: status through the CLI, event logs and transition commits. Tests that
look at stored state go through these, so a change of where state is stored changes them here."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from helpers.repo import Repo


def status(repo: Repo, plan: str) -> dict[str, Any]:
    """`flowgit status PLAN --json`."""
    result: dict[str, Any] = repo.ok("status", plan, "--json").json
    return result


def row(repo: Repo, plan: str, task: str) -> dict[str, Any]:
    return next(t for t in status(repo, plan)["tasks"] if t["id"] == task)


def state(repo: Repo, plan: str, task: str) -> str:
    return str(row(repo, plan, task)["state"])


def states(repo: Repo, plan: str) -> dict[str, str]:
    return {t["id"]: t["state"] for t in status(repo, plan)["tasks"]}


def phase(repo: Repo, plan: str) -> str:
    return str(status(repo, plan)["phase"])


def log_path(repo: Repo, plan: str, stream: str = "_plan") -> Path:
    """The event log of one stream: `_plan` or a task id."""
    return repo.path / ".flow" / "plans" / plan / "events" / f"{stream}.jsonl"


def state_branch(repo: Repo) -> bool:
    """Whether the repository keeps its logs on the state branch (format 2, ADR 0011)."""
    config = repo.path / ".flow" / "config.yaml"
    return config.exists() and "\nversion: 2" in "\n" + config.read_text()


def log_text(repo: Repo, plan: str, stream: str = "_plan") -> str:
    """One stream's log as stored: in the work tree (format 1) or on flow/state (format 2)."""
    if state_branch(repo):
        from flowgit.store.state import log_path as state_path

        proc = subprocess.run(["git", "show", f"flow/state:{state_path(plan, stream)}"], cwd=repo.path,
                              capture_output=True, text=True)
        return proc.stdout if proc.returncode == 0 else ""
    path = log_path(repo, plan, stream)
    return path.read_text() if path.exists() else ""


def events(repo: Repo, plan: str, stream: str = "_plan") -> list[dict[str, Any]]:
    """The events of one stream as stored (none when the log does not exist)."""
    return [json.loads(line) for line in log_text(repo, plan, stream).splitlines() if line.strip()]


def of_type(repo: Repo, plan: str, type_: str, stream: str = "_plan") -> list[dict[str, Any]]:
    return [e for e in events(repo, plan, stream) if e["type"] == type_]


def transitions(repo: Repo) -> str:
    """Where transition commits are: HEAD (format 1) or the state branch (format 2)."""
    return "flow/state" if state_branch(repo) else "HEAD"


def trailers(repo: Repo, rev: str = "HEAD") -> dict[str, str]:
    """The trailers of a transition commit (Flow-Plan, Flow-Task, Flow-Event, Flow-Actor)."""
    if rev == "HEAD":
        rev = transitions(repo)
    out = repo.git("log", "-1", "--format=%(trailers:only,unfold)", rev)
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def subjects(repo: Repo, *revs: str) -> list[str]:
    """Commit subjects, newest first; by default of the transition commits (HEAD in format 1,
    the state branch in format 2)."""
    return repo.git("log", "--format=%s", *(revs or (transitions(repo),))).splitlines()
