"""Check a set of `.flow/` files: schemas, then the rules between them. Errors are lines
naming the file, the line or the task, and what to do."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from flowgit.core.model import Config, Plan, case_twin_message
from flowgit.errors import InvalidFile
from flowgit.formats import yamlio
from flowgit.ids import case_twins, is_valid_id
from flowgit.core.storage import MAX_LOG_BYTES  # one limit for log files and state logs

PLAN_RE = re.compile(r"^\.flow/plans/([^/]+)/plan\.yaml\Z")
SPEC_RE = re.compile(r"^\.flow/plans/([^/]+)/spec\.yaml\Z")
LOG_RE = re.compile(r"^\.flow/plans/([^/]+)/events/([^/]+)\.jsonl\Z")
ADR_RE = re.compile(r"^\.flow/adrs/(ADR-\d+)[^/]*\.yaml\Z")
CONFLICT = re.compile(rb"^(<<<<<<<|>>>>>>>)( |$)", re.M)


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    files: int = 0
    warnings: list[str] = field(default_factory=list)  # what does not fail the check
    plans: dict[str, Plan] = field(default_factory=dict)
    plans_ok: list[str] = field(default_factory=list)  # plan files that passed their own checks


def _load_yaml(rel: str, data: bytes, kind: str, report: Report) -> Any:
    from flowgit.formats.schemacheck import schema_errors

    if CONFLICT.search(data):
        line = data[: CONFLICT.search(data).start()].count(b"\n") + 1  # type: ignore[union-attr]
        report.errors.append(f"{rel}:{line}: unresolved merge conflict markers: resolve the conflict, then stage the file")
        return None
    try:
        text = yamlio.decode(data, rel)
        obj = yamlio.loads(text, rel)
    except InvalidFile as exc:
        report.errors.append(exc.message)
        return None
    errors = schema_errors(kind, obj, text, rel)
    report.errors.extend(errors)
    return None if errors else obj


def check_log(rel: str, data: bytes, plan_id: str, stream: str, report: Report) -> None:
    """Every line of one event log, by the checker every reader uses (`flowgit.core.events`)."""
    from flowgit.core.events import KNOWN_TYPES, check_event, load_line

    if len(data) > MAX_LOG_BYTES:
        report.errors.append(f"{rel}: {len(data)} bytes is above the {MAX_LOG_BYTES} byte limit: run `flowgit compact {plan_id}`")
        return
    if CONFLICT.search(data):
        line = data[: CONFLICT.search(data).start()].count(b"\n") + 1  # type: ignore[union-attr]
        report.errors.append(f"{rel}:{line}: unresolved merge conflict markers: run `flowgit init` in this clone "
                             "to register the merge driver, then `git checkout --theirs`/merge again")
        return
    if data and not data.endswith(b"\n"):
        line = data.count(b"\n") + 1
        report.errors.append(f"{rel}:{line}: torn last line (a write was cut off): run `flowgit doctor --fix`")
        data = data[: data.rfind(b"\n") + 1]
    seen: set[str] = set()
    want_task = None if stream == "_plan" else stream
    for lineno, raw in enumerate(data.split(b"\n")[:-1], start=1):
        if not raw.strip():
            report.errors.append(f"{rel}:{lineno}: empty line in an event log: remove it")
            continue
        try:
            obj = load_line(raw)
        except ValueError as exc:
            report.errors.append(f"{rel}:{lineno}: not a JSON event ({exc}): restore the line from git")
            continue
        errors = check_event(obj)
        if errors:
            report.errors.extend(f"{rel}:{lineno}: {e}" for e in errors)
            continue
        if obj["id"] in seen:
            report.errors.append(f"{rel}:{lineno}: duplicate event id {obj['id']}: run `flowgit doctor --fix`")
        seen.add(obj["id"])
        if obj["plan"] != plan_id or obj["task"] != want_task:
            report.errors.append(f"{rel}:{lineno}: event belongs to {obj['plan']}/{obj['task']}, "
                                 f"not to this log ({plan_id}/{want_task}): move it to its own log")
        if stream == "_plan" and str(obj["type"]).startswith("task."):
            report.errors.append(f"{rel}:{lineno}: task event {obj['type']} in the plan log")
        if obj["type"] not in KNOWN_TYPES:
            report.warnings.append(f"{rel}:{lineno}: unknown event type {obj['type']!r}: kept and "
                                   "ignored (written by a newer flowgit?)")


@dataclass
class _Parsed:
    """The `.flow/` files of one check, parsed and sorted by kind."""
    plans: dict[str, tuple[str, Any]] = field(default_factory=dict)  # plan id -> (path, YAML)
    specs: dict[str, tuple[str, Any]] = field(default_factory=dict)
    adrs: dict[str, tuple[str, Any]] = field(default_factory=dict)   # ADR id -> (path, YAML)


def validate_files(files: Mapping[str, bytes], lookup_plan: Callable[[str], Plan | None] | None = None,
                   adr_ids: list[str] | None = None, plan_dirs: Iterable[str] = (),
                   checked: Mapping[str, Plan] | None = None) -> Report:
    """Check `files` (repository-relative path -> content). `lookup_plan` finds plans that are
    not in `files` (for references); `adr_ids` lists ADRs not in `files`; `plan_dirs` names
    the plan directories there are (for ids that differ only by case); `checked` maps plan
    files to the plan their exact content was found to be when it passed the checks one file
    gets on its own (those files are not parsed again: the rules between files still run)."""
    report = Report()
    parsed = _Parsed()
    checked = checked or {}
    for rel in sorted(files):
        if rel in checked and (m := PLAN_RE.match(rel)):
            report.files += 1
            parsed.plans[m.group(1)] = (rel, checked[rel])
            continue
        _read_file(rel, files[rel], parsed, report)
    for plan_id, (rel, obj) in parsed.plans.items():
        if rel in checked:
            plan = checked[rel]
        else:
            try:
                plan = Plan.from_dict(obj, rel)
            except InvalidFile as exc:
                report.errors.append(exc.message)
                continue
        if plan.id != plan_id:
            report.errors.append(f"{rel}: id {plan.id!r} does not match its directory {plan_id!r}: make them equal")
        else:
            report.plans_ok.append(rel)
        report.plans[plan_id] = plan
    for twins in case_twins({*parsed.plans, *plan_dirs}):
        if any(t in parsed.plans for t in twins):
            rel = parsed.plans[next(t for t in twins if t in parsed.plans)][0]
            report.errors.append(f"{rel}: {case_twin_message(twins, 'plan ids')}")

    def find(pid: str) -> Plan | None:
        if pid in report.plans:
            return report.plans[pid]
        return lookup_plan(pid) if lookup_plan and is_valid_id(pid) else None

    all_adrs = set(parsed.adrs) | set(adr_ids or [])
    _check_plans(parsed, report, find, all_adrs)
    _check_adrs(parsed, report, find, all_adrs)
    _check_specs(parsed, report, find)
    return report


def _read_file(rel: str, data: bytes, parsed: _Parsed, report: Report) -> None:
    """Parse one file by its kind (found from its path) and check what it alone can show."""
    report.files += 1
    if rel == ".flow/config.yaml":
        obj = _load_yaml(rel, data, "config", report)
        if obj is not None:
            try:
                Config.from_dict(obj, rel)
            except InvalidFile as exc:
                report.errors.append(exc.message)
    elif m := PLAN_RE.match(rel):
        obj = _load_yaml(rel, data, "plan", report)
        if obj is not None:
            parsed.plans[m.group(1)] = (rel, obj)
    elif m := SPEC_RE.match(rel):
        obj = _load_yaml(rel, data, "spec", report)
        if obj is not None:
            parsed.specs[m.group(1)] = (rel, obj)
    elif m := LOG_RE.match(rel):
        plan_id, stream = m.groups()
        if not is_valid_id(plan_id) or (stream != "_plan" and not is_valid_id(stream)):
            report.errors.append(f"{rel}: invalid plan or task id in the path: rename it")
            return
        check_log(rel, data, plan_id, stream, report)
    elif m := ADR_RE.match(rel):
        obj = _load_yaml(rel, data, "adr", report)
        if obj is None:
            return
        adr_id = m.group(1)
        if obj.get("id") != adr_id:
            report.errors.append(f"{rel}: id {obj.get('id')!r} does not match the file name ({adr_id}): make them equal")
        if adr_id in parsed.adrs:
            report.errors.append(f"{rel}: {adr_id} is also {parsed.adrs[adr_id][0]}: give one "
                                 "of them the next free number")
        parsed.adrs[adr_id] = (rel, obj)
    else:
        report.files -= 1


def _check_plans(parsed: _Parsed, report: Report, find: Callable[[str], Plan | None],
                 all_adrs: set[str]) -> None:
    """Each plan's own rules, then the rules between plans (waits and parents without cycles)."""
    from flowgit.core import semantic

    for plan_id, plan in report.plans.items():
        rel = parsed.plans[plan_id][0]
        report.errors.extend(semantic.plan_errors(plan, rel, adr_ids=all_adrs, other_plan=find))
    cycle = semantic.cross_plan_cycle(semantic.with_referenced_plans(report.plans, find))
    if cycle:
        report.errors.append(f".flow/plans: plans wait on each other in a cycle {' -> '.join(cycle)}: remove one cross-plan dependency")
    parents = semantic.parent_cycle(report.plans, find)
    if parents:
        report.errors.append(f".flow/plans: plans are each other's parents {' -> '.join(parents)}: remove one `parent`")


