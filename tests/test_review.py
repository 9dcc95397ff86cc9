"""Git-native review on a real repository: `diff` between revisions (text, markdown, json),
the default range on a feature branch, `history` and `rollback` (issue 5, "Plan diffs for
review")."""
from __future__ import annotations

import hashlib
import json
import subprocess
import time
from typing import Any

import pytest
import yaml

from helpers import WEBHOOKS, Repo, state_branch

PLAN = ".flow/plans/webhooks/plan.yaml"
SPEC = ".flow/plans/webhooks/spec.yaml"


def load(repo: Repo, rel: str = PLAN) -> dict[str, Any]:
    return yaml.safe_load((repo.path / rel).read_text())


def dump(repo: Repo, data: dict[str, Any], rel: str = PLAN) -> None:
    repo.write(rel, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def commit(repo: Repo, message: str) -> str:
    repo.git("add", "-A", ".flow")
    repo.git("commit", "-q", "-m", message)
    return repo.git("rev-parse", "HEAD")


def task(plan: dict[str, Any], tid: str) -> dict[str, Any]:
    return next(t for t in plan["tasks"] if t["id"] == tid)


def event_files(repo: Repo) -> dict[str, str]:
    root = repo.path / ".flow" / "plans"
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("events/*.jsonl"))}


def edit_everything(repo: Repo) -> None:
    """One revision that touches every kind of thing `diff` reports."""
    plan = load(repo)
    task(plan, "T-WH-01")["title"] = "DB schema, version 2"
    task(plan, "T-WH-02")["priority"] = "low"
    task(plan, "T-WH-03")["files"] = ["internal/worker/webhook_worker.go", "internal/worker/pool.go"]
    task(plan, "T-WH-04")["acceptance"] = ["retries at 1, 2, 4, 8, 16 s"]
    plan["tasks"] = [t for t in plan["tasks"] if t["id"] != "T-WH-05"]
    task(plan, "T-WH-06")["depends_on"] = ["T-WH-03", "T-WH-04"]
    plan["tasks"].append({"id": "T-WH-07", "title": "Docs", "depends_on": ["T-WH-06"]})
    plan["checkpoints"][0]["after"] = ["T-WH-07"]
    plan["checkpoints"].append({"id": "CP-EARLY", "title": "Store reviewed", "after": ["T-WH-02"]})
    plan["scope"]["included"].append("signing secrets")
    plan["scope"]["excluded"] = []
    plan["risks"].append({"issue": "Secrets leak into logs", "mitigation": "redact", "likelihood": "low"})
    dump(repo, plan)
    dump(repo, {"plan": "webhooks", "requirements": [
        {"id": "R1", "kind": "event_driven", "trigger": "job.completed",
         "text": "When job.completed fires, the system shall deliver to all registered hooks",
         "tasks": ["T-WH-03"]}]}, SPEC)
    adr1 = next((repo.path / ".flow" / "adrs").glob("ADR-0001-*.yaml"))
    adr = yaml.safe_load(adr1.read_text())
    adr["status"] = "accepted"
    adr["decision"] = "SQLite retry table"
    adr1.write_text(yaml.safe_dump(adr, sort_keys=False))


@pytest.fixture
def revs(repo: Repo) -> tuple[Repo, str, str]:
    """r1: the webhook plan with ADR-0001; r2: every kind of change, a new ADR, and T-WH-01
    done, T-WH-02 claimed."""
    repo.plan("webhooks", WEBHOOKS)
    repo.ok("adr", "new", "Retry storage", "--plan", "webhooks")
    r1 = repo.git("rev-parse", "HEAD")
    edit_everything(repo)
    commit(repo, "plan: second revision")
    repo.ok("adr", "new", "Signing with HMAC")
    repo.ok("claim", "webhooks/T-WH-01", "--worker", "w1")
    repo.ok("done", "webhooks/T-WH-01", "--worker", "w1")
    repo.ok("claim", "webhooks/T-WH-02", "--worker", "w2")
    r2 = repo.git("rev-parse", "HEAD")
    return repo, r1, r2


# ----- diff --------------------------------------------------------------------------------------


