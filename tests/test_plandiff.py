from __future__ import annotations

import copy
import datetime
import json
import time
from typing import Any

import pytest

from flowgit.formats.plandiff import diff_adrs, diff_plan, render_markdown, render_text


def base_plan() -> dict[str, Any]:
    return {
        "id": "webhooks",
        "title": "Webhook delivery",
        "goal": "Deliver events",
        "tags": ["backend"],
        "scope": {"included": ["delivery", "retry"], "excluded": ["UI"]},
        "tasks": [
            {"id": "T-1", "title": "Schema", "files": ["a.sql"]},
            {
                "id": "T-2",
                "title": "Store",
                "depends_on": ["T-1", "CP-0"],
                "files": ["store.go", "store_test.go"],
                "acceptance": ["CRUD tested"],
                "priority": "high",
            },
            {"id": "T-3", "title": "Worker", "depends_on": ["T-2"]},
        ],
        "checkpoints": [{"id": "CP-1", "title": "Gate", "after": ["T-2", "T-3"]}],
        "milestones": [{"id": "M1", "title": "Store ready", "tasks": ["T-1", "T-2"]}],
        "risks": [{"issue": "Floods", "mitigation": "limit", "likelihood": "medium"}],
    }


def task(plan: dict[str, Any], tid: str) -> dict[str, Any]:
    return next(t for t in plan["tasks"] if t["id"] == tid)


def test_identical_plans_unchanged() -> None:
    r = diff_plan(base_plan(), base_plan())
    assert r["plan"] == "webhooks"
    assert r["status"] == "unchanged"
    assert r["changed"] is False
    assert r["summary"] == {"added": 0, "removed": 0, "modified": 0, "state_changes": 0}
    assert r["tasks_added"] == r["tasks_removed"] == r["tasks_modified"] == []
    assert r["fields_changed"] == [] and r["scope"] == {}
    json.dumps(r)


def test_task_added_and_removed() -> None:
    new = base_plan()
    new["tasks"] = [t for t in new["tasks"] if t["id"] != "T-3"]
    new["tasks"].append({"id": "T-7", "title": "Metrics"})
    r = diff_plan(base_plan(), new)
    assert r["status"] == "modified"
    assert r["tasks_added"] == [{"id": "T-7", "title": "Metrics"}]
    assert r["tasks_removed"] == [{"id": "T-3", "title": "Worker"}]
    assert r["tasks_modified"] == []
    assert r["summary"]["added"] == 1 and r["summary"]["removed"] == 1


@pytest.mark.parametrize(
    ("tid", "field", "value", "old", "new"),
    [
        ("T-2", "title", "Store v2", "Store", "Store v2"),
        ("T-2", "acceptance", ["CRUD tested", "fast"], ["CRUD tested"], ["CRUD tested", "fast"]),
        ("T-2", "depends_on", ["T-1"], ["T-1", "CP-0"], ["T-1"]),
        ("T-2", "files", ["store.go"], ["store.go", "store_test.go"], ["store.go"]),
        ("T-2", "priority", "low", "high", "low"),
        ("T-1", "priority", "high", "medium", "high"),
        ("T-1", "description", "text", None, "text"),
        ("T-1", "estimate", "2h", None, "2h"),
        ("T-1", "run", ["make", "test"], None, ["make", "test"]),
        ("T-1", "retry", {"strategy": "fixed", "base": 5}, None, {"strategy": "fixed", "base": 5}),
        ("T-1", "tags", ["db"], [], ["db"]),
        ("T-1", "adrs", ["ADR-0001"], [], ["ADR-0001"]),
        ("T-1", "executor", "claude", None, "claude"),
        ("T-1", "x-owner", "bob", None, "bob"),
    ],
)
def test_task_modified_per_field(tid: str, field: str, value: Any, old: Any, new: Any) -> None:
    plan = base_plan()
    task(plan, tid)[field] = value
    r = diff_plan(base_plan(), plan)
    assert r["status"] == "modified"
    assert r["tasks_modified"] == [
        {
            "id": tid,
            "title": task(plan, tid)["title"],
            "fields": [field],
            "changes": {field: {"old": old, "new": new}},
        }
    ]
    assert r["summary"]["modified"] == 1


