"""Semantic diff of plans, specs, task states and ADRs, and its text/Markdown renderings.

Pure functions: the caller loads the two sides (plan.yaml, spec.yaml, derived task states,
ADRs) and passes plain mappings. Results are JSON-serialisable and deterministic.

``diff_plan`` result for one plan (see ``docs``/``flowgit diff --format json``)::

    {"plan": id, "status": "added"|"removed"|"modified"|"unchanged", "changed": bool,
     "fields_changed": [...], "field_changes": {field: {"old", "new"}},
     "tasks_added": [{"id", "title"}], "tasks_removed": [...],
     "tasks_modified": [{"id", "title", "fields": [...], "changes": {f: {"old", "new"}}}],
     "checkpoints_added" / "_removed" / "_modified", "milestones_added" / ...,
     "scope": {"included": {"added": [...], "removed": [...]}, ...},
     "risks_added": [issue], "risks_removed": [issue], "risks_modified": [...],
     "requirements_added" / "_removed" / "_modified" ({"id", "text", ...}),
     "questions_added" / "_removed" / "_modified" ({"id", "question", ...}),
     "state_changes": [{"task", "old", "new"}],
     "summary": {"added", "removed", "modified", "state_changes"},
     "graph": {"nodes": [{"id", "title", "deps", "kind", "change"}]}}

``summary`` counts graph nodes (tasks and checkpoints).
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

__all__ = [
    "diff_adrs",
    "diff_plan",
    "render_markdown",
    "render_text",
]

ADDED = "added"
REMOVED = "removed"
MODIFIED = "modified"
UNCHANGED = "unchanged"


# ---------------------------------------------------------------------------------------------
# value helpers


def _plain(value: Any) -> Any:
    """A JSON-serialisable copy of a YAML-loaded value (ruamel types, dates, sets...)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, bool):
        return bool(value)
    if type(value).__name__ == "ScalarBoolean":  # ruamel round-trip booleans subclass int
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=_canon)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (_dt.date, _dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, Iterable):
        return [_plain(v) for v in value]
    return str(value)


def _canon(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, ensure_ascii=False)


def _is_list(value: Any) -> TypeGuard[Sequence[Any]]:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


def _sorted_any(values: Sequence[Any]) -> list[Any]:
    if all(type(v) is str for v in values):
        return sorted(values)
    return sorted(values, key=_canon)


_DIGITS = re.compile(r"(\d+)")


def _natural_key(text: str) -> tuple[Any, ...]:
    parts = _DIGITS.split(text)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(_plain(value))


@dataclass(frozen=True)
class _Kind:
    """How the items of one keyed collection are compared."""

    key: str = "id"
    label: str = "title"
    lists: frozenset[str] = frozenset()
    unordered: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def norm(self, name: str, value: Any) -> Any:
        if value is None:
            if name in self.defaults:
                return self.defaults[name]
            if name in self.lists:
                return []
        return value

    def comparable(self, name: str, value: Any) -> Any:
        value = self.norm(name, value)
        if name in self.unordered and _is_list(value):
            return _sorted_any(value)
        return value


TASK = _Kind(
    lists=frozenset({"depends_on", "files", "acceptance", "tags", "adrs"}),
    unordered=frozenset({"depends_on", "files", "tags", "adrs"}),
    defaults={"priority": "medium"},
)
CHECKPOINT = _Kind(lists=frozenset({"after", "validations"}), unordered=frozenset({"after"}))
MILESTONE = _Kind(lists=frozenset({"tasks"}), unordered=frozenset({"tasks"}))
REQUIREMENT = _Kind(label="text", lists=frozenset({"tasks"}), unordered=frozenset({"tasks"}))
QUESTION = _Kind(label="question", lists=frozenset({"options"}))
RISK = _Kind(key="issue", label="issue")
ADR = _Kind(
    lists=frozenset({"plans", "options", "consequences", "supersedes"}),
    unordered=frozenset({"plans", "supersedes"}),
)
PLAN = _Kind(
    lists=frozenset({"tags", "adrs", "milestones", "risks"}),
    unordered=frozenset({"tags", "adrs"}),
)


