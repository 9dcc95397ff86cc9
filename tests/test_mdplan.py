"""Markdown plans: the rules of flowgit.mdplan, one table per rule, and each error."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from flowgit.formats.mdplan import parse_markdown_plan

WEBHOOKS_MD = """\
# Webhook delivery with retry

**Goal:** When an event is published (e.g. job.completed), deliver it to every registered
webhook URL with exponential backoff (max 5 attempts, 2^n seconds between retries).

Tags: backend, go

Worked out with /pi: best-effort ordering, SQLite for the retry table.

## Scope

Included:
- Persistent retry table in SQLite
- A webhook.failed event when the retries are exhausted

Excluded:
- Strict FIFO ordering

### Assumptions

- Best-effort delivery is fine for v1

**Constraints:**
- At most 5 concurrent deliveries per endpoint

## Storage

- [ ] T-WH-01: DB schema: webhooks + webhook_deliveries tables
  files: infra/supabase/migrations/00060_webhooks.sql
  acceptance: the migration applies on a fresh database
  priority: high
  estimate: 2h
- [ ] T-WH-02: WebhookStore: CRUD + pending-deliveries query (depends on: T-WH-01)
  files: `internal/store/webhook_store.go`
  acceptance: CRUD and pending-deliveries query are tested

## Delivery

- [ ] **T-WH-03** WebhookWorker: goroutine pool + HTTP delivery
  depends on: WebhookStore: CRUD + pending-deliveries query
  A semaphore per endpoint keeps each endpoint at 5 deliveries at once.
  files: internal/worker/webhook_worker.go
- [ ] [T-WH-04] RetryScheduler: backoff + requeue logic
  - after: T-WH-03
  - files: internal/scheduler/retry_scheduler.go
  - estimate: 3

  Delays of 1s, 2s, 4s, 8s and 16s; webhook.failed after the fifth attempt.
- [x] T-WH-05: EventBus integration: subscribe job.completed → enqueue
  needs: webhookworker: goroutine pool + http delivery
  files: internal/eventbus/dispatcher.go
  priority: Low

## T-WH-06: Tests: unit + integration

Unit tests for the worker and the scheduler, and one end-to-end delivery
to a local HTTP server.

depends on: T-WH-03, T-WH-04, T-WH-05
files: internal/worker/webhook_worker_test.go
acceptance:
- go test ./... passes
- [ ] the integration suite delivers to a local HTTP server

## Checkpoints

- CP-WH: All tasks + integration tests passing (after: T-WH-06)

## Risks

- Endpoint floods — 5 concurrent deliveries per endpoint (likelihood: medium, impact: high)
- Lost deliveries on a crash - pending deliveries live in SQLite, not in memory

## Notes

