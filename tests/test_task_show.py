"""`flowgit task show` and `claim --context`: a task with everything an agent needs in one call,
its `prompt` exactly the text `flowgit run` gives an executor."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import Repo, copy_repo, init_repo, prebuilt

PLAN = """\
id: shop
title: Shop checkout
goal: Customers pay by card
scope:
  included: [card payments]
  excluded: [refunds]
adrs: [ADR-0001]
tasks:
  - id: T-1
    title: Payment table
    acceptance: ["migration runs twice without error"]
    files: [db/payments.sql]
  - id: T-2
    title: Charge the card
    description: |
      Call the provider.
      Retry on timeouts.
    depends_on: [T-1]
    files: [src/charge.py]
    acceptance: ["a declined card is reported", "a timeout is retried"]
    priority: high
checkpoints:
  - id: CP-1
    after: [T-2]
"""

SPEC = """\
plan: shop
requirements:
  - id: R-1
    kind: event_driven
    text: When a card is declined, the shop shall say why
    tasks: [T-2]
  - id: R-2
    kind: ubiquitous
    text: The shop shall store every payment
    tasks: [T-1]
  - id: R-3
    kind: ubiquitous
    text: The shop shall log in UTC
questions:
  - id: Q-1
    question: Which provider?
    options: [Stripe, Adyen]
  - id: Q-2
    question: Currency?
    answer: EUR only