def test_diff_json_between_two_revisions(revs: tuple[Repo, str, str]) -> None:
    repo, r1, r2 = revs
    out = repo.ok("diff", r1, r2, "--format", "json").json
    assert [p["plan"] for p in out["plans"]] == ["webhooks"]
    p = out["plans"][0]
    assert p["status"] == "modified"
    assert [t["id"] for t in p["tasks_added"]] == ["T-WH-07"]
    assert [t["id"] for t in p["tasks_removed"]] == ["T-WH-05"]
    fields = {t["id"]: t["fields"] for t in p["tasks_modified"]}
    assert fields == {"T-WH-01": ["title"], "T-WH-02": ["priority"], "T-WH-03": ["files"],
                      "T-WH-04": ["acceptance"], "T-WH-06": ["depends_on"]}
    mod = {t["id"]: t for t in p["tasks_modified"]}
    assert mod["T-WH-02"]["changes"]["priority"] == {"old": "high", "new": "low"}
    assert mod["T-WH-06"]["changes"]["depends_on"]["old"] == ["T-WH-03", "T-WH-04", "T-WH-05"]
    assert [c["id"] for c in p["checkpoints_added"]] == ["CP-EARLY"]
    assert [(c["id"], c["fields"]) for c in p["checkpoints_modified"]] == [("CP-WH", ["after"])]
    assert p["scope"]["included"] == {"added": ["signing secrets"], "removed": []}
    assert p["scope"]["excluded"]["removed"] == ["webhook management UI"]
    assert p["risks_added"] == ["Secrets leak into logs"]
    assert [r["id"] for r in p["requirements_added"]] == ["R1"]
    assert "scope" in p["fields_changed"] and "risks" in p["fields_changed"]

    if state_branch(repo):  # format 2: the tasks whose events name a commit of r1..r2 (ADR 0011)
        worked = {t["task"]: t["events"] for t in out["tasks_completed"]}
        assert worked == {"T-WH-01": ["task.claimed", "task.done"], "T-WH-02": ["task.claimed"]}
    else:
        changes = {s["task"]: (s["old"], s["new"]) for s in p["state_changes"]}
        assert changes["T-WH-01"] == ("ready", "done")
        assert changes["T-WH-02"] == ("pending", "claimed")
        assert changes["T-WH-05"] == ("pending", None)
        assert changes["T-WH-07"][0] is None
        assert "T-WH-03" not in changes  # pending on both sides

    adrs = out["adrs"]
    assert [a["id"] for a in adrs["added"]] == ["ADR-0002"]
    changed = {a["id"]: a["fields"] for a in adrs["changed"]}
    assert set(changed["ADR-0001"]) == {"status", "decision"}
    assert out["from"] == r1 and out["to"] == r2

    # The reverse direction mirrors it.
    back = repo.ok("diff", r2, r1, "--json").json["plans"][0]
    assert [t["id"] for t in back["tasks_added"]] == ["T-WH-05"]
    assert [t["id"] for t in back["tasks_removed"]] == ["T-WH-07"]
    assert {t["id"] for t in back["tasks_modified"]} == set(fields)


def test_diff_text(revs: tuple[Repo, str, str]) -> None:
    repo, r1, r2 = revs
    text = repo.ok("diff", r1, r2).out
    assert f"plan diff {r1} .. {r2}" in text
    assert "plan webhooks: modified" in text
    assert "+ T-WH-07 Docs" in text
    assert "- T-WH-05" in text
    assert "~ T-WH-02" in text and "(priority)" in text
    assert "checkpoint CP-EARLY" in text
    assert "signing secrets" in text
    assert "risk: Secrets leak into logs" in text
    assert "requirement R1" in text
    if state_branch(repo):
        assert "tasks worked on in this change: webhooks/T-WH-01 (claimed, done)" in text
    else:
        assert "T-WH-01: ready -> done" in text
    assert "ADR-0002" in text and "ADR-0001" in text


def test_diff_markdown_for_a_pull_request(revs: tuple[Repo, str, str]) -> None:
    repo, r1, r2 = revs
    md = repo.ok("diff", r1, r2, "--format", "markdown").out
    assert "| plan | status | added | removed | modified | state changes |" in md
    row = next(line for line in md.splitlines() if line.startswith("| `webhooks`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:] == ["modified", "2", "1", "6", str(len(
        repo.ok("diff", r1, r2, "--json").json["plans"][0]["state_changes"]))]
    assert "```mermaid" in md
    block = md.split("```mermaid", 1)[1].split("```", 1)[0]
    for cls in ("added", "removed", "modified"):
        assert f"classDef {cls} " in block
    classes = {line.split()[-1]: line.split()[1].split(",")
               for line in block.splitlines() if line.strip().startswith("class ")}
    assert set(classes["added"]) == {"n_T_WH_07", "n_CP_EARLY"}
    assert classes["removed"] == ["n_T_WH_05"]
    assert {"n_T_WH_01", "n_T_WH_02", "n_T_WH_06", "n_CP_WH"} <= set(classes["modified"])
    assert "-.->" in block  # the removed task's edge is drawn dashed
    assert "ADR-0002" in md