def _check_adrs(parsed: _Parsed, report: Report, find: Callable[[str], Plan | None],
                all_adrs: set[str]) -> None:
    """References between ADRs exist and never form a supersedes cycle; their plans exist."""
    from flowgit.core.graph import find_cycle

    supersedes: dict[str, list[str]] = {}
    for adr_id, (rel, obj) in parsed.adrs.items():
        refs = [r for r in obj.get("supersedes") or [] if isinstance(r, str)]
        later = obj.get("superseded_by")
        for ref in refs + ([later] if isinstance(later, str) else []):
            if ref == adr_id:
                report.errors.append(f"{rel}: {adr_id} names itself in supersedes/superseded_by: remove it")
            elif ref not in all_adrs:
                report.errors.append(f"{rel}: names {ref!r} in supersedes/superseded_by, which does not exist")
        for pid in obj.get("plans") or []:
            if isinstance(pid, str) and find(pid) is None:
                report.errors.append(f"{rel}: plans lists {pid!r}, which is not a plan: fix the id")
        supersedes[adr_id] = [r for r in refs if r != adr_id and r in parsed.adrs]
    cycle = find_cycle(supersedes)
    if cycle:
        report.errors.append(f".flow/adrs: ADRs supersede each other in a cycle {' -> '.join(cycle)}: "
                             "remove one `supersedes`")