def _index(items: Any, key: str = "id") -> dict[str, Mapping[str, Any]]:
    """Items by key, in file order; entries without the key are ignored, first one wins."""
    out: dict[str, Mapping[str, Any]] = {}
    if not _is_list(items):
        return out
    for item in items:
        if isinstance(item, Mapping):
            ident = item.get(key)
            if ident is None:
                continue
            ident = _text(ident)
            if ident not in out:
                out[ident] = item
    return out


def _compare_fields(
    old: Mapping[str, Any], new: Mapping[str, Any], kind: _Kind, skip: Iterable[str] = ()
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    skipped = set(skip)
    skipped.add(kind.key)
    fields: list[str] = []
    changes: dict[str, dict[str, Any]] = {}
    for name in sorted(set(old) | set(new)):
        name = str(name)
        if name in skipped:
            continue
        ov, nv = old.get(name), new.get(name)
        if ov is nv or kind.comparable(name, ov) == kind.comparable(name, nv):
            continue
        fields.append(name)
        changes[name] = {"old": _plain(kind.norm(name, ov)), "new": _plain(kind.norm(name, nv))}
    return fields, changes


def _diff_keyed(
    old_idx: Mapping[str, Mapping[str, Any]],
    new_idx: Mapping[str, Mapping[str, Any]],
    kind: _Kind,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    added: list[dict[str, Any]] = []
    modified: list[dict[str, Any]] = []
    for ident, item in new_idx.items():
        before = old_idx.get(ident)
        if before is None:
            added.append({kind.key: ident, kind.label: _text(item.get(kind.label))})
            continue
        if before == item:
            continue
        fields, changes = _compare_fields(before, item, kind)
        if fields:
            entry: dict[str, Any] = {kind.key: ident}
            if kind.label != kind.key:
                entry[kind.label] = _text(item.get(kind.label))
            entry["fields"] = fields
            entry["changes"] = changes
            modified.append(entry)
    removed = [
        {kind.key: ident, kind.label: _text(item.get(kind.label))}
        for ident, item in old_idx.items()
        if ident not in new_idx
    ]
    return added, removed, modified


def _multiset_delta(old: Sequence[Any], new: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Items only in new, items only in old (counting duplicates, ignoring order)."""
    old_count = Counter(_canon(v) for v in old)
    new_count = Counter(_canon(v) for v in new)
    added: list[Any] = []
    removed: list[Any] = []
    seen_new: Counter[str] = Counter()
    for v in new:
        c = _canon(v)
        seen_new[c] += 1
        if seen_new[c] > old_count.get(c, 0):
            added.append(_plain(v))
    seen_old: Counter[str] = Counter()
    for v in old:
        c = _canon(v)
        seen_old[c] += 1
        if seen_old[c] > new_count.get(c, 0):
            removed.append(_plain(v))
    return added, removed


def _diff_scope(old: Any, new: Any) -> dict[str, Any]:
    o = old if isinstance(old, Mapping) else {}
    n = new if isinstance(new, Mapping) else {}
    out: dict[str, Any] = {}
    for key in sorted(str(k) for k in set(o) | set(n)):
        ov, nv = o.get(key), n.get(key)
        if (ov is None or _is_list(ov)) and (nv is None or _is_list(nv)):
            added, removed = _multiset_delta(ov or [], nv or [])
            if added or removed:
                out[key] = {"added": added, "removed": removed}
        elif ov != nv:
            out[key] = {"old": _plain(ov), "new": _plain(nv)}
    return out


# ---------------------------------------------------------------------------------------------
# diff_plan


def _graph_nodes(
    idx: Mapping[str, Mapping[str, Any]], dep_key: str, kind: str, change_of: Mapping[str, str],
    default: str,
) -> list[dict[str, Any]]:
    nodes = []
    for ident, item in idx.items():
        deps = item.get(dep_key)
        nodes.append(
            {
                "id": ident,
                "title": _text(item.get("title")),
                "deps": [_text(d) for d in deps] if _is_list(deps) else [],
                "kind": kind,
                "change": change_of.get(ident, default),
            }
        )
    return nodes


def diff_plan(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    *,
    old_states: Mapping[str, str] | None = None,
    new_states: Mapping[str, str] | None = None,
    old_spec: Mapping[str, Any] | None = None,
    new_spec: Mapping[str, Any] | None = None,
    plan_id: str | None = None,
) -> dict[str, Any]:
    """Compare two versions of one plan (``None``: the plan does not exist on that side)."""
    o: Mapping[str, Any] = old if old is not None else {}
    n: Mapping[str, Any] = new if new is not None else {}
    ident = plan_id
    if ident is None:
        candidates = (n.get("id"), o.get("id"), (new_spec or {}).get("plan"),
                      (old_spec or {}).get("plan"))
        ident = next((_text(c) for c in candidates if c is not None), None)

    # tasks and checkpoints
    old_tasks, new_tasks = _index(o.get("tasks")), _index(n.get("tasks"))
    tasks_added, tasks_removed, tasks_modified = _diff_keyed(old_tasks, new_tasks, TASK)
    old_cps, new_cps = _index(o.get("checkpoints")), _index(n.get("checkpoints"))
    cps_added, cps_removed, cps_modified = _diff_keyed(old_cps, new_cps, CHECKPOINT)

    # top-level fields
    scope = _diff_scope(o.get("scope"), n.get("scope"))
    ms_added, ms_removed, ms_modified = _diff_keyed(
        _index(o.get("milestones")), _index(n.get("milestones")), MILESTONE
    )
    r_added, r_removed, r_modified = _diff_keyed(
        _index(o.get("risks"), "issue"), _index(n.get("risks"), "issue"), RISK
    )
    keyed_changed = {
        "scope": bool(scope),
        "milestones": bool(ms_added or ms_removed or ms_modified),
        "risks": bool(r_added or r_removed or r_modified),
    }
    plain_fields, field_changes = _compare_fields(
        o, n, PLAN, skip=("tasks", "checkpoints", *keyed_changed)
    )
    fields_changed = sorted(set(plain_fields) | {k for k, v in keyed_changed.items() if v})

    # spec
    os_: Mapping[str, Any] = old_spec if old_spec is not None else {}
    ns_: Mapping[str, Any] = new_spec if new_spec is not None else {}
    req_added, req_removed, req_modified = _diff_keyed(
        _index(os_.get("requirements")), _index(ns_.get("requirements")), REQUIREMENT
    )
    q_added, q_removed, q_modified = _diff_keyed(
        _index(os_.get("questions")), _index(ns_.get("questions")), QUESTION
    )

    # states
    ostates: Mapping[str, str] = old_states or {}
    nstates: Mapping[str, str] = new_states or {}
    order: dict[str, None] = dict.fromkeys(new_tasks)
    order.update(dict.fromkeys(old_tasks))
    extra = (set(ostates) | set(nstates)) - set(order)
    order.update(dict.fromkeys(sorted(extra, key=_natural_key)))
    state_changes = []
    for tid in order:
        before, after = ostates.get(tid), nstates.get(tid)
        if before != after:
            state_changes.append({"task": tid, "old": before, "new": after})

    # graph: the new graph plus what was removed
    change_of: dict[str, str] = {}
    for entries, change in (
        (tasks_added, ADDED), (cps_added, ADDED), (tasks_modified, MODIFIED),
        (cps_modified, MODIFIED),
    ):
        for entry in entries:
            change_of.setdefault(entry["id"], change)
    nodes = _graph_nodes(new_tasks, "depends_on", "task", change_of, UNCHANGED)
    nodes += _graph_nodes(new_cps, "after", "checkpoint", change_of, UNCHANGED)
    gone_tasks = {k: v for k, v in old_tasks.items() if k not in new_tasks}
    gone_cps = {k: v for k, v in old_cps.items() if k not in new_cps}
    nodes += _graph_nodes(gone_tasks, "depends_on", "task", {}, REMOVED)
    nodes += _graph_nodes(gone_cps, "after", "checkpoint", {}, REMOVED)

    definition_changed = bool(
        fields_changed or tasks_added or tasks_removed or tasks_modified or cps_added
        or cps_removed or cps_modified or req_added or req_removed or req_modified
        or q_added or q_removed or q_modified
    )
    if old is None and new is None:
        status = UNCHANGED if not definition_changed else MODIFIED
    elif old is None:
        status = ADDED
    elif new is None:
        status = REMOVED
    else:
        status = MODIFIED if definition_changed else UNCHANGED

    return {
        "plan": ident,
        "status": status,
        "changed": status != UNCHANGED or bool(state_changes),
        "fields_changed": fields_changed,
        "field_changes": field_changes,
        "tasks_added": tasks_added,
        "tasks_removed": tasks_removed,
        "tasks_modified": tasks_modified,
        "checkpoints_added": cps_added,
        "checkpoints_removed": cps_removed,
        "checkpoints_modified": cps_modified,
        "milestones_added": ms_added,
        "milestones_removed": ms_removed,
        "milestones_modified": ms_modified,
        "scope": scope,
        "risks_added": [r["issue"] for r in r_added],
        "risks_removed": [r["issue"] for r in r_removed],
        "risks_modified": r_modified,
        "requirements_added": req_added,
        "requirements_removed": req_removed,
        "requirements_modified": req_modified,
        "questions_added": q_added,
        "questions_removed": q_removed,
        "questions_modified": q_modified,
        "state_changes": state_changes,
        "summary": {
            "added": len(tasks_added) + len(cps_added),
            "removed": len(tasks_removed) + len(cps_removed),
            "modified": len(tasks_modified) + len(cps_modified),
            "state_changes": len(state_changes),
        },
        "graph": {"nodes": nodes},
    }


# ---------------------------------------------------------------------------------------------
# diff_adrs


def diff_adrs(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """ADR changes by id: ``added``/``removed`` ({"id", "title", "status"}) and ``changed``
    ({"id", "title", "fields", "changes"}), each sorted by id."""
    added: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for ident in sorted((str(k) for k in set(old) | set(new)), key=_natural_key):
        before, after = old.get(ident), new.get(ident)
        if before is None and after is not None:
            added.append(
                {"id": ident, "title": _text(after.get("title")),
                 "status": _plain(after.get("status"))}
            )
        elif after is None and before is not None:
            removed.append(
                {"id": ident, "title": _text(before.get("title")),
                 "status": _plain(before.get("status"))}
            )
        elif before is not None and after is not None and before != after:
            fields, changes = _compare_fields(before, after, ADR)
            if fields:
                changed.append(
                    {"id": ident, "title": _text(after.get("title")), "fields": fields,
                     "changes": changes}
                )
    return {
        "added": added,
        "removed": removed,
        "changed": changed,
        "summary": {"added": len(added), "removed": len(removed), "changed": len(changed)},
    }


# ---------------------------------------------------------------------------------------------
# rendering helpers

_REPORT_EMPTY: dict[str, Any] = {}


def _unpack(
    result: Any,
) -> tuple[list[Mapping[str, Any]], Mapping[str, Any] | None, Mapping[str, Any]]:
    """(plan results, adr result, graphs) from a plan result, a list, or {"plans": ...}."""
    if isinstance(result, Mapping):
        if "plans" in result or "adrs" in result:
            plans = [p for p in (result.get("plans") or []) if isinstance(p, Mapping)]
            adrs = result.get("adrs")
            graphs = result.get("graphs")
            return (
                plans,
                adrs if isinstance(adrs, Mapping) else None,
                graphs if isinstance(graphs, Mapping) else _REPORT_EMPTY,
            )
        return [result], None, _REPORT_EMPTY
    if _is_list(result):
        return [p for p in result if isinstance(p, Mapping)], None, _REPORT_EMPTY
    raise TypeError("expected a diff_plan result, a list of them, or {'plans': [...]}")


def _list(result: Mapping[str, Any], key: str) -> list[Any]:
    value = result.get(key)
    return list(value) if _is_list(value) else []


def _short(value: Any, limit: int = 60) -> str | None:
    """A one-line rendering of a scalar, or None when it is not short."""
    if value is None:
        return "none"
    if isinstance(value, (str, int, float, bool)):
        text = " ".join(str(value).split())
        return text if len(text) <= limit else None
    return None


def _list_delta(change: Mapping[str, Any]) -> tuple[list[Any], list[Any]] | None:
    old, new = change.get("old"), change.get("new")
    if (old is None or _is_list(old)) and (new is None or _is_list(new)):
        return _multiset_delta(old or [], new or [])
    return None


def _state(value: Any) -> str:
    return "none" if value is None else str(value)


def _adrs_changed(adrs: Mapping[str, Any] | None) -> bool:
    return bool(
        adrs and (_list(adrs, "added") or _list(adrs, "removed") or _list(adrs, "changed"))
    )


# ---------------------------------------------------------------------------------------------
# render_text


def _text_field_detail(name: str, change: Mapping[str, Any]) -> str:
    delta = _list_delta(change)
    if delta is not None:
        added, removed = delta
        bits = [f"+{_short(v, 40) or '…'}" for v in added] + [
            f"-{_short(v, 40) or '…'}" for v in removed
        ]
        return f"{name}: {' '.join(bits)}" if bits else name
    old, new = _short(change.get("old"), 40), _short(change.get("new"), 40)
    if old is not None and new is not None:
        return f"{name}: {old} -> {new}"
    return name


def _render_plan_text(r: Mapping[str, Any]) -> list[str]:
    summary = r.get("summary") if isinstance(r.get("summary"), Mapping) else {}
    assert isinstance(summary, Mapping)
    head = f"plan {r.get('plan')}: {r.get('status')}"
    counts = [
        f"+{summary.get('added', 0)}", f"-{summary.get('removed', 0)}",
        f"~{summary.get('modified', 0)}",
    ]
    if r.get("status") != UNCHANGED or summary.get("state_changes"):
        head += f" ({' '.join(counts)}, {summary.get('state_changes', 0)} state changes)"
    lines = [head]
    field_changes = r.get("field_changes") if isinstance(r.get("field_changes"), Mapping) else {}
    assert isinstance(field_changes, Mapping)
    fields = _list(r, "fields_changed")
    if fields and r.get("status") == MODIFIED:
        lines.append("  fields: " + ", ".join(str(f) for f in fields))
        for name in fields:
            change = field_changes.get(name)
            if isinstance(change, Mapping):
                detail = _text_field_detail(str(name), change)
                if detail != name:
                    lines.append(f"    {detail}")
    for prefix, noun in (("tasks", ""), ("checkpoints", "checkpoint "),
                         ("milestones", "milestone ")):
        for t in _list(r, f"{prefix}_added"):
            lines.append(f"  + {noun}{t.get('id')} {t.get('title', '')}".rstrip())
        for t in _list(r, f"{prefix}_removed"):
            lines.append(f"  - {noun}{t.get('id')} {t.get('title', '')}".rstrip())
        for t in _list(r, f"{prefix}_modified"):
            fl = ", ".join(str(f) for f in t.get("fields", []))
            title = f" {t.get('title')}" if t.get("title") else ""
            lines.append(f"  ~ {noun}{t.get('id')}{title} ({fl})")
    scope = r.get("scope") if isinstance(r.get("scope"), Mapping) else {}
    assert isinstance(scope, Mapping)
    for key, change in scope.items():
        if not isinstance(change, Mapping):
            continue
        if "added" in change or "removed" in change:
            bits = [f"+ {v}" for v in change.get("added", [])]
            bits += [f"- {v}" for v in change.get("removed", [])]
            lines.append(f"  scope.{key}: " + "; ".join(bits))
        else:
            lines.append(f"  scope.{key}: {change.get('old')} -> {change.get('new')}")
    for issue in _list(r, "risks_added"):
        lines.append(f"  + risk: {issue}")
    for issue in _list(r, "risks_removed"):
        lines.append(f"  - risk: {issue}")
    for risk in _list(r, "risks_modified"):
        lines.append(f"  ~ risk: {risk.get('issue')} ({', '.join(risk.get('fields', []))})")
    for kind, label in (("requirements", "text"), ("questions", "question")):
        noun = kind[:-1]
        for q in _list(r, f"{kind}_added"):
            lines.append(f"  + {noun} {q.get('id')} {q.get(label, '')}".rstrip())
        for q in _list(r, f"{kind}_removed"):
            lines.append(f"  - {noun} {q.get('id')} {q.get(label, '')}".rstrip())
        for q in _list(r, f"{kind}_modified"):
            lines.append(f"  ~ {noun} {q.get('id')} ({', '.join(q.get('fields', []))})")
    for sc in _list(r, "state_changes"):
        lines.append(f"  {sc.get('task')}: {_state(sc.get('old'))} -> {_state(sc.get('new'))}")
    return lines


def render_text(result: Mapping[str, Any]) -> str:
    """A compact terminal summary of a diff_plan result (or of {"plans": [...], "adrs": ...})."""
    plans, adrs, _ = _unpack(result)
    lines: list[str] = []
    for r in plans:
        lines.extend(_render_plan_text(r))
    if _adrs_changed(adrs):
        assert adrs is not None
        for a in _list(adrs, "added"):
            lines.append(f"+ adr {a.get('id')} {a.get('title', '')}".rstrip())
        for a in _list(adrs, "removed"):
            lines.append(f"- adr {a.get('id')} {a.get('title', '')}".rstrip())
        for a in _list(adrs, "changed"):
            lines.append(f"~ adr {a.get('id')} {a.get('title', '')} "
                         f"({', '.join(a.get('fields', []))})")
    if not lines:
        lines.append("no plan changes")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# render_markdown

DETAILS_THRESHOLD = 10
GRAPH_FULL_LIMIT = 150
GRAPH_HARD_LIMIT = 300

_MD_ESCAPE = re.compile(r"([\\`*_\[\]|~])")


def _md(value: Any) -> str:
    text = " ".join(_text(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_ESCAPE.sub(r"\\\1", text)


def _code(value: Any) -> str:
    text = " ".join(_text(value).split()).replace("`", "'")
    return f"`{text}`"


def _md_field_detail(name: str, change: Mapping[str, Any]) -> str:
    delta = _list_delta(change)
    if delta is not None:
        added, removed = delta
        bits = [f"+{_md(_short(v, 40) or '…')}" for v in added]
        bits += [f"−{_md(_short(v, 40) or '…')}" for v in removed]
        return f"{_code(name)} ({', '.join(bits)})" if bits else _code(name)
    old, new = _short(change.get("old"), 40), _short(change.get("new"), 40)
    if old is not None and new is not None:
        return f"{_code(name)} ({_md(old)} → {_md(new)})"
    return _code(name)


def _md_block(out: list[str], title: str, items: list[str]) -> None:
    if not items:
        return
    if len(items) > DETAILS_THRESHOLD:
        out.append(f"<details><summary>{title} ({len(items)})</summary>")
        out.append("")
        out.extend(items)
        out.append("")
        out.append("</details>")
    else:
        out.append(f"**{title} ({len(items)})**")
        out.append("")
        out.extend(items)
    out.append("")


def _md_entry(entry: Mapping[str, Any], label: str = "title") -> str:
    text = _md(entry.get(label, ""))
    return f"- {_code(entry.get('id'))} {text}".rstrip()


def _md_modified(entry: Mapping[str, Any], label: str = "title") -> str:
    changes = entry.get("changes") if isinstance(entry.get("changes"), Mapping) else {}
    assert isinstance(changes, Mapping)
    details = []
    for name in entry.get("fields", []):
        change = changes.get(name)
        details.append(
            _md_field_detail(str(name), change) if isinstance(change, Mapping) else _code(name)
        )
    return f"{_md_entry(entry, label)} — {', '.join(details)}"


def _render_plan_md(r: Mapping[str, Any], graph: Mapping[str, Any] | None) -> list[str]:
    out = [f"#### {_code(r.get('plan'))}: {_md(r.get('status'))}", ""]
    fields = _list(r, "fields_changed")
    if fields and r.get("status") == MODIFIED:
        fc = r.get("field_changes") if isinstance(r.get("field_changes"), Mapping) else {}
        assert isinstance(fc, Mapping)
        rendered = [
            _md_field_detail(str(f), fc[f]) if isinstance(fc.get(f), Mapping) else _code(f)
            for f in fields
        ]
        out += [f"**Plan fields changed:** {', '.join(rendered)}", ""]
    for prefix, noun in (("tasks", "Tasks"), ("checkpoints", "Checkpoints"),
                         ("milestones", "Milestones")):
        _md_block(out, f"{noun} added", [_md_entry(t) for t in _list(r, f"{prefix}_added")])
        _md_block(out, f"{noun} removed", [_md_entry(t) for t in _list(r, f"{prefix}_removed")])
        _md_block(out, f"{noun} modified",
                  [_md_modified(t) for t in _list(r, f"{prefix}_modified")])
    scope = r.get("scope") if isinstance(r.get("scope"), Mapping) else {}
    assert isinstance(scope, Mapping)
    scope_items = []
    for key, change in scope.items():
        if not isinstance(change, Mapping):
            continue
        if "added" in change or "removed" in change:
            scope_items += [f"- {_code(key)} + {_md(v)}" for v in change.get("added", [])]
            scope_items += [f"- {_code(key)} − {_md(v)}" for v in change.get("removed", [])]
        else:
            scope_items.append(
                f"- {_code(key)} {_md(change.get('old'))} → {_md(change.get('new'))}"
            )
    _md_block(out, "Scope changes", scope_items)
    risk_items = [f"- added: {_md(i)}" for i in _list(r, "risks_added")]
    risk_items += [f"- removed: {_md(i)}" for i in _list(r, "risks_removed")]
    risk_items += [
        f"- changed: {_md(x.get('issue'))} ({', '.join(_code(f) for f in x.get('fields', []))})"
        for x in _list(r, "risks_modified")
    ]
    _md_block(out, "Risk changes", risk_items)
    for kind, noun, label in (("requirements", "Requirements", "text"),
                              ("questions", "Questions", "question")):
        _md_block(out, f"{noun} added", [_md_entry(q, label) for q in _list(r, f"{kind}_added")])
        _md_block(out, f"{noun} removed",
                  [_md_entry(q, label) for q in _list(r, f"{kind}_removed")])
        _md_block(out, f"{noun} modified",
                  [_md_modified(q, label) for q in _list(r, f"{kind}_modified")])
    states = _list(r, "state_changes")
    if states:
        rows = ["| task | from | to |", "|---|---|---|"]
        rows += [
            f"| {_code(s.get('task'))} | {_md(_state(s.get('old')))} | {_md(_state(s.get('new')))} |"
            for s in states
        ]
        if len(states) > DETAILS_THRESHOLD:
            out += [f"<details><summary>State changes ({len(states)})</summary>", ""]
            out += rows + ["", "</details>", ""]
        else:
            out += [f"**State changes ({len(states)})**", ""] + rows + [""]
    if graph is not None:
        out += _mermaid(r, graph)
    return out


# mermaid

_MERMAID_ID = re.compile(r"[^A-Za-z0-9_]")


def _mm_label(value: Any, limit: int = 60) -> str:
    text = " ".join(_text(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("#", "#35;")
    return (
        text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
        .replace("`", "#96;")
    )


class _Ids:
    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.used: set[str] = set()

    def __call__(self, ident: str, prefix: str = "n_") -> str:
        key = prefix + ident
        got = self.ids.get(key)
        if got is not None:
            return got
        base = prefix + _MERMAID_ID.sub("_", ident)
        candidate, i = base, 1
        while candidate in self.used:
            i += 1
            candidate = f"{base}_{i}"
        self.used.add(candidate)
        self.ids[key] = candidate
        return candidate


def _graph_nodes_for(r: Mapping[str, Any], graph: Mapping[str, Any]) -> list[dict[str, Any]]:
    change_of: dict[str, str] = {}
    for key, change in (("tasks_added", ADDED), ("checkpoints_added", ADDED),
                        ("tasks_modified", MODIFIED), ("checkpoints_modified", MODIFIED),
                        ("tasks_removed", REMOVED), ("checkpoints_removed", REMOVED)):
        for entry in _list(r, key):
            if isinstance(entry, Mapping):
                change_of.setdefault(_text(entry.get("id")), change)
    nodes = []
    for node in _list(graph, "nodes"):
        if not isinstance(node, Mapping) or node.get("id") is None:
            continue
        ident = _text(node.get("id"))
        deps = node.get("deps")
        nodes.append(
            {
                "id": ident,
                "title": _text(node.get("title")),
                "deps": [_text(d) for d in deps] if _is_list(deps) else [],
                "kind": _text(node.get("kind")) or "task",
                "change": _text(node.get("change")) or change_of.get(ident, UNCHANGED),
            }
        )
    return nodes


def _mermaid(r: Mapping[str, Any], graph: Mapping[str, Any]) -> list[str]:
    nodes = _graph_nodes_for(r, graph)
    changed = [n for n in nodes if n["change"] != UNCHANGED]
    if not changed:
        return []
    note = ""
    if len(nodes) > GRAPH_FULL_LIMIT:
        changed_ids = {n["id"] for n in changed}
        keep = set(changed_ids)
        for n in changed:
            keep.update(n["deps"])
        for n in nodes:
            if any(d in changed_ids for d in n["deps"]):
                keep.add(n["id"])
        shown = [n for n in nodes if n["id"] in keep]
        if len(shown) > GRAPH_HARD_LIMIT:
            shown = changed[:GRAPH_HARD_LIMIT]
            note = f"_Graph limited to {len(shown)} of {len(changed)} changed tasks._"
        else:
            note = (f"_Graph limited to changed tasks and their neighbours "
                    f"({len(shown)} of {len(nodes)} nodes)._")
    else:
        shown = nodes
    ids = _Ids()
    known = {n["id"] for n in shown}
    all_ids = {n["id"] for n in nodes}
    lines = ["```mermaid", "flowchart TD"]
    classes: dict[str, list[str]] = {ADDED: [], REMOVED: [], MODIFIED: [], "external": []}
    edges: list[str] = []
    externals: dict[str, str] = {}
    for n in shown:
        mid = ids(n["id"])
        label = _mm_label(f"{n['id']}: {n['title']}" if n["title"] else n["id"])
        if n["kind"] == "checkpoint":
            lines.append(f'  {mid}{{{{"{label}"}}}}')
        else:
            lines.append(f'  {mid}["{label}"]')
        if n["change"] in classes:
            classes[n["change"]].append(mid)
        arrow = "-.->" if n["change"] == REMOVED else "-->"
        for dep in n["deps"]:
            if dep in known:
                edges.append(f"  {ids(dep)} {arrow} {mid}")
            elif dep not in all_ids:  # another plan's task, or a whole plan
                if dep not in externals:
                    externals[dep] = ids(dep, "x_")
                    lines.append(f'  {externals[dep]}(["{_mm_label(dep)}"])')
                    classes["external"].append(externals[dep])
                edges.append(f"  {externals[dep]} {arrow} {mid}")
    lines += edges
    lines += [
        "  classDef added fill:#dafbe1,stroke:#1a7f37,color:#1f2328",
        "  classDef removed fill:#ffebe9,stroke:#cf222e,stroke-dasharray:5 5,color:#1f2328",
        "  classDef modified fill:#fff1e5,stroke:#bc4c00,color:#1f2328",
        "  classDef external fill:#f6f8fa,stroke:#8c959f,stroke-dasharray:2 2,color:#57606a",
    ]
    for name, members in classes.items():
        if members:
            lines.append(f"  class {','.join(members)} {name}")
    lines.append("```")
    legend = "Legend: added (green), removed (red, dashed), modified (orange)."
    out = ["<details open><summary>Task graph</summary>", "", *lines, "", legend]
    if note:
        out += ["", note]
    out += ["", "</details>", ""]
    return out


def render_markdown(result: Any) -> str:
    """A pull-request comment for ``{"plans": [...], "adrs": ..., "graphs": ...}`` (or one
    diff_plan result, or a list of them)."""
    plans, adrs, graphs = _unpack(result)
    out = ["### flowgit plan diff", ""]
    if not any(p.get("changed", p.get("status") != UNCHANGED) for p in plans) and not (
        _adrs_changed(adrs)
    ):
        out += ["No plan changes.", ""]
    if plans:
        out += [
            "| plan | status | added | removed | modified | state changes |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for p in plans:
            s = p.get("summary") if isinstance(p.get("summary"), Mapping) else {}
            assert isinstance(s, Mapping)
            out.append(
                f"| {_code(p.get('plan'))} | {_md(p.get('status'))} | {int(s.get('added', 0))} "
                f"| {int(s.get('removed', 0))} | {int(s.get('modified', 0))} "
                f"| {int(s.get('state_changes', 0))} |"
            )
        out.append("")
    for p in plans:
        if not p.get("changed", p.get("status") != UNCHANGED):
            continue
        graph = graphs.get(_text(p.get("plan"))) if graphs else None
        if not isinstance(graph, Mapping):
            g = p.get("graph")
            graph = g if isinstance(g, Mapping) else None
        out += _render_plan_md(p, graph)
    if _adrs_changed(adrs):
        assert adrs is not None
        out += ["#### ADRs", ""]
        for a in _list(adrs, "added"):
            status = f" ({_md(a.get('status'))})" if a.get("status") else ""
            out.append(f"- added {_code(a.get('id'))} {_md(a.get('title'))}{status}")
        for a in _list(adrs, "removed"):
            out.append(f"- removed {_code(a.get('id'))} {_md(a.get('title'))}")
        for a in _list(adrs, "changed"):
            out.append(_md_modified(a).replace("- ", "- changed ", 1))
        out.append("")
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"