def test_diff_default_range_on_a_feature_branch(repo: Repo) -> None:
    """Default: merge-base with main .. working tree (committed branch work and uncommitted
    edits; not what main did since the branch point)."""
    repo.plan("webhooks", WEBHOOKS)
    repo.git("checkout", "-q", "-b", "feature")
    repo.ok("task", "add", "webhooks", "T-FEAT", "--title", "Committed on the branch",
            "--dep", "T-WH-01")
    repo.git("checkout", "-q", "main")
    repo.ok("task", "add", "webhooks", "T-MAIN", "--title", "Later on main")
    repo.git("checkout", "-q", "feature")
    plan = load(repo)
    task(plan, "T-WH-03")["title"] = "Uncommitted title"
    dump(repo, plan)
    repo.plan("brand-new", "id: brand-new\ntitle: New\ntasks:\n  - {id: N1, title: n}\n")
    repo.git("reset", "-q", "--soft", "HEAD~1")  # the new plan: staged, not committed
    assert repo.git("status", "--porcelain", PLAN)

    out = repo.ok("diff", "--format", "json").json
    assert out["to"] == "working tree"
    plans = {p["plan"]: p for p in out["plans"]}
    assert set(plans) == {"webhooks", "brand-new"}
    p = plans["webhooks"]
    assert [t["id"] for t in p["tasks_added"]] == ["T-FEAT"]
    assert p["tasks_removed"] == []
    assert [(t["id"], t["fields"]) for t in p["tasks_modified"]] == [("T-WH-03", ["title"])]
    assert plans["brand-new"]["status"] == "added"
    assert [t["id"] for t in plans["brand-new"]["tasks_added"]] == ["N1"]

    # The same range in text.
    text = repo.ok("diff").out
    assert "working tree" in text and "T-FEAT" in text and "T-MAIN" not in text


def test_diff_plan_filter(revs: tuple[Repo, str, str]) -> None:
    repo, r1, _ = revs
    repo.plan("other", "id: other\ntitle: Other\ntasks:\n  - {id: O1, title: o}\n")
    both = repo.ok("diff", r1, "--json").json
    assert {p["plan"] for p in both["plans"]} == {"webhooks", "other"}
    only = repo.ok("diff", r1, "--plan", "other", "--json").json
    assert [p["plan"] for p in only["plans"]] == ["other"]
    only = repo.ok("diff", r1, "HEAD", "--plan", "webhooks", "--format", "markdown").out
    assert "`other`" not in only and "`webhooks`" in only
    res = repo.run("diff", r1, "HEAD", "--plan", "nosuch")
    assert res.code == 1 and "nosuch" in res.err


@pytest.mark.format1
def test_diff_unchanged_and_state_only(repo: Repo) -> None:
    repo.plan("webhooks", WEBHOOKS)
    r1 = repo.git("rev-parse", "HEAD")
    out = repo.ok("diff", r1, r1, "--json").json
    assert out["plans"] == []
    assert "no plan changes" in repo.ok("diff", r1, r1).out
    repo.ok("claim", "webhooks", "--worker", "w1")
    out = repo.ok("diff", r1, "HEAD", "--json").json
    p = out["plans"][0]
    assert p["status"] == "unchanged"
    assert p["tasks_added"] == p["tasks_removed"] == p["tasks_modified"] == []
    assert p["state_changes"] == [{"task": "T-WH-01", "old": "ready", "new": "claimed"}]


@pytest.mark.parametrize("args", [("nope",), ("HEAD", "nope"), ("nope", "--format", "markdown")])
def test_diff_bad_revision(repo: Repo, args: tuple[str, ...]) -> None:
    repo.plan("webhooks", WEBHOOKS)
    res = repo.run("diff", *args)
    assert res.code == 1
    assert res.out == ""
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "nope" in lines[0] and "Traceback" not in res.err
    js = repo.run("diff", *args, "--json")
    assert js.code == 1 and "nope" in js.json["error"]["message"]
    proc = repo.proc("diff", *args)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_diff_usage_error(repo: Repo) -> None:
    assert repo.run("diff", "HEAD", "HEAD", "HEAD").code == 2
    assert repo.run("diff", "--format", "yaml").code == 2