"""

ADR = """\
id: ADR-0001
title: Use the provider's hosted fields
status: accepted
decision: Card numbers never reach our servers
"""


def _build_shop(repo: Repo) -> None:
    repo.write(".flow/adrs/ADR-0001-hosted-fields.yaml", ADR)
    repo.git("add", ".flow")
    repo.git("commit", "-q", "-m", "test: an ADR")
    repo.plan("shop", PLAN)
    repo.write(".flow/plans/shop/spec.yaml", SPEC)
    repo.git("add", ".flow")
    repo.git("commit", "-q", "-m", "test: the spec")
    repo.ok("submit", "shop")


@pytest.fixture(scope="module")
def _shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prebuilt(tmp_path_factory, _build_shop)


@pytest.fixture
def shop(_shop: Path, tmp_path: Path) -> Repo:
    return copy_repo(_shop, tmp_path / "repo")


def test_json_has_every_field_of_the_contract(shop: Repo) -> None:
    shop.ok("claim", "shop/T-1", "--worker", "w1")
    shop.ok("done", "shop/T-1", "--worker", "w1", "--note", "table payments, index on order_id")
    ctx = shop.ok("--json", "task", "show", "shop/T-2").json
    assert {"task", "title", "state", "plan", "description", "acceptance", "files", "depends_on",
            "spec", "adrs", "prompt"} <= set(ctx)
    assert ctx["task"] == "shop/T-2" and ctx["title"] == "Charge the card" and ctx["state"] == "ready"
    assert ctx["plan"] == {"id": "shop", "title": "Shop checkout", "goal": "Customers pay by card",
                           "scope": {"included": ["card payments"], "excluded": ["refunds"]},
                           "phase": "execute"}
    assert ctx["description"] == "Call the provider.\nRetry on timeouts.\n"
    assert ctx["acceptance"] == ["a declined card is reported", "a timeout is retried"]
    assert ctx["files"] == ["src/charge.py"]
    assert ctx["depends_on"] == [{"task": "T-1", "state": "done",
                                  "note": "table payments, index on order_id"}]
    # the requirements that name the task, and only the open questions
    assert [r["id"] for r in ctx["spec"]["requirements"]] == ["R-1"]
    assert ctx["spec"]["questions"] == [{"id": "Q-1", "question": "Which provider?",
                                         "options": ["Stripe", "Adyen"]}]
    assert ctx["adrs"] == [{"id": "ADR-0001", "title": "Use the provider's hosted fields",
                            "status": "accepted", "decision": "Card numbers never reach our servers"}]
    t1 = shop.ok("--json", "task", "show", "T-1").json
    assert [r["id"] for r in t1["spec"]["requirements"]] == ["R-2"]
    assert t1["state"] == "done" and t1["depends_on"] == []
    # --format json is the same object as --json
    assert json.loads(shop.ok("task", "show", "shop/T-2", "--format", "json").out) == ctx


def test_prompt_is_exactly_what_run_gives_the_executor(shop: Repo, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    # it also changes the task's file: an exit 0 that changes none of a task's files fails
    copy = ("import os, shutil, sys; shutil.copy(os.environ['FLOWGIT_PROMPT_FILE'], "
            "os.path.join(sys.argv[1], os.environ['FLOWGIT_TASK'])); "
            "f = os.environ['FLOWGIT_FILES'].split()[0]; os.makedirs(os.path.dirname(f), exist_ok=True); "
            "open(f, 'a').write('# paid\\n')")
    cfg = shop.path / ".flow" / "config.yaml"
    argv = [sys.executable, "-c", copy, str(seen)]
    cfg.write_text(cfg.read_text().replace("executors: {}\n", "")
                   .replace("default_executor: shell", "default_executor: copy")
                   + f"executors:\n  copy:\n    argv: {json.dumps(argv)}\n")
    shop.git("commit", "-q", "-am", "test: an executor that keeps its prompt")
    shop.ok("trust")
    shop.ok("claim", "shop/T-1", "--worker", "w1")
    shop.ok("done", "shop/T-1", "--worker", "w1", "--note", "table payments")
    before = shop.ok("--json", "task", "show", "shop/T-2").json["prompt"]
    shop.ok("run", "shop", "-n", "1")
    given = (seen / "T-2").read_text()
    assert given == before
    # everything the issue lists reaches it: goal, scope, requirements, ADRs, acceptance, files, notes
    for text in ("Customers pay by card", "refunds", "R-1", "ADR-0001", "a timeout is retried",
                 "src/charge.py", "T-1: table payments"):
        assert text in given


def test_text_and_markdown(shop: Repo) -> None:
    text = shop.ok("task", "show", "T-2").out
    assert text.startswith("shop/T-2: Charge the card\nstate: pending\n")
    assert "  - T-1 (ready)" in text and "Which provider? [Stripe | Adyen]" in text
    assert "Currency" not in text  # answered questions are not open
    assert "description:\n  Call the provider.\n  Retry on timeouts." in text
    assert 'flowgit done shop/T-2 --note "what changed"' in text
    md = shop.ok("task", "show", "T-2", "--format", "markdown").out
    assert md.startswith("# shop/T-2: Charge the card\n")
    assert "## Acceptance criteria\n\n- [ ] a declined card is reported\n" in md
    assert "## Architecture decisions\n\n- ADR-0001 Use the provider's hosted fields [accepted]" in md


def test_claim_context_returns_the_same_object(shop: Repo) -> None:
    res = shop.ok("--json", "claim", "shop", "--worker", "w1", "--context").json
    assert res["task"] == "shop/T-1" and res["worker"] == "w1" and "lease_until" in res
    ctx = res["context"]
    shown = shop.ok("--json", "task", "show", "shop/T-1").json
    assert ctx == shown
    assert ctx["state"] == "claimed" and ctx["worker"] == "w1"
    nothing = shop.run("--json", "claim", "shop", "--worker", "w2", "--context")
    assert nothing.code == 3 and nothing.json["error"]["code"] == "nothing_ready"
    text = shop.run("claim", "shop/T-2", "--worker", "w3", "--context")
    assert text.code == 1  # T-2 waits on T-1: nothing printed but the refusal
    shop.ok("done", "shop/T-1", "--worker", "w1", "--note", "done")
    text = shop.ok("claim", "shop/T-2", "--worker", "w3", "--context").out
    first, rest = text.split("\n", 1)
    assert first.startswith("claimed shop/T-2 until ")
    assert rest.startswith("\nshop/T-2: Charge the card\nstate: claimed by w3 until ")
    assert "T-1 (done): done" in rest and "--worker w3" in rest


def test_claim_without_context_keeps_its_fields(shop: Repo) -> None:
    res = shop.ok("--json", "claim", "shop", "--worker", "w1").json
    assert "context" not in res and set(res) >= {"task", "worker", "lease_until"}


@pytest.mark.parametrize("ref, code, words", [
    ("shop/T-9", 1, "plan shop has no task 'T-9'"),
    ("T-9", 1, "no plan has a task 'T-9'"),
    ("shop/CP-1", 1, "is a checkpoint, not a task"),
    ("nope/T-1", 1, "nope"),
    ("../x", 2, "invalid"),
    ("shop/T-1/x", 2, "invalid task reference"),
])
def test_bad_refs_are_one_line(shop: Repo, ref: str, code: int, words: str) -> None:
    before = shop.commits()
    res = shop.run("task", "show", ref)
    assert res.code == code, res.err
    assert res.out == "" and words in res.err and len(res.err.strip().splitlines()) == 1
    assert "Traceback" not in res.err
    err = shop.run("--json", "task", "show", ref)
    assert err.code == code and "error" in err.json
    assert shop.commits() == before


def test_task_show_runs_nothing_and_writes_nothing(shop: Repo) -> None:
    status = shop.git("status", "--porcelain")
    head = shop.git("rev-parse", "HEAD")
    shop.ok("task", "show", "shop/T-2")
    assert shop.git("status", "--porcelain") == status and shop.git("rev-parse", "HEAD") == head


def test_a_dependency_on_another_plan_shows_its_state_and_note(repo: Repo) -> None:
    repo.plan("base", "id: base\ntitle: Base\ntasks:\n  - id: B-1\n    title: Lay it\n")
    repo.plan("top", "id: top\ntitle: Top\ntasks:\n  - id: T-1\n    title: Build on it\n"
                     "    depends_on: [base/B-1]\n")
    repo.ok("submit", "base")
    repo.ok("submit", "top")
    repo.ok("claim", "base/B-1", "--worker", "w")
    repo.ok("done", "base/B-1", "--worker", "w", "--note", "laid")
    ctx = repo.ok("--json", "task", "show", "top/T-1").json
    assert ctx["depends_on"] == [{"task": "base/B-1", "state": "done", "note": "laid"}]
    assert ctx["spec"] == {"requirements": [], "questions": []} and ctx["adrs"] == []


def test_the_loop_in_format_2(tmp_path: Path) -> None:
    """With the event logs on the flow/state branch (what `flowgit init` makes now): the same
    context, notes and prime, and nothing of the loop in the work tree."""

    r = init_repo(tmp_path / "f2", "2")
    r.plan("shop", PLAN.replace("adrs: [ADR-0001]\n", ""))
    r.ok("submit", "shop")
    got = r.ok("--json", "claim", "shop", "--worker", "w1", "--context").json
    assert got["context"]["task"] == "shop/T-1" and got["context"]["state"] == "claimed"
    r.ok("done", "shop/T-1", "--worker", "w1", "--note", "table payments")
    ctx = r.ok("--json", "task", "show", "shop/T-2").json
    assert ctx["state"] == "ready" and ctx["depends_on"] == [{"task": "T-1", "state": "done", "note": "table payments"}]
    assert "- T-1: table payments" in ctx["prompt"]
    assert "## Ready (1)\n- shop/T-2: Charge the card" in r.ok("prime", "--worker", "w1").out
    assert not (r.path / ".flow" / "plans" / "shop" / "events").exists()


def test_format_json_errors_are_json(shop: Repo) -> None:
    res = shop.run("task", "show", "shop/T-9", "--format", "json")
    assert res.code == 1 and res.json["error"]["code"] == "not_found" and res.err == ""