The retry delays follow ADR-014.
"""

WEBHOOKS = {
    "id": "webhooks",
    "title": "Webhook delivery with retry",
    "goal": "When an event is published (e.g. job.completed), deliver it to every registered "
    "webhook URL with exponential backoff (max 5 attempts, 2^n seconds between retries).",
    "description": "Worked out with /pi: best-effort ordering, SQLite for the retry table.\n\n"
    "The retry delays follow ADR-014.",
    "tags": ["backend", "go"],
    "scope": {
        "included": [
            "Persistent retry table in SQLite",
            "A webhook.failed event when the retries are exhausted",
        ],
        "excluded": ["Strict FIFO ordering"],
        "assumptions": ["Best-effort delivery is fine for v1"],
        "constraints": ["At most 5 concurrent deliveries per endpoint"],
    },
    "tasks": [
        {
            "id": "T-WH-01",
            "title": "DB schema: webhooks + webhook_deliveries tables",
            "files": ["infra/supabase/migrations/00060_webhooks.sql"],
            "acceptance": ["the migration applies on a fresh database"],
            "priority": "high",
            "estimate": "2h",
            "tags": ["storage"],
        },
        {
            "id": "T-WH-02",
            "title": "WebhookStore: CRUD + pending-deliveries query",
            "depends_on": ["T-WH-01"],
            "files": ["internal/store/webhook_store.go"],
            "acceptance": ["CRUD and pending-deliveries query are tested"],
            "tags": ["storage"],
        },
        {
            "id": "T-WH-03",
            "title": "WebhookWorker: goroutine pool + HTTP delivery",
            "description": "A semaphore per endpoint keeps each endpoint at 5 deliveries at once.",
            "depends_on": ["T-WH-02"],
            "files": ["internal/worker/webhook_worker.go"],
            "tags": ["delivery"],
        },
        {
            "id": "T-WH-04",
            "title": "RetryScheduler: backoff + requeue logic",
            "description": "Delays of 1s, 2s, 4s, 8s and 16s; webhook.failed after the fifth "
            "attempt.",
            "depends_on": ["T-WH-03"],
            "files": ["internal/scheduler/retry_scheduler.go"],
            "estimate": 3,
            "tags": ["delivery"],
        },
        {
            "id": "T-WH-05",
            "title": "EventBus integration: subscribe job.completed \u2192 enqueue",
            "depends_on": ["T-WH-03"],
            "files": ["internal/eventbus/dispatcher.go"],
            "priority": "low",
            "tags": ["delivery"],
        },
        {
            "id": "T-WH-06",
            "title": "Tests: unit + integration",
            "description": "Unit tests for the worker and the scheduler, and one end-to-end "
            "delivery\nto a local HTTP server.",
            "depends_on": ["T-WH-03", "T-WH-04", "T-WH-05"],
            "files": ["internal/worker/webhook_worker_test.go"],
            "acceptance": [
                "go test ./... passes",
                "the integration suite delivers to a local HTTP server",
            ],
        },
    ],
    "checkpoints": [
        {"id": "CP-WH", "title": "All tasks + integration tests passing", "after": ["T-WH-06"]}
    ],
    "risks": [
        {
            "issue": "Endpoint floods",
            "mitigation": "5 concurrent deliveries per endpoint",
            "likelihood": "medium",
            "impact": "high",
        },
        {
            "issue": "Lost deliveries on a crash",
            "mitigation": "pending deliveries live in SQLite, not in memory",
        },
    ],
}


def parse(md: str) -> dict[str, object]:
    return parse_markdown_plan(textwrap.dedent(md), "p")


def tasks(md: str) -> list[dict[str, object]]:
    result = parse(md)["tasks"]
    assert isinstance(result, list)
    return result


def test_webhook_plan() -> None:
    plan = parse_markdown_plan(WEBHOOKS_MD, "webhooks")
    assert plan == WEBHOOKS
    assert list(plan) == list(WEBHOOKS)
    assert [list(task) for task in plan["tasks"]] == [list(t) for t in WEBHOOKS["tasks"]]


def test_webhook_plan_with_crlf_and_bom() -> None:
    text = "\ufeff" + WEBHOOKS_MD.replace("\n", "\r\n")
    assert parse_markdown_plan(text, "webhooks") == WEBHOOKS


# Title, goal, tags, description.


@pytest.mark.parametrize(
    ("md", "title"),
    [
        ("# Ship it\n- [ ] a\n", "Ship it"),
        ("# Ship it #\n- [ ] a\n", "Ship it"),
        ("Some intro.\n\n# Ship it\n- [ ] a\n", "Ship it"),
        ("- [ ] a\n", "p"),
        ("## Not a title\n- [ ] a\n", "p"),
    ],
)
def test_title(md: str, title: str) -> None:
    assert parse(md)["title"] == title


@pytest.mark.parametrize(
    ("md", "goal", "description"),
    [
        ("# T\nGoal: deliver events\n- [ ] a\n", "deliver events", None),
        ("# T\ngoal:   deliver events  \n- [ ] a\n", "deliver events", None),
        ("# T\n**Goal:** deliver events\n- [ ] a\n", "deliver events", None),
        ("# T\n**Goal**: deliver events\n- [ ] a\n", "deliver events", None),
        ("# T\nGoal: deliver\nevents\n- x\n\nMore.\n- [ ] a\n", "deliver events", "- x\n\nMore."),
        ("# T\nDeliver\nevents.\n\nMore text.\n- [ ] a\n", "Deliver events.", "More text."),
        ("# T\nIntro.\n\nGoal: deliver\n- [ ] a\n", "deliver", "Intro."),
        ("# T\nIntro.\n\nGoal:\nDeliver\nevents.\n- [ ] a\n", "Deliver events.", "Intro."),
        (
            "# T\nIntro.\n## Goal\nDeliver events.\n\nWhy.\n## A\n",
            "Deliver events.",
            "Intro.\n\nWhy.",
        ),
        ("# T\n## Goal\nGoal: deliver\n## A\n", "deliver", None),
        ("# T\n- x\n- y\n\nDeliver.\n- [ ] a\n", "Deliver.", "- x\n- y"),
        ("# T\n- [ ] a\n", None, None),
        ("# T\n## A\nGoal: not the plan's\n", None, None),
        ("# T\n- [ ] a\n## Notes\nSee\n  the ADR.\n", None, "See\n  the ADR."),
    ],
)
def test_goal_and_description(md: str, goal: str | None, description: str | None) -> None:
    plan = parse(md)
    assert plan.get("goal") == goal
    assert plan.get("description") == description


@pytest.mark.parametrize(
    ("md", "tags"),
    [
        ("# T\nTags: backend, go\n- [ ] a\n", ["backend", "go"]),
        ("# T\n**Tags:** `backend`; #go, backend\n- [ ] a\n", ["backend", "go"]),
        ("# T\n- [ ] a\n", None),
    ],
)
def test_plan_tags(md: str, tags: list[str] | None) -> None:
    assert parse(md).get("tags") == tags


# Scope and risks.


@pytest.mark.parametrize(
    ("md", "scope"),
    [
        (
            """\
            ## Scope
            Included:
            - a
            - b
            Excluded:
            - c
            Assumptions:
            - d
            Constraints:
            - e
            """,
            {"included": ["a", "b"], "excluded": ["c"], "assumptions": ["d"], "constraints": ["e"]},
        ),
        (
            """\
            ## Scope
            ### Excluded
            - c
            ### Included
            - a
            """,
            {"included": ["a"], "excluded": ["c"]},
        ),
        (
            """\
            ## Scope
            - Unlabelled goes in
            - **Out of scope:**
              - c
            Constraints: x, y
            """,
            {"included": ["Unlabelled goes in"], "excluded": ["c"], "constraints": ["x", "y"]},
        ),
    ],
)
def test_scope(md: str, scope: dict[str, list[str]]) -> None:
    plan = parse(md + "## Task\n")
    assert plan["scope"] == scope
    assert tasks(md + "## Task\n") == [{"id": "T-01", "title": "Task"}]


@pytest.mark.parametrize(
    ("item", "risk"),
    [
        ("- Floods — rate limit", {"issue": "Floods", "mitigation": "rate limit"}),
        ("- Floods \u2013 rate limit", {"issue": "Floods", "mitigation": "rate limit"}),
        ("- Floods -- rate limit", {"issue": "Floods", "mitigation": "rate limit"}),
        ("- Floods - rate limit", {"issue": "Floods", "mitigation": "rate limit"}),
        ("- Floods", {"issue": "Floods"}),
        (
            "- Floods (likelihood: High, impact: low)",
            {"issue": "Floods", "likelihood": "high", "impact": "low"},
        ),
        (
            "- Floods\n  - mitigation: rate limit\n  - likelihood: low",
            {"issue": "Floods", "mitigation": "rate limit", "likelihood": "low"},
        ),
    ],
)
def test_risks(item: str, risk: dict[str, str]) -> None:
    assert parse(f"## Risks\n{item}\n## Task\n")["risks"] == [risk]


# Tasks from checklists and headings.


@pytest.mark.parametrize(
    "line",
    ["- [ ] Do it", "- [x] Do it", "- [X] Do it", "* [ ] Do it", "+ [ ] Do it", "1. [ ] Do it"],
)
def test_checklist_items_are_tasks(line: str) -> None:
    assert tasks(f"# T\n{line}\n") == [{"id": "T-01", "title": "Do it"}]


def test_plain_list_items_are_not_tasks() -> None:
    assert tasks("# T\n- not a task\n- [ ] task\n") == [{"id": "T-01", "title": "task"}]


def test_headings_with_checklists_group_them() -> None:
    md = """\
    # T
    - [ ] Top
    ## Backend API
    Text under a group is not kept.
    - [ ] A
    ### Store (v2)
    - [ ] B
    ## Frontend
    - [ ] C
    """
    assert tasks(md) == [
        {"id": "T-01", "title": "Top"},
        {"id": "T-02", "title": "A", "tags": ["backend-api"]},
        {"id": "T-03", "title": "B", "tags": ["backend-api", "store-v2"]},
        {"id": "T-04", "title": "C", "tags": ["frontend"]},
    ]


def test_headings_without_checklists_are_tasks() -> None:
    md = """\
    # T
    ## Schema
    Write the
    migration.

    - with an index
    ## Phase 2
    ### Worker
    ### Scheduler
    The backoff.
    ## Wrap up
    """
    assert tasks(md) == [
        {
            "id": "T-01",
            "title": "Schema",
            "description": "Write the\nmigration.\n\n- with an index",
        },
        {"id": "T-02", "title": "Worker", "tags": ["phase-2"]},
        {"id": "T-03", "title": "Scheduler", "description": "The backoff.", "tags": ["phase-2"]},
        {"id": "T-04", "title": "Wrap up"},
    ]


@pytest.mark.parametrize(
    "heading", ["Scope", "Risks", "Goal", "Checkpoints", "Notes", "notes:", "**Risks**"]
)
def test_special_headings_are_not_tasks(heading: str) -> None:
    md = f"# T\n## {heading}\n- [ ] not a task\n### Sub\n- [ ] nor this\n## Real\n"
    assert tasks(md) == [{"id": "T-01", "title": "Real"}]


def test_special_section_inside_a_group_keeps_the_group() -> None:
    md = "## Backend\n- [ ] A\n### Notes\n- [ ] not a task\n### Store\n- [ ] B\n"
    assert tasks(md) == [
        {"id": "T-01", "title": "A", "tags": ["backend"]},
        {"id": "T-02", "title": "B", "tags": ["backend", "store"]},
    ]


def test_fenced_code_is_text() -> None:
    md = """\
    ## Deploy
    ```sh
    # not a heading
    - [ ] not a task
    ```
    - [ ] Check
      ```
      ## still text
      ```
    """
    assert tasks(md) == [
        {
            "id": "T-01",
            "title": "Check",
            "description": "```\n## still text\n```",
            "tags": ["deploy"],
        }
    ]


def test_nested_checklist_items_are_tasks() -> None:
    md = "- [ ] Parent\n  Parent text.\n  - [ ] Child\n    Child text.\n  More parent text.\n"
    assert tasks(md) == [
        {"id": "T-01", "title": "Parent", "description": "Parent text.\nMore parent text."},
        {"id": "T-02", "title": "Child", "description": "Child text."},
    ]


# Ids.


@pytest.mark.parametrize(
    ("line", "task_id", "title"),
    [
        ("T-1: Title", "T-1", "Title"),
        ("T-WH-01: DB schema: tables", "T-WH-01", "DB schema: tables"),
        ("**T-1** Title", "T-1", "Title"),
        ("**T-1:** Title", "T-1", "Title"),
        ("**T-1**: Title", "T-1", "Title"),
        ("**T-1** — Title", "T-1", "Title"),
        ("[T-1] Title", "T-1", "Title"),
        ("[step-2] Title", "step-2", "Title"),
        ("`T-1` Title", "T-1", "Title"),
        ("1.2: Title", "1.2", "Title"),
        ("CP_X: Title", "CP_X", "Title"),
        ("Docs: update the README", None, "Docs: update the README"),
        ("DB schema: tables", None, "DB schema: tables"),
        ("Follow-up: tidy", None, "Follow-up: tidy"),
        ("v2: migrate", None, "v2: migrate"),
        ("**Important** do it", None, "**Important** do it"),
        ("[WIP] Title", None, "[WIP] Title"),
        ("[T 1] Title", None, "[T 1] Title"),
        ("See http://x.org/T-1: docs", None, "See http://x.org/T-1: docs"),
    ],
)
def test_explicit_ids(line: str, task_id: str | None, title: str) -> None:
    assert tasks(f"- [ ] {line}\n") == [{"id": task_id or "T-01", "title": title}]


def test_heading_tasks_take_ids_too() -> None:
    assert tasks("## [T-9] Tests\n") == [{"id": "T-9", "title": "Tests"}]


def test_generated_ids_skip_explicit_ones() -> None:
    md = "- [ ] a\n- [ ] T-02: b\n- [ ] c\n- [ ] T-03: d\n- [ ] e\n"
    assert [t["id"] for t in tasks(md)] == ["T-01", "T-02", "T-04", "T-03", "T-05"]


def test_many_generated_ids() -> None:
    ids = [t["id"] for t in tasks("".join(f"- [ ] task {n}\n" for n in range(101)))]
    assert ids[0] == "T-01" and ids[98] == "T-99" and ids[99:] == ["T-100", "T-101"]


# Attributes under an item.


@pytest.mark.parametrize(
    "line",
    [
        "depends on: T-1",
        "Depends On: T-1",
        "depends_on: T-1",
        "depends: T-1",
        "after: T-1",
        "needs: T-1",
        "NEEDS:T-1",
        "- depends on: T-1",
        "* **Depends on:** T-1",
        "**depends on**: `T-1`",
    ],
)
def test_dependency_lines(line: str) -> None:
    md = f"- [ ] T-1: One\n- [ ] Two\n  {line}\n"
    assert tasks(md)[1] == {"id": "T-01", "title": "Two", "depends_on": ["T-1"]}


@pytest.mark.parametrize(
    "suffix", ["(depends on: T-1)", "(Depends on: T-1)", "(after: T-1)", "(needs:T-1)  "]
)
def test_inline_dependencies(suffix: str) -> None:
    md = f"- [ ] T-1: One\n- [ ] Two {suffix}\n"
    assert tasks(md)[1] == {"id": "T-01", "title": "Two", "depends_on": ["T-1"]}


def test_inline_parentheses_that_are_not_dependencies_stay_in_the_title() -> None:
    assert tasks("- [ ] Tidy (after lunch)\n") == [{"id": "T-01", "title": "Tidy (after lunch)"}]


@pytest.mark.parametrize(
    ("deps", "expected"),
    [
        ("T-1, T-2", ["T-1", "T-2"]),
        ("T-2; T-1, T-2", ["T-2", "T-1"]),
        ("set up the  DB", ["T-1"]),
        ("Write the API", ["T-2"]),
        ("CP-1", ["CP-1"]),
        ("auth/T-7, billing/setup", ["auth/T-7", "billing/setup"]),
    ],
)
def test_dependency_targets(deps: str, expected: list[str]) -> None:
    md = f"""\
    - [ ] T-1: Set up the DB
    - [ ] T-2: Write the API
    - [ ] Ship
      depends on: {deps}
    ## Checkpoints
    - CP-1: Reviewed
    """
    assert tasks(md)[2]["depends_on"] == expected


def test_dependencies_on_later_tasks_by_title() -> None:
    md = "- [ ] First (after: the last one)\n- [ ] The last one\n"
    assert tasks(md)[0]["depends_on"] == ["T-02"]


def test_dependency_list_under_an_empty_attribute() -> None:
    md = """\
    - [ ] T-1: One
    - [ ] T-2: Two
    - [ ] Three
      depends on:
        - T-1
        - T-2
      files:
      - a.py
      acceptance:
        - [ ] it works
        - it is fast
      Then the description.
    """
    assert tasks(md)[2] == {
        "id": "T-01",
        "title": "Three",
        "description": "Then the description.",
        "depends_on": ["T-1", "T-2"],
        "files": ["a.py"],
        "acceptance": ["it works", "it is fast"],
    }


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["files: a.py, `b/c.py`", "files: a.py"], {"files": ["a.py", "b/c.py"]}),
        (
            ["acceptance: one, with a comma", "Acceptance: two"],
            {"acceptance": ["one, with a comma", "two"]},
        ),
        (["acceptance criteria: one"], {"acceptance": ["one"]}),
        (["priority: HIGH"], {"priority": "high"}),
        (["priority: **medium**"], {"priority": "medium"}),
        (["estimate: 2h"], {"estimate": "2h"}),
        (["estimate: 3"], {"estimate": 3}),
        (["estimate: 1.5"], {"estimate": 1.5}),
        (["tags: db, #slow"], {"tags": ["db", "slow"]}),
        (
            ["Some text.", "", "  More text:", "files: a.py"],
            {"description": "Some text.\n\n  More text:", "files": ["a.py"]},
        ),
        (["run: make test"], {"description": "run: make test"}),
    ],
)
def test_item_attributes(lines: list[str], expected: dict[str, object]) -> None:
    body = "".join(f"  {line}\n" if line else "\n" for line in lines)
    assert tasks(f"- [ ] Task\n{body}") == [{"id": "T-01", "title": "Task", **expected}]


def test_heading_task_attributes() -> None:
    md = """\
    ## Build (depends on: Design)
    The build.
    - files: a.py
    **Priority:** low
    estimate: 1d
    ## Design
    """
    assert tasks(md)[0] == {
        "id": "T-01",
        "title": "Build",
        "description": "The build.",
        "depends_on": ["T-02"],
        "files": ["a.py"],
        "priority": "low",
        "estimate": "1d",
    }


def test_task_keys_keep_their_order() -> None:
    md = (
        "- [ ] T-1: A\n- [ ] B\n  tags: x\n  estimate: 1\n  priority: low\n  acceptance: ok\n"
        "  files: f\n  after: T-1\n  Text.\n"
    )
    assert list(tasks(md)[1]) == [
        "id",
        "title",
        "description",
        "depends_on",
        "files",
        "acceptance",
        "priority",
        "estimate",
        "tags",
    ]


def test_group_tags_come_before_task_tags() -> None:
    assert tasks("## Backend\n- [ ] A\n  tags: db, backend\n")[0]["tags"] == ["backend", "db"]


# Checkpoints.


def test_checkpoints() -> None:
    md = """\
    - [ ] T-1: Schema
    - [ ] Store
    ## Checkpoints
    - CP-1: Store ready (after: T-1, store)
    - [ ] Everything reviewed
      after: CP-1
    - **CP-9** No deps
    """
    assert parse(md)["checkpoints"] == [
        {"id": "CP-1", "title": "Store ready", "after": ["T-1", "T-01"]},
        {"id": "CP-01", "title": "Everything reviewed", "after": ["CP-1"]},
        {"id": "CP-9", "title": "No deps"},
    ]


def test_plan_without_optional_parts_has_only_required_keys() -> None:
    assert parse("- [ ] a\n") == {"id": "p", "title": "p", "tasks": [{"id": "T-01", "title": "a"}]}


# Errors.


@pytest.mark.parametrize(
    ("md", "message"),
    [
        (
            "# T\n- [ ] One\n- [ ] Two\n- [ ] Three\n  depends on: Foo\n",
            (
                "plan.md:5: task T-03 depends on 'Foo', which is neither a task id nor a title; "
                "use a task or checkpoint id, or a task's exact title"
            ),
        ),
        (
            "- [ ] One (after: T-9)\n",
            "plan.md:1: task T-01 depends on 'T-9', which is neither a task id nor a title;",
        ),
        (
            "- [ ] A\n## Checkpoints\n- CP-1: Done (after: Nope)\n",
            "plan.md:3: checkpoint CP-1 comes after 'Nope', which is neither a task id nor a title",
        ),
        (
            "- [ ] T-1: A\n\n- [ ] T-1: B\n",
            "plan.md:3: id T-1 is already used on line 1; give each task and checkpoint its own id",
        ),
        (
            "## T-1: A\n## Checkpoints\n- T-1: B\n",
            "plan.md:3: id T-1 is already used on line 1;",
        ),
        (
            "# Title\n\nJust text.\n",
            "plan.md:1: no tasks found; add checklist items ('- [ ] Title') or '## Title' sections",
        ),
        ("", "plan.md:1: no tasks found;"),
        ("## Notes\n- [ ] a\n", "plan.md:1: no tasks found;"),
        ("\n- [ ] [T/1] A\n", "plan.md:2: invalid id 'T/1': use letters, digits, '.', '_' or '-'"),
        ("- [ ] **_T1** A\n", "plan.md:1: invalid id '_T1':"),
        ("- [ ] T..1: A\n", "plan.md:1: invalid id 'T..1':"),
        (f"- [ ] {'T-' + '1' * 63}: A\n", "plan.md:1: invalid id 'T-111"),
        ("## Checkpoints\n- [C/1] x\n## A\n", "plan.md:2: invalid id 'C/1':"),
        (
            "- [ ] Same\n- [ ] Same\n- [ ] C (after: same)\n",
            (
                "plan.md:3: task T-03 depends on 'same', which is the title of T-01, T-02; "
                "use one of those ids"
            ),
        ),
        ("- [ ] A\n  after: a\n", "plan.md:2: task T-01 depends on itself; remove that dependency"),
        (
            "- [ ] A\n  after: x/y/z\n",
            "plan.md:2: task T-01 depends on 'x/y/z', which is not a valid",
        ),
        (
            "- [ ] A\n  priority: urgent\n",
            "plan.md:2: priority 'urgent' is not high, medium or low",
        ),
        ("## Risks\n- X (likelihood: huge)\n## A\n", "plan.md:2: risk likelihood 'huge' is not"),
        ("- [ ]\n", "plan.md:1: task T-01 has no title; write one"),
        ("- [ ] T-1:\n", "plan.md:1: task T-1 has no title"),
    ],
)
def test_errors(md: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_markdown_plan(md, "p")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_errors_name_the_source() -> None:
    with pytest.raises(ValueError, match=r"^docs/plan\.md:1: no tasks found"):
        parse_markdown_plan("", "p", source="docs/plan.md")


@pytest.mark.parametrize("plan_id", ["", "a b", "../x", "-x"])
def test_invalid_plan_id(plan_id: str) -> None:
    with pytest.raises(ValueError, match="invalid plan id"):
        parse_markdown_plan("- [ ] a\n", plan_id)


def test_checkpoint_after_as_a_list() -> None:
    md = "- [ ] T-1: A\n- [ ] B\n## Checkpoints\n- CP-1: Done\n  after:\n    - T-1\n    - b\n"
    assert parse(md)["checkpoints"] == [{"id": "CP-1", "title": "Done", "after": ["T-1", "T-01"]}]


def test_the_example_in_the_docs() -> None:
    yaml = pytest.importorskip("ruamel.yaml")
    doc = (Path(__file__).parent.parent / "docs" / "markdown-plans.md").read_text("utf-8")
    markdown = re.search(r"```markdown\n(.*?)```\n", doc, re.DOTALL)
    expected = re.search(r"```yaml\n(.*?)```\n", doc, re.DOTALL)
    assert markdown and expected
    plan = parse_markdown_plan(markdown[1], "webhooks")
    assert plan == yaml.YAML(typ="safe").load(expected[1])