def test_several_fields_sorted() -> None:
    plan = base_plan()
    task(plan, "T-3")["files"] = ["w.go"]
    task(plan, "T-3")["depends_on"] = ["T-1"]
    r = diff_plan(base_plan(), plan)
    assert r["tasks_modified"][0]["fields"] == ["depends_on", "files"]
    assert "~ T-3 Worker (depends_on, files)" in render_text(r)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"priority": "medium"}, False),  # the default spelled out
        ({"depends_on": []}, False),  # a missing list is []
        ({"acceptance": []}, False),
        ({"files": None}, False),
        ({"priority": None}, False),
        ({"priority": "low"}, True),
    ],
)
def test_defaults_are_not_changes(change: dict[str, Any], expected: bool) -> None:
    plan = base_plan()
    task(plan, "T-1").pop("files")
    old = copy.deepcopy(plan)
    task(plan, "T-1").update(change)
    r = diff_plan(old, plan)
    assert bool(r["tasks_modified"]) is expected
    assert (r["status"] == "modified") is expected


@pytest.mark.parametrize("field", ["depends_on", "files"])
def test_order_only_change_is_unchanged(field: str) -> None:
    plan = base_plan()
    task(plan, "T-2")[field] = list(reversed(task(plan, "T-2")[field]))
    r = diff_plan(base_plan(), plan)
    assert r["status"] == "unchanged"
    assert r["tasks_modified"] == []


def test_acceptance_order_is_a_change() -> None:
    plan = base_plan()
    task(plan, "T-2")["acceptance"] = ["b", "a"]
    old = base_plan()
    task(old, "T-2")["acceptance"] = ["a", "b"]
    assert diff_plan(old, plan)["tasks_modified"][0]["fields"] == ["acceptance"]


def test_task_order_change_is_unchanged() -> None:
    plan = base_plan()
    plan["tasks"].reverse()
    assert diff_plan(base_plan(), plan)["status"] == "unchanged"


@pytest.mark.parametrize(
    ("edit", "key", "expected"),
    [
        (lambda p: p["checkpoints"].append({"id": "CP-2", "title": "More"}),
         "checkpoints_added", [{"id": "CP-2", "title": "More"}]),
        (lambda p: p.update(checkpoints=[]),
         "checkpoints_removed", [{"id": "CP-1", "title": "Gate"}]),
        (lambda p: p["checkpoints"][0].update(after=["T-3", "T-2"]), "checkpoints_modified", []),
        (lambda p: p["checkpoints"][0].update(after=["T-3"]), "checkpoints_modified",
         [{"id": "CP-1", "title": "Gate", "fields": ["after"],
           "changes": {"after": {"old": ["T-2", "T-3"], "new": ["T-3"]}}}]),
        (lambda p: p["checkpoints"][0].update(validations=[{"name": "t", "run": ["x"]}]),
         "checkpoints_modified",
         [{"id": "CP-1", "title": "Gate", "fields": ["validations"],
           "changes": {"validations": {"old": [], "new": [{"name": "t", "run": ["x"]}]}}}]),
    ],
)
def test_checkpoint_changes(edit: Any, key: str, expected: Any) -> None:
    plan = base_plan()
    edit(plan)
    r = diff_plan(base_plan(), plan)
    assert r[key] == expected


def test_scope_changes() -> None:
    plan = base_plan()
    plan["scope"] = {
        "included": ["retry", "delivery", "signing"],
        "excluded": [],
        "constraints": ["no new infra"],
    }
    r = diff_plan(base_plan(), plan)
    assert r["scope"] == {
        "constraints": {"added": ["no new infra"], "removed": []},
        "excluded": {"added": [], "removed": ["UI"]},
        "included": {"added": ["signing"], "removed": []},
    }
    assert r["fields_changed"] == ["scope"]
    assert r["status"] == "modified"


def test_scope_order_only_is_unchanged() -> None:
    plan = base_plan()
    plan["scope"]["included"].reverse()
    r = diff_plan(base_plan(), plan)
    assert r["scope"] == {} and r["fields_changed"] == []


