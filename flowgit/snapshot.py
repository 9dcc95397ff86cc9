"""The `.flow/` tree at a revision (or in the work tree), parsed for comparison."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from flowgit import git, yamlio
from flowgit.errors import InvalidFile
from flowgit.events import PLAN_LOG, Event, parse_log
from flowgit.model import Plan
from flowgit.state import evaluate, reduce_task

PLAN_FILE = re.compile(r"^\.flow/plans/([^/]+)/plan\.yaml$")
ADR_FILE = re.compile(r"^\.flow/adrs/(ADR-\d+)[^/]*\.yaml$")


@dataclass
class PlanSnap:
    raw: Mapping[str, Any] | None = None
    spec: Mapping[str, Any] | None = None
    logs: dict[str, bytes] = field(default_factory=dict)

    def states(self, now: float) -> dict[str, str]:
        if self.raw is None:
            return {}
        try:
            plan = Plan.from_dict(self.raw, "plan")
            records = {}
            plan_events: tuple[Event, ...] = ()
            for stream, data in self.logs.items():
                read = parse_log(data, stream)
                if stream == PLAN_LOG:
                    plan_events = read.events
                else:
                    records[stream] = reduce_task(read.events)
            state = evaluate(plan, records, plan_events, now)
        except (InvalidFile, ValueError):
            return {}
        out = {k: v.state for k, v in state.tasks.items()}
        out.update({k: v.state for k, v in state.checkpoints.items()})
        return out


@dataclass
class Snapshot:
    label: str
    plans: dict[str, PlanSnap] = field(default_factory=dict)
    adrs: dict[str, Mapping[str, Any]] = field(default_factory=dict)


def _safe_yaml(data: bytes, display: str) -> Any:
    try:
        return yamlio.loads(yamlio.decode(data, display), display)
    except InvalidFile:
        return None


def build(files: Mapping[str, bytes], label: str, only_plan: str | None = None) -> Snapshot:
    snap = Snapshot(label)
    for path, data in files.items():
        parts = path.split("/")
        if len(parts) >= 4 and parts[0] == ".flow" and parts[1] == "plans":
            pid = parts[2]
            if only_plan and pid != only_plan:
                continue
            ps = snap.plans.setdefault(pid, PlanSnap())
            if parts[3] == "plan.yaml" and len(parts) == 4:
                raw = _safe_yaml(data, f"{label}:{path}")
                ps.raw = raw if isinstance(raw, dict) else None
            elif parts[3] == "spec.yaml" and len(parts) == 4:
                spec = _safe_yaml(data, f"{label}:{path}")
                ps.spec = spec if isinstance(spec, dict) else None
            elif parts[3] == "events" and len(parts) == 5 and parts[4].endswith(".jsonl"):
                ps.logs[parts[4][:-6]] = data
        elif m := ADR_FILE.match(path):
            adr = _safe_yaml(data, f"{label}:{path}")
            if isinstance(adr, dict):
                snap.adrs[m.group(1)] = adr
    snap.plans = {k: v for k, v in snap.plans.items() if v.raw is not None or v.logs}
    return snap


def at_rev(root: Path, rev: str, only_plan: str | None = None) -> Snapshot:
    prefix = f".flow/plans/{only_plan}" if only_plan else ".flow"
    files = git.read_tree(root, rev, prefix)
    if only_plan:
        files.update(git.read_tree(root, rev, ".flow/adrs"))
    return build(files, rev, only_plan)


def work_tree(root: Path, only_plan: str | None = None) -> Snapshot:
    files: dict[str, bytes] = {}
    base = root / ".flow"
    for path in base.rglob("*") if base.is_dir() else []:
        rel = path.relative_to(root).as_posix()
        if "/.cache/" in rel or path.is_symlink() or not path.is_file():
            continue
        files[rel] = path.read_bytes()
    return build(files, "working tree", only_plan)


def now() -> float:
    return time.time()
