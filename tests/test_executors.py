"""Executors (issue 6): argv templates filled element by element, never a shell string built
from task text; which executor a task gets; what the prompt file tells an agent."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowgit.core.model import Config, Executor, Plan, Task
from flowgit.errors import FlowError
from flowgit.runner.executors import BUILTIN, argv_for, prompt_text, resolve, values_for

HOSTILE = "; rm -rf / $(touch pwned) `touch pwned2` \"quoted\" 'single' && echo $HOME | cat"


def make_plan(**plan_extra: object) -> Plan:
    data: dict[str, object] = {
        "id": "webhooks", "title": "Webhook delivery", "goal": "Deliver every event",
        "tasks": [
            {"id": "T1", "title": "Schema"},
            {"id": "T2", "title": "Store", "depends_on": ["T1"]},
        ],
    }
    data.update(plan_extra)
    return Plan.from_dict(data, "plan.yaml")


def task(**kw: object) -> Task:
    data: dict[str, object] = {"id": "T-1", "title": "A task"}
    data.update(kw)
    return Task.from_dict(data, "t")


def values(plan: Plan, t: Task, tmp: Path, prompt: str = "the prompt") -> dict[str, str]:
    return values_for(plan, t, tmp / "wt", tmp / "p.md", prompt, f"flow/{plan.id}/{t.id}", tmp, 2,
                      sys.executable)


# ----- argv_for -------------------------------------------------------------------------------

def test_placeholders_are_filled_per_element(tmp_path: Path) -> None:
    plan, t = make_plan(), task(title="Make the store")
    ex = Executor("x", ("agent", "--plan={plan}", "{task}", "{title}", "{worktree}", "@{prompt_file}",
                        "{branch}", "{attempt}", "{repo}", "{python}", "{unknown}", "literal"))
    argv = argv_for(ex, values(plan, t, tmp_path), t, plan.id)
    assert argv == ("agent", "--plan=webhooks", "T-1", "Make the store", str(tmp_path / "wt"),
                    f"@{tmp_path / 'p.md'}", "flow/webhooks/T-1", "2", str(tmp_path), sys.executable,
                    "{unknown}", "literal")


def test_run_placeholder_expands_to_the_task_run_argv(tmp_path: Path) -> None:
    plan = make_plan()
    t = task(run=["make", "test", "ARGS=a b"])
    ex = Executor("wrap", ("time", "{run}", "--after"))
    assert argv_for(ex, values(plan, t, tmp_path), t, plan.id) == ("time", "make", "test", "ARGS=a b", "--after")
    # the builtin shell executor is exactly the task's argv
    assert argv_for(BUILTIN["shell"], values(plan, t, tmp_path), t, plan.id) == ("make", "test", "ARGS=a b")


def test_run_as_a_string_is_split_like_a_shell_would_but_not_run_by_one(tmp_path: Path) -> None:
    plan = make_plan()
    t = task(run="pytest -q 'tests/a b.py' ; echo hi")
    argv = argv_for(BUILTIN["shell"], values(plan, t, tmp_path), t, plan.id)
    assert argv == ("pytest", "-q", "tests/a b.py", ";", "echo", "hi")


def test_shell_executor_without_run_is_an_error(tmp_path: Path) -> None:
    plan, t = make_plan(), task()
    with pytest.raises(FlowError) as err:
        argv_for(BUILTIN["shell"], values(plan, t, tmp_path), t, plan.id)
    assert "webhooks/T-1" in err.value.message and "run" in err.value.message


def test_hostile_task_text_stays_literal_argv_data(tmp_path: Path) -> None:
    plan = make_plan()
    t = task(title=HOSTILE, description=HOSTILE)
    ex = Executor("x", ("agent", "{title}", "--title={title}", "-p", "{prompt}"))
    prompt = prompt_text(plan, t, None, {}, {})
    argv = argv_for(ex, values(plan, t, tmp_path, prompt), t, plan.id)
    assert len(argv) == 5
    assert argv[1] == HOSTILE
    assert argv[2] == "--title=" + HOSTILE
    assert argv[4] == prompt and HOSTILE in prompt
    # a value containing a placeholder is not expanded a second time
    t2 = task(title="{task} {worktree}")
    assert argv_for(Executor("x", ("{title}",)), values(plan, t2, tmp_path), t2, plan.id) == ("{task} {worktree}",)


def test_hostile_text_reaches_a_real_process_unchanged(tmp_path: Path) -> None:
    """Run the filled argv for real: the text arrives as one argument and nothing it names runs."""
    import json
    import subprocess

    plan = make_plan()
    t = task(title=HOSTILE, run=["echo", HOSTILE])
    script = tmp_path / "argv.py"
    script.write_text("import json, sys; print(json.dumps(sys.argv[1:]))\n")
    ex = Executor("x", (sys.executable, str(script), "{title}", "{run}"))
    argv = argv_for(ex, values(plan, t, tmp_path), t, plan.id)
    out = subprocess.run(list(argv), cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [HOSTILE, "echo", HOSTILE]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_builtin_agent_templates_take_the_prompt_as_one_argument(tmp_path: Path) -> None:
    plan, t = make_plan(), task(title=HOSTILE)
    prompt = prompt_text(plan, t, None, {}, {})
    for name in ("claude", "codex", "gemini"):
        argv = argv_for(BUILTIN[name], values(plan, t, tmp_path, prompt), t, plan.id)
        assert argv[0] == name
        assert argv.count(prompt) == 1, (name, argv)
    demo = argv_for(BUILTIN["demo"], values(plan, t, tmp_path, prompt), t, plan.id)
    assert demo == (sys.executable, "-m", "flowgit.demo_executor", str(tmp_path / "p.md"))


# ----- resolve --------------------------------------------------------------------------------

def _config(**kw: object) -> Config:
    data: dict[str, object] = {
        "executors": {
            "cfg-default": {"argv": ["a"]}, "plan-ex": {"argv": ["b"]}, "task-ex": {"argv": ["c"]},
            "cli-ex": {"argv": ["d"], "env": {"K": "v"}, "timeout": 7},
        },
        "default_executor": "cfg-default",
    }
    data.update(kw)
    return Config.from_dict(data, "config.yaml")


def test_resolve_order_task_then_plan_then_config_default() -> None:
    cfg = _config()
    plain = make_plan()
    with_plan = make_plan(executor="plan-ex")
    t_plain, t_own = task(), task(executor="task-ex")
    assert resolve(cfg, plain, t_plain, None).name == "cfg-default"
    assert resolve(cfg, with_plan, t_plain, None).name == "plan-ex"
    assert resolve(cfg, with_plan, t_own, None).name == "task-ex"
    assert resolve(cfg, plain, t_own, None).name == "task-ex"


def test_resolve_override_wins_and_carries_env_and_timeout() -> None:
    cfg = _config()
    ex = resolve(cfg, make_plan(executor="plan-ex"), task(executor="task-ex"), "cli-ex")
    assert (ex.name, ex.argv, dict(ex.env), ex.timeout) == ("cli-ex", ("d",), {"K": "v"}, 7.0)


def test_resolve_falls_back_to_builtins_and_config_overrides_them() -> None:
    assert resolve(Config(), make_plan(), task(), None) is BUILTIN["shell"]
    assert resolve(Config(), make_plan(), task(executor="claude"), None) is BUILTIN["claude"]
    cfg = Config.from_dict({"executors": {"claude": {"argv": ["my-claude", "{prompt_file}"]}}}, "c")
    assert resolve(cfg, make_plan(), task(executor="claude"), None).argv == ("my-claude", "{prompt_file}")


def test_resolve_unknown_names_the_known_ones() -> None:
    cfg = _config()
    for plan, t, override in ((make_plan(), task(executor="nope"), None),
                              (make_plan(executor="nope"), task(), None),
                              (make_plan(), task(), "nope")):
        with pytest.raises(FlowError) as err:
            resolve(cfg, plan, t, override)
        msg = err.value.message
        assert "'nope'" in msg and "webhooks/T-1" in msg
        for known in ("cfg-default", "plan-ex", "task-ex", "cli-ex", "shell", "demo", "claude", "codex", "gemini"):
            assert known in msg, (known, msg)


# ----- prompt_text ----------------------------------------------------------------------------

def test_prompt_holds_what_an_agent_needs() -> None:
    plan = make_plan(
        goal="Deliver each published event to every registered URL",
        scope={"included": ["HTTP delivery"], "excluded": ["gRPC"], "assumptions": ["Postgres 15"],
               "constraints": ["no new services"]},
        adrs=["ADR-0001"])
    t = task(id="T2", title="WebhookStore", description="CRUD for hooks", depends_on=["T1", "T0"],
             files=["internal/store/webhook_store.go"], acceptance=["CRUD is tested", "pending query is tested"],
             adrs=["ADR-0002"])
    spec = {"requirements": [
        {"id": "R1", "kind": "event_driven", "text": "When job.completed fires, deliver to all hooks"},
        {"id": "R2", "kind": "unwanted", "text": "If an endpoint fails, retry with backoff"}]}
    adrs = {"ADR-0001": {"title": "SQLite retry table", "status": "accepted", "decision": "Use SQLite"},
            "ADR-0002": {"title": "HMAC signatures", "status": "proposed", "decision": "Sign bodies"}}
    notes = {"T1": "table webhooks(id, url, secret) created in migration 0007"}
    text = prompt_text(plan, t, spec, adrs, notes)
    for expected in ("T2", "WebhookStore", "webhooks", "Webhook delivery",
                     "Deliver each published event to every registered URL",
                     "HTTP delivery", "gRPC", "Postgres 15", "no new services", "CRUD for hooks",
                     "R1", "event_driven", "When job.completed fires, deliver to all hooks",
                     "R2", "If an endpoint fails, retry with backoff",
                     "ADR-0001", "SQLite retry table", "accepted", "Use SQLite",
                     "ADR-0002", "HMAC signatures", "Sign bodies",
                     "CRUD is tested", "pending query is tested", "internal/store/webhook_store.go",
                     "T1", "table webhooks(id, url, secret) created in migration 0007"):
        assert expected in text, (expected, text)
    # the sections come in a readable order and acceptance criteria are a checklist
    assert text.index("## Goal") < text.index("## Scope") < text.index("## Acceptance criteria")
    assert "- [ ] CRUD is tested" in text
    assert text.endswith("\n")


def test_prompt_without_optional_parts_is_still_well_formed() -> None:
    plan = Plan.from_dict({"id": "p", "title": "P", "tasks": [{"id": "a", "title": "Alpha"}]}, "p")
    text = prompt_text(plan, plan.tasks[0], None, {}, {})
    assert text.startswith("# Task a: Alpha")
    for absent in ("## Goal", "## Scope", "## Requirements", "## Architecture decisions",
                   "## Acceptance criteria", "## Files", "## Notes"):
        assert absent not in text