def test_risks_by_issue() -> None:
    plan = base_plan()
    plan["risks"] = [
        {"issue": "Floods", "mitigation": "queue", "likelihood": "medium"},
        {"issue": "Secrets leak", "likelihood": "low"},
    ]
    old = base_plan()
    old["risks"].append({"issue": "Old risk"})
    r = diff_plan(old, plan)
    assert r["risks_added"] == ["Secrets leak"]
    assert r["risks_removed"] == ["Old risk"]
    assert r["risks_modified"] == [
        {"issue": "Floods", "fields": ["mitigation"],
         "changes": {"mitigation": {"old": "limit", "new": "queue"}}}
    ]
    assert "risks" in r["fields_changed"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "New title"),
        ("goal", "Other goal"),
        ("description", "text"),
        ("tags", ["backend", "go"]),
        ("retry", {"strategy": "fixed", "base": 1}),
        ("parent", "platform"),
        ("executor", "claude"),
        ("adrs", ["ADR-0001"]),
    ],
)
def test_top_level_fields(field: str, value: Any) -> None:
    plan = base_plan()
    plan[field] = value
    r = diff_plan(base_plan(), plan)
    assert r["fields_changed"] == [field]
    assert r["field_changes"][field]["new"] == value
    assert r["status"] == "modified"


def test_tags_order_only_and_empty_lists() -> None:
    old = base_plan()
    old["tags"] = ["a", "b"]
    new = base_plan()
    new["tags"] = ["b", "a"]
    new["adrs"] = []
    assert diff_plan(old, new)["fields_changed"] == []


def test_milestones() -> None:
    plan = base_plan()
    plan["milestones"] = [
        {"id": "M1", "title": "Store ready", "tasks": ["T-2", "T-1"],
         "due": datetime.date(2026, 12, 1)},
        {"id": "M2", "title": "Done"},
    ]
    r = diff_plan(base_plan(), plan)
    assert r["milestones_added"] == [{"id": "M2", "title": "Done"}]
    assert r["milestones_modified"][0]["fields"] == ["due"]
    assert r["milestones_modified"][0]["changes"]["due"] == {"old": None, "new": "2026-12-01"}
    assert r["fields_changed"] == ["milestones"]
    json.dumps(r)


def spec(*reqs: dict[str, Any]) -> dict[str, Any]:
    return {"plan": "webhooks", "requirements": list(reqs)}


def test_spec_requirements() -> None:
    old = spec(
        {"id": "R1", "kind": "ubiquitous", "text": "shall log", "tasks": ["T-1", "T-2"]},
        {"id": "R2", "kind": "event_driven", "text": "When x, shall y"},
    )
    new = spec(
        {"id": "R1", "kind": "ubiquitous", "text": "shall log", "tasks": ["T-2", "T-1"]},
        {"id": "R2", "kind": "event_driven", "text": "When x, shall z"},
        {"id": "R3", "kind": "unwanted", "text": "If bad, shall stop"},
    )
    r = diff_plan(base_plan(), base_plan(), old_spec=old, new_spec=new)
    assert r["requirements_added"] == [{"id": "R3", "text": "If bad, shall stop"}]
    assert r["requirements_removed"] == []
    assert r["requirements_modified"] == [
        {"id": "R2", "text": "When x, shall z", "fields": ["text"],
         "changes": {"text": {"old": "When x, shall y", "new": "When x, shall z"}}}
    ]
    assert r["status"] == "modified"
    r2 = diff_plan(base_plan(), base_plan(), old_spec=new, new_spec=None)
    assert [x["id"] for x in r2["requirements_removed"]] == ["R1", "R2", "R3"]


def test_spec_questions() -> None:
    old = {"questions": [{"id": "Q1", "question": "Order?", "options": ["a", "b"]}]}
    new = {"questions": [{"id": "Q1", "question": "Order?", "options": ["a", "b"],
                          "answer": "b"}]}
    r = diff_plan(base_plan(), base_plan(), old_spec=old, new_spec=new)
    assert r["questions_modified"][0]["fields"] == ["answer"]


def test_state_changes() -> None:
    new = base_plan()
    new["tasks"].append({"id": "T-9", "title": "New"})
    r = diff_plan(
        base_plan(), new,
        old_states={"T-1": "ready", "T-2": "pending", "T-3": "done"},
        new_states={"T-1": "done", "T-2": "pending", "T-3": "done", "T-9": "pending"},
    )
    assert r["state_changes"] == [
        {"task": "T-1", "old": "ready", "new": "done"},
        {"task": "T-9", "old": None, "new": "pending"},
    ]
    assert r["summary"]["state_changes"] == 2
    assert r["status"] == "modified"
    text = render_text(r)
    assert "T-1: ready -> done" in text
    assert "+ T-9 New" in text