def _check_specs(parsed: _Parsed, report: Report, find: Callable[[str], Plan | None]) -> None:
    """A spec belongs to an existing plan, has unique ids, and names only that plan's tasks."""
    for plan_id, (rel, obj) in parsed.specs.items():
        if obj.get("plan") not in (None, plan_id):
            report.errors.append(f"{rel}: plan {obj.get('plan')!r} does not match its directory "
                                 f"{plan_id!r}: make them equal")
        spec_plan = find(plan_id)
        if spec_plan is None:
            report.errors.append(f"{rel}: there is no plan {plan_id} (.flow/plans/{plan_id}/plan.yaml) "
                                 "for this spec: create the plan or remove the spec")
            continue
        known = {t.id for t in spec_plan.tasks}
        for what, key in (("requirement", "requirements"), ("question", "questions")):
            ids = [r.get("id") for r in obj.get(key) or [] if isinstance(r, dict)]
            for dup in sorted({i for i in ids if ids.count(i) > 1 and isinstance(i, str)}):
                report.errors.append(f"{rel}: duplicate {what} id {dup!r}")
        for req in obj.get("requirements") or []:
            for ref in req.get("tasks") or []:
                if ref not in known:
                    report.errors.append(f"{rel}: requirement {req.get('id')} refers to task {ref!r}, not in plan {plan_id}")