# ----- history -----------------------------------------------------------------------------------


def test_history_newest_first_with_summaries(revs: tuple[Repo, str, str]) -> None:
    repo, _, _ = revs
    repo.ok("task", "add", "webhooks", "T-WH-08", "--title", "Metrics")
    out = repo.ok("history", "webhooks", "--json").json
    versions = out["versions"]
    expected = repo.git("log", "--format=%H", "--", PLAN).split()
    assert [v["commit"] for v in versions] == expected  # newest first, every version
    assert len(versions) >= 4
    assert "T-WH-08" in versions[0]["summary"] and "+1" in versions[0]["summary"]
    second = next(v for v in versions if v["subject"] == "plan: second revision")
    assert "T-WH-07" in second["summary"] and "T-WH-05" in second["summary"]
    assert "priority" in second["summary"]
    assert versions[-1]["summary"].startswith("created with 6 task(s)")
    assert all("\n" not in v["summary"] for v in versions)

    text = repo.ok("history", "webhooks").out.strip().splitlines()
    assert len(text) == len(versions)
    assert text[0].startswith(versions[0]["commit"][:10])
    assert "created" in text[-1]


def test_history_unknown_plan(repo: Repo) -> None:
    res = repo.run("history", "nosuch")
    assert res.code == 1 and len(res.err.strip().splitlines()) == 1
    assert repo.run("history", "../etc").code in (1, 2)


# ----- rollback ----------------------------------------------------------------------------------


def test_rollback_restores_the_definition_and_keeps_every_event(revs: tuple[Repo, str, str]) -> None:
    repo, r1, r2 = revs
    # A task that only exists after r1 and has events: rollback must warn about it.
    repo.ok("task", "add", "webhooks", "T-NEW", "--title", "New")
    repo.ok("claim", "webhooks/T-NEW", "--worker", "w3")
    events_before = event_files(repo)
    head = repo.git("rev-parse", "HEAD")
    count = repo.commits()

    res = repo.run("rollback", "webhooks", "--to", r1, "--json")
    assert res.code == 0, res.err
    out = res.json
    step = 2 if state_branch(repo) else 1  # format 2: the branch's commit and the state's amendment
    assert repo.commits() == count + step
    assert repo.git("rev-parse", "HEAD~1") == head
    assert out["commit"] == repo.git("rev-parse", "HEAD")
    assert out["orphans"] == ["T-NEW"]  # T-WH-07 is gone too, but has no events
    assert "T-NEW" in res.err and "warning" in res.err.lower()
    assert repo.git("status", "--porcelain") == ""

    # The definition is r1's, byte for byte; every event file is untouched.
    assert (repo.path / PLAN).read_bytes() == subprocess.run(
        ["git", "show", f"{r1}:{PLAN}"], cwd=repo.path, capture_output=True, check=True).stdout
    assert event_files(repo) == events_before
    changed = repo.git("diff", "--name-only", "HEAD~1", "HEAD").split()
    assert PLAN in changed and not any(p.endswith(".jsonl") for p in changed)
    trailers = repo.git("log", "-1", "--format=%B")
    assert "Flow-Plan: webhooks" in trailers and "Flow-Event:" in trailers

    # No definition difference left against r1; the state carries on from the events.
    back = repo.ok("diff", r1, "HEAD", "--plan", "webhooks", "--json").json["plans"]
    for p in back:
        assert p["tasks_added"] == p["tasks_removed"] == p["tasks_modified"] == []
    states = {t["id"]: t["state"] for t in repo.ok("status", "webhooks", "--json").json["tasks"]}
    assert states["T-WH-01"] == "done" and "T-WH-05" in states and "T-NEW" not in states
    assert repo.ok("validate").code == 0

    # In history as the newest version; a second rollback to the same revision does nothing.
    assert repo.ok("history", "webhooks", "--json").json["versions"][0]["commit"] == out["commit"]
    again = repo.ok("rollback", "webhooks", "--to", r1, "--json").json
    assert again["commit"] is None and repo.commits() == count + step

    # And forward again to r2.
    repo.ok("rollback", "webhooks", "--to", r2)
    assert (repo.path / PLAN).read_bytes() == subprocess.run(
        ["git", "show", f"{r2}:{PLAN}"], cwd=repo.path, capture_output=True, check=True).stdout
    assert event_files(repo) == events_before