def test_state_changes_only() -> None:
    r = diff_plan(base_plan(), base_plan(), old_states={"T-1": "ready"},
                  new_states={"T-1": "claimed"})
    assert r["status"] == "unchanged"
    assert r["changed"] is True
    assert r["state_changes"] == [{"task": "T-1", "old": "ready", "new": "claimed"}]


def test_plan_added() -> None:
    r = diff_plan(None, base_plan(), new_states={"T-1": "ready"})
    assert r["status"] == "added"
    assert [t["id"] for t in r["tasks_added"]] == ["T-1", "T-2", "T-3"]
    assert r["checkpoints_added"] == [{"id": "CP-1", "title": "Gate"}]
    assert r["summary"]["added"] == 4
    assert "title" in r["fields_changed"]
    assert render_text(r).startswith("plan webhooks: added")


def test_plan_removed() -> None:
    r = diff_plan(base_plan(), None)
    assert r["status"] == "removed"
    assert r["plan"] == "webhooks"
    assert [t["id"] for t in r["tasks_removed"]] == ["T-1", "T-2", "T-3"]
    assert {n["change"] for n in r["graph"]["nodes"]} == {"removed"}
    assert render_text(r).startswith("plan webhooks: removed")


def test_graph_union() -> None:
    new = base_plan()
    new["tasks"] = [t for t in new["tasks"] if t["id"] != "T-1"]
    new["tasks"].append({"id": "T-4", "title": "API", "depends_on": ["T-3"]})
    task(new, "T-3")["title"] = "Worker pool"
    nodes = {n["id"]: n for n in diff_plan(base_plan(), new)["graph"]["nodes"]}
    assert nodes["T-4"] == {"id": "T-4", "title": "API", "deps": ["T-3"], "kind": "task",
                            "change": "added"}
    assert nodes["T-1"]["change"] == "removed"
    assert nodes["T-3"]["change"] == "modified"
    assert nodes["T-2"]["change"] == "unchanged"
    assert nodes["CP-1"]["kind"] == "checkpoint"
    assert nodes["CP-1"]["deps"] == ["T-2", "T-3"]


def test_deterministic_and_json() -> None:
    new = base_plan()
    new["tasks"].append({"id": "T-5", "title": "x", "retry": {"b": 1, "a": 2}})
    a = json.dumps(diff_plan(base_plan(), new), sort_keys=True)
    b = json.dumps(diff_plan(base_plan(), copy.deepcopy(new)), sort_keys=True)
    assert a == b


def test_adr_diff() -> None:
    old = {
        "ADR-0001": {"id": "ADR-0001", "title": "SQLite", "status": "proposed",
                     "plans": ["a", "b"]},
        "ADR-0002": {"id": "ADR-0002", "title": "Gone", "status": "accepted"},
    }
    new = {
        "ADR-0001": {"id": "ADR-0001", "title": "SQLite", "status": "accepted",
                     "plans": ["b", "a"]},
        "ADR-0003": {"id": "ADR-0003", "title": "Queue", "status": "proposed"},
    }
    r = diff_adrs(old, new)
    assert r["added"] == [{"id": "ADR-0003", "title": "Queue", "status": "proposed"}]
    assert r["removed"] == [{"id": "ADR-0002", "title": "Gone", "status": "accepted"}]
    assert r["changed"] == [
        {"id": "ADR-0001", "title": "SQLite", "fields": ["status"],
         "changes": {"status": {"old": "proposed", "new": "accepted"}}}
    ]
    assert diff_adrs(old, old)["summary"] == {"added": 0, "removed": 0, "changed": 0}


def changed_result() -> dict[str, Any]:
    new = base_plan()
    new["tasks"] = [t for t in new["tasks"] if t["id"] != "T-1"]
    new["tasks"].append({"id": "T-4.a", "title": 'Say "hi" <b> #1', "depends_on": ["T-3",
                                                                                  "other/T-9"]})
    task(new, "T-3")["priority"] = "high"
    return diff_plan(base_plan(), new, old_states={"T-2": "ready"},
                     new_states={"T-2": "done"})


