"""The `.flow/` tree at a revision (or in the work tree), parsed for comparison."""
from __future__ import annotations

import hashlib
import marshal
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from flowgit import git
from flowgit.core.events import PLAN_LOG, Event, parse_log
from flowgit.core.fold import TaskRecord, evaluate, fold_log
from flowgit.core.model import Plan
from flowgit.errors import InvalidFile
from flowgit.formats import yamlio
from flowgit.store.cache import DerivedCache

PLAN_FILE = re.compile(r"^\.flow/plans/([^/]+)/plan\.yaml\Z")
ADR_FILE = re.compile(r"^\.flow/adrs/(ADR-\d+)[^/]*\.yaml\Z")


BIG = 64 * 1024  # a file this large is parsed once per content and kept (a 50,000-task plan: 6 MB)
KEEP = 8  # parsed big files and plan states kept, the most recent


@dataclass
class Memo:
    """What two snapshots of one repository share: most files are the same in both, so each
    distinct blob is read, parsed and folded once. With `kept`, big files parsed and the
    states of plans without task logs are kept there by content, for the next command."""
    blobs: dict[str, bytes] = field(default_factory=dict)
    yaml: dict[bytes, Any] = field(default_factory=dict)
    folds: dict[tuple[str, bytes], TaskRecord] = field(default_factory=dict)
    kept: DerivedCache | None = None

    def _kept(self, key: str) -> Any:
        entry = self.kept.entry(key) if self.kept is not None else {}
        return entry.get("value")

    def _keep(self, key: str, value: Any) -> None:
        if self.kept is None:
            return
        try:
            marshal.dumps(value)
        except ValueError:  # a YAML type marshal cannot hold: parsed again next time
            return
        self.kept.entry(key)["value"] = value
        self.kept.changed(key)
        self.kept.save()
        found = sorted(self.kept.folder.glob(key.split("-")[0] + "-*.marshal"),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        for old in found[KEEP:]:
            old.unlink(missing_ok=True)

    def fold(self, stream: str, data: bytes) -> TaskRecord:
        key = (stream, data)
        record = self.folds.get(key)
        if record is None:
            record = self.folds[key] = fold_log(parse_log(data, stream))
        return record


@dataclass
class PlanSnap:
    raw: Mapping[str, Any] | None = None
    invalid: str | None = None  # why plan.yaml, which exists, could not be read
    spec: Mapping[str, Any] | None = None
    logs: dict[str, bytes] = field(default_factory=dict)
    memo: Memo = field(default_factory=Memo)
    plan_bytes: bytes | None = None

    def states(self, now: float) -> dict[str, str]:
        if self.raw is None:
            return {}
        # without task logs no state depends on the time: kept by the contents that decide it
        key = None
        if self.plan_bytes is not None and all(stream == PLAN_LOG for stream in self.logs):
            digest = hashlib.sha256(self.plan_bytes + b"\0" + self.logs.get(PLAN_LOG, b""))
            key = "states-" + digest.hexdigest()
            found = self.memo._kept(key)
            if isinstance(found, dict):
                return found
        out = self._states(now)
        if key is not None and out:
            self.memo._keep(key, out)
        return out

    def _states(self, now: float) -> dict[str, str]:
        assert self.raw is not None
        try:
            plan = Plan.from_dict(self.raw, "plan")
            records = {}
            plan_events: tuple[Event, ...] = ()
            held = None
            for stream, data in self.logs.items():
                if stream == PLAN_LOG:
                    plan_log = parse_log(data, stream)
                    plan_events, held = plan_log.events, plan_log.unreadable
                else:
                    records[stream] = self.memo.fold(stream, data)
            state = evaluate(plan, records, plan_events, now, held=held)
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
    broken: list[str] = field(default_factory=list)  # specs and ADRs that do not parse
    config: Mapping[str, Any] | None = None  # .flow/config.yaml as parsed (its commands are diffed)


def _safe_yaml(data: bytes, display: str, memo: Memo) -> Any:
    """The parsed document, or an InvalidFile (kept, not raised) saying why it does not parse."""
    if data in memo.yaml:
        return memo.yaml[data]
    key = "yaml-" + hashlib.sha256(data).hexdigest() if len(data) >= BIG else None
    found = memo._kept(key) if key else None
    if isinstance(found, dict):
        memo.yaml[data] = found
        return found
    try:
        value = yamlio.loads(yamlio.decode(data, display), display)
    except InvalidFile as exc:
        value = exc
    memo.yaml[data] = value
    if key and isinstance(value, dict):
        memo._keep(key, value)
    return value


def build(files: Mapping[str, bytes], label: str, only_plan: str | None = None,
          memo: Memo | None = None) -> Snapshot:
    memo = memo or Memo()
    snap = Snapshot(label)
    for path, data in files.items():
        parts = path.split("/")
        if len(parts) >= 4 and parts[0] == ".flow" and parts[1] == "plans":
            pid = parts[2]
            if only_plan and pid != only_plan:
                continue
            ps = snap.plans.setdefault(pid, PlanSnap(memo=memo))
            if parts[3] == "plan.yaml" and len(parts) == 4:
                ps.plan_bytes = data
                raw = _safe_yaml(data, f"{label}:{path}", memo)
                ps.raw = raw if isinstance(raw, dict) else None
                if isinstance(raw, InvalidFile):
                    ps.invalid = raw.message
                elif ps.raw is None:
                    ps.invalid = f"{label}:{path}: not a mapping of plan keys"
            elif parts[3] == "spec.yaml" and len(parts) == 4:
                spec = _safe_yaml(data, f"{label}:{path}", memo)
                ps.spec = spec if isinstance(spec, dict) else None
                if isinstance(spec, InvalidFile):
                    snap.broken.append(spec.message)
            elif parts[3] == "events" and len(parts) == 5 and parts[4].endswith(".jsonl"):
                ps.logs[parts[4][:-6]] = data
        elif path == ".flow/config.yaml":
            cfg = _safe_yaml(data, f"{label}:{path}", memo)
            snap.config = cfg if isinstance(cfg, dict) else None
        elif m := ADR_FILE.match(path):
            adr = _safe_yaml(data, f"{label}:{path}", memo)
            if isinstance(adr, dict):
                snap.adrs[m.group(1)] = adr
            elif isinstance(adr, InvalidFile):
                snap.broken.append(adr.message)
    snap.plans = {k: v for k, v in snap.plans.items() if v.raw is not None or v.invalid or v.logs}
    return snap


def at_rev(root: Path, rev: str, only_plan: str | None = None, memo: Memo | None = None,
           label: str | None = None) -> Snapshot:
    """The tree at `rev` (a full commit id, or HEAD: a revision a user typed is resolved with
    `git.resolve_commit` first), labelled with what the user typed."""
    memo = memo or Memo()
    ids = git.tree_blob_ids(root, rev, f".flow/plans/{only_plan}" if only_plan else ".flow")
    if only_plan:
        ids.update(git.tree_blob_ids(root, rev, ".flow/adrs"))
        ids.update(git.tree_blob_ids(root, rev, ".flow/config.yaml"))
    memo.blobs.update(git.cat_blobs(root, [sha for sha in ids.values() if sha not in memo.blobs]))
    return build({path: memo.blobs[sha] for path, sha in ids.items() if sha in memo.blobs},
                 label or rev, only_plan, memo)


def work_tree(root: Path, only_plan: str | None = None, memo: Memo | None = None) -> Snapshot:
    files: dict[str, bytes] = {}
    base = root / ".flow"
    for path in base.rglob("*") if base.is_dir() else []:
        rel = path.relative_to(root).as_posix()
        if "/.cache/" in rel or path.is_symlink() or not path.is_file():
            continue
        files[rel] = path.read_bytes()
    return build(files, "working tree", only_plan, memo)