def test_rollback_takes_the_spec_with_the_plan(revs: tuple[Repo, str, str]) -> None:
    """A spec written after REV may name tasks REV's plan lacks: rolling back only plan.yaml
    would leave an invalid repository."""
    repo, r1, r2 = revs
    spec = load(repo, SPEC)
    spec["requirements"][0]["tasks"] = ["T-WH-07"]  # only exists after r1
    dump(repo, spec, SPEC)
    commit(repo, "spec names T-WH-07")
    repo.ok("rollback", "webhooks", "--to", r1)
    assert not (repo.path / SPEC).exists()
    assert repo.ok("validate").code == 0
    assert repo.git("status", "--porcelain") == ""
    repo.ok("rollback", "webhooks", "--to", r2)
    assert load(repo, SPEC)["requirements"][0]["tasks"] == ["T-WH-03"]
    assert repo.ok("validate").code == 0


def test_rollback_refuses_over_uncommitted_edits(revs: tuple[Repo, str, str]) -> None:
    repo, r1, _ = revs
    path = repo.path / PLAN
    path.write_text(path.read_text() + "# my unsaved thought\n")
    count = repo.commits()
    res = repo.run("rollback", "webhooks", "--to", r1)
    assert res.code == 1 and "uncommitted" in res.err
    assert path.read_text().endswith("# my unsaved thought\n")
    assert repo.commits() == count


def test_rollback_to_a_revision_without_the_plan(repo: Repo) -> None:
    before = repo.git("rev-parse", "HEAD")
    repo.plan("webhooks", WEBHOOKS)
    count = repo.commits()
    res = repo.run("rollback", "webhooks", "--to", before)
    assert res.code == 1
    assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    assert repo.commits() == count
    js = repo.run("rollback", "webhooks", "--to", before, "--json")
    assert js.code == 1 and "error" in js.json
    assert repo.run("rollback", "webhooks", "--to", "no-such-rev").code == 1
    assert repo.commits() == count


# ----- size ---------------------------------------------------------------------------------------


def big_plan(n: int, title: str = "Task") -> dict[str, Any]:
    tasks = []
    for i in range(n):
        t: dict[str, Any] = {"id": f"T{i:04d}", "title": f"{title} {i}",
                             "files": [f"src/mod{i % 50}/f{i}.py"], "acceptance": [f"t{i} passes"]}
        if i >= 10:
            t["depends_on"] = [f"T{i - 10:04d}"]
        tasks.append(t)
    return {"id": "big", "title": "Big", "goal": "many tasks", "tasks": tasks,
            "checkpoints": [{"id": "CP", "title": "end", "after": [f"T{n - 1:04d}"]}]}


def test_diff_of_a_2000_task_plan(repo: Repo) -> None:
    plan = big_plan(2000)
    repo.write(".flow/plans/big/plan.yaml", yaml.safe_dump(plan, sort_keys=False))
    r1 = commit(repo, "big plan")
    for i in range(0, 2000, 100):
        plan["tasks"][i]["title"] = f"Renamed {i}"
    for i in range(5, 2000, 200):
        plan["tasks"][i]["priority"] = "high"
    plan["tasks"] = [t for t in plan["tasks"] if t["id"] not in ("T1999", "T1998")]
    plan["checkpoints"][0]["after"] = ["T1997"]
    plan["tasks"].append({"id": "T2000", "title": "Extra", "depends_on": ["T0000"]})
    repo.write(".flow/plans/big/plan.yaml", yaml.safe_dump(plan, sort_keys=False))
    r2 = commit(repo, "big edit")

    start = time.perf_counter()
    proc = repo.proc("diff", r1, r2, "--format", "json")
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    p = json.loads(proc.stdout)["plans"][0]
    assert [t["id"] for t in p["tasks_added"]] == ["T2000"]
    assert sorted(t["id"] for t in p["tasks_removed"]) == ["T1998", "T1999"]
    assert len(p["tasks_modified"]) == 20 + 10
    md = repo.proc("diff", r1, r2, "--format", "markdown")
    assert md.returncode == 0 and "```mermaid" in md.stdout
    print(f"diff of a 2,000-task plan: {elapsed:.2f} s (json, one process)")