def test_render_text() -> None:
    text = render_text(changed_result())
    lines = text.splitlines()
    assert lines[0].startswith("plan webhooks: modified")
    assert '  + T-4.a Say "hi" <b> #1' in lines
    assert "  - T-1 Schema" in lines
    assert "  ~ T-3 Worker (priority)" in lines
    assert "  T-2: ready -> done" in lines
    assert render_text(diff_plan(base_plan(), base_plan())) == "plan webhooks: unchanged\n"


def test_render_markdown() -> None:
    r = changed_result()
    adrs = diff_adrs({}, {"ADR-0001": {"title": "SQLite", "status": "proposed"}})
    md = render_markdown({"plans": [r, diff_plan(base_plan(), base_plan())], "adrs": adrs})
    assert md.startswith("### flowgit plan diff\n")
    assert "| plan | status | added | removed | modified | state changes |" in md
    assert "| `webhooks` | modified | 1 | 1 | 1 | 1 |" in md
    assert "ADR-0001" in md
    assert "```mermaid" in md and "flowchart" in md
    assert "classDef added" in md and "classDef removed" in md and "classDef modified" in md
    assert "stroke-dasharray" in md
    # sanitised ids, escaped titles
    assert "n_T_4_a" in md
    assert "#quot;hi#quot;" in md and "#lt;b#gt;" in md and "#35;1" in md
    assert "class n_T_4_a added" in md
    assert "class n_T_1 removed" in md
    assert "class n_T_3 modified" in md
    assert "n_T_1 -.->" not in md  # T-1 had no deps; nothing dashed from it
    assert "n_T_3 --> n_T_4_a" in md
    mermaid = md.split("```mermaid", 1)[1].split("```", 1)[0]
    assert "T-4.a[" not in mermaid
    # the HTML in titles is escaped in the lists
    assert "&lt;b&gt;" in md
    # the unchanged plan has a table row but no section
    assert md.count("#### `webhooks`") == 1


def test_render_markdown_graphs_override_and_details() -> None:
    new = base_plan()
    new["tasks"] += [{"id": f"N-{i}", "title": f"n{i}"} for i in range(12)]
    r = diff_plan(base_plan(), new)
    graphs = {"webhooks": {"nodes": [{"id": "N-0", "title": "n0", "deps": [],
                                       "kind": "task"}]}}
    md = render_markdown({"plans": [r], "graphs": graphs})
    assert "<details><summary>Tasks added (12)</summary>" in md
    assert "class n_N_0 added" in md
    assert "n_N_1" not in md


def test_render_markdown_no_changes() -> None:
    md = render_markdown({"plans": [diff_plan(base_plan(), base_plan())]})
    assert "No plan changes." in md
    assert "```mermaid" not in md


def test_mermaid_id_collisions() -> None:
    new = {"id": "p", "title": "p", "tasks": [{"id": "a-b", "title": "1"},
                                             {"id": "a.b", "title": "2"}]}
    md = render_markdown([diff_plan(None, new)])
    assert "n_a_b[" in md and "n_a_b_2[" in md


def big_plan(n: int, offset: int = 0) -> dict[str, Any]:
    return {
        "id": "big",
        "title": "Big",
        "tasks": [
            {
                "id": f"T-{i}",
                "title": f"Task {i}",
                "depends_on": [f"T-{i - 1}"] if i else [],
                "files": [f"src/f{i}.py", "README.md"],
                "acceptance": [f"check {i + offset * (i % 7 == 0)}"],
                "priority": "high" if i % 3 == 0 else "medium",
            }
            for i in range(n)
        ],
    }


def test_fast_on_large_plans() -> None:
    old, new = big_plan(2000), big_plan(2000, offset=1)
    states = {f"T-{i}": "done" for i in range(2000)}
    diff_plan(old, new)  # warm up
    start = time.perf_counter()
    r = diff_plan(old, new, old_states=states, new_states=states)
    elapsed = time.perf_counter() - start
    assert r["summary"]["modified"] == len(range(0, 2000, 7))
    assert elapsed < 0.05, elapsed
    md = render_markdown([r])
    assert "Graph limited" in md
