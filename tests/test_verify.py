"""Agent work is checked before it lands (issue 15): a task's or plan's trusted `verify:` runs in
the task's worktree before the merge, an exit 0 that changed none of a task's files fails, and
the next attempt's prompt carries what the check printed and what the attempt changed. A
trusted `worktree.setup` and `worktree.copy` prepare each fresh worktree; `run --verify`
commits agent work through the project's own hooks.

Every run is a real `flowgit run` process with a small Python executor in a real repository."""
from __future__ import annotations

import json
import os
import re
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

from helpers import Repo

EXECUTOR = '''\
import json, os, sys
from pathlib import Path
CTL = Path(sys.argv[1])
TASK, ATTEMPT = os.environ["FLOWGIT_TASK"], int(os.environ["FLOWGIT_ATTEMPT"])
(CTL / f"{TASK}.{ATTEMPT}.prompt.md").write_text(Path(os.environ["FLOWGIT_PROMPT_FILE"]).read_text())
def log(kind, **kw):
    with open(CTL / "events.jsonl", "a") as f:
        f.write(json.dumps({"task": TASK, "attempt": ATTEMPT, "kind": kind, **kw}) + "\\n")
'''


def use_executor(repo: Repo, tmp_path: Path, body: str, config_extra: str = "") -> Path:
    ctl = tmp_path / "ctl"
    ctl.mkdir(exist_ok=True)
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR + textwrap.dedent(body))
    cfg = repo.path / ".flow" / "config.yaml"
    text = cfg.read_text().replace("executors: {}\n", "")
    text = re.sub(r"(?m)^default_executor: .*$", "default_executor: script", text)
    text = re.sub(r"(?m)^  base: 1 .*$", "  base: 0", text)  # retries at once
    text += (f"executors:\n  script:\n    argv: {json.dumps([sys.executable, str(script), str(ctl)])}\n"
             + config_extra)
    cfg.write_text(text)
    repo.git("commit", "-q", "-am", "test: the script executor")
    repo.ok("trust")
    return ctl


def plan_yaml(*tasks: str, extra: str = "") -> str:
    return ("id: p\ntitle: Verify test\ngoal: Check work before it lands\n" + extra + "tasks:\n"
            + "".join(f"  - {t}\n" for t in tasks))


def events(repo: Repo, task: str) -> list[dict[str, Any]]:
    return json.loads(repo.ok("events", "p", task, "--json").out)["events"]


def seen(ctl: Path) -> list[dict[str, Any]]:
    path = ctl / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


CHECK = f"[{json.dumps(sys.executable)}, check.py]"  # runs in the task's worktree


def add_check(repo: Repo) -> None:
    repo.write("check.py", textwrap.dedent("""\
        import sys
        from pathlib import Path
        text = Path("out.txt").read_text().strip() if Path("out.txt").exists() else "(none)"
        print("checking out.txt")
        if text != "good":
            print(f"expected good, got {text}")
            sys.exit(1)
        """))
    repo.git("add", "check.py")
    repo.git("commit", "-q", "-m", "test: the check")


def test_a_failing_verify_retries_with_its_output_and_the_diff_stat_in_the_prompt(repo: Repo, tmp_path: Path) -> None:
    add_check(repo)
    ctl = use_executor(repo, tmp_path, """\
        Path("out.txt").write_text("bad\\n" if ATTEMPT == 1 else "good\\n")
        log("ran")
        """)
    repo.plan("p", plan_yaml(f"{{id: A, title: Alpha, files: [out.txt], verify: {CHECK}}}"))
    res = repo.proc("run", "p", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["done"] == 1
    assert [r["attempt"] for r in seen(ctl)] == [1, 2]

    failed = [e for e in events(repo, "A") if e["type"] == "task.failed"]
    assert len(failed) == 1
    data = failed[0]["data"]
    assert data["error"].startswith("verify (") and "exit 1" in data["error"]
    assert data["check"].endswith("tasks[A].verify: " + " ".join([sys.executable, "check.py"]))
    assert "expected good, got bad" in data["check_output"]
    assert data["diff_stat"] == "out.txt | +1 -0"

    second = (ctl / "A.2.prompt.md").read_text()
    assert "## The previous attempt failed" in second
    assert "expected good, got bad" in second and "out.txt | +1 -0" in second
    assert "previous attempt" not in (ctl / "A.1.prompt.md").read_text()
    assert repo.git("show", "main:out.txt") == "good"  # only the verified work landed
    log = next(e["data"]["log"] for e in events(repo, "A") if e["type"] == "task.done")
    assert "$ verify:" in (repo.path / log).read_text()


def test_the_plans_verify_serves_tasks_without_their_own(repo: Repo, tmp_path: Path) -> None:
    add_check(repo)
    use_executor(repo, tmp_path, 'Path("out.txt").write_text("bad\\n")\n')
    repo.plan("p", plan_yaml("{id: A, title: Alpha, retry: {max_attempts: 1}}",
                             extra=f"verify: {CHECK}\n"))
    res = repo.proc("run", "p", "--json", timeout=60)
    assert res.returncode == 1
    assert json.loads(res.stdout)["failed"] == 1
    data = next(e for e in events(repo, "A") if e["type"] == "task.failed")["data"]
    assert data["check"].startswith(".flow/plans/p/plan.yaml verify: ")
    assert "out.txt" not in repo.git("ls-tree", "--name-only", "main")  # nothing merged
    assert repo.git("branch", "--list", "flow/*/*") == ""  # task branches (flow/state is no task)


def test_an_untrusted_verify_is_not_run(repo: Repo, tmp_path: Path) -> None:
    use_executor(repo, tmp_path, 'Path("out.txt").write_text("x\\n")\n')
    repo.plan("p", plan_yaml("{id: A, title: Alpha}"))
    plan = repo.path / ".flow/plans/p/plan.yaml"
    marker = tmp_path / "verify-ran"
    argv = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    plan.write_text(plan.read_text().replace("title: Alpha}", f"title: Alpha, verify: {json.dumps(argv)}}}"))
    repo.git("commit", "-q", "-am", "someone else adds a verify command")
    res = repo.proc("run", "p", timeout=60)
    assert res.returncode == 1
    assert "tasks[A].verify" in res.stderr and "flowgit trust p" in res.stderr
    assert "Traceback" not in res.stderr
    assert not marker.exists()
    assert events(repo, "A") == []  # nothing claimed


def test_exit_0_that_changed_none_of_the_tasks_files_fails(repo: Repo, tmp_path: Path) -> None:
    use_executor(repo, tmp_path, 'log("ran")\n')  # does nothing
    repo.plan("p", plan_yaml("{id: A, title: With files, files: [a.txt], retry: {max_attempts: 2}}",
                             "{id: B, title: Without files}"))
    res = repo.proc("run", "p", "--json", timeout=60)
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert (out["done"], out["failed"]) == (1, 1)  # B has no files: nothing to change is fine
    failed = [e for e in events(repo, "A") if e["type"] == "task.failed"]
    assert len(failed) == 2  # retried once under its policy, then failed
    assert "changed nothing" in failed[0]["data"]["error"] and "a.txt" in failed[0]["data"]["error"]
    assert failed[0]["data"]["retry_at"] is not None and failed[1]["data"]["retry_at"] is None


def test_worktree_setup_and_copy_prepare_each_fresh_worktree(repo: Repo, tmp_path: Path) -> None:
    repo.write(".gitignore", repo.path.joinpath(".gitignore").read_text() + ".env\n.deps/\n")
    repo.git("add", ".gitignore")
    repo.git("commit", "-q", "-m", "ignore .env and .deps")
    repo.write(".env", "SECRET=local\n")
    setup = [sys.executable, "-c", "import os; os.makedirs('.deps'); open('.deps/ok', 'w').write('1')"]
    ctl = use_executor(repo, tmp_path, """\
        log("ran", env=Path(".env").read_text() if Path(".env").exists() else None,
            deps=Path(".deps/ok").exists())
        Path(f"{TASK}.txt").write_text("x\\n")
        """, config_extra=f"worktree:\n  setup: {json.dumps(setup)}\n  copy: [.env, missing.cfg]\n")
    repo.plan("p", plan_yaml("{id: A, title: Alpha}", "{id: B, title: Beta, depends_on: [A]}"))
    res = repo.proc("run", "p", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    runs = seen(ctl)
    assert [(r["task"], r["env"], r["deps"]) for r in runs] == [("A", "SECRET=local\n", True),
                                                              ("B", "SECRET=local\n", True)]
    tracked = repo.git("ls-tree", "-r", "--name-only", "main").split()
    assert ".env" not in tracked and ".deps/ok" not in tracked


def test_a_failing_setup_fails_the_attempt_before_the_executor(repo: Repo, tmp_path: Path) -> None:
    setup = [sys.executable, "-c", "print('no network'); raise SystemExit(3)"]
    ctl = use_executor(repo, tmp_path, 'log("ran")\n',
                       config_extra=f"worktree:\n  setup: {json.dumps(setup)}\n")
    repo.plan("p", plan_yaml("{id: A, title: Alpha, retry: {max_attempts: 1}}"))
    res = repo.proc("run", "p", timeout=60)
    assert res.returncode == 1
    assert seen(ctl) == []
    data = next(e for e in events(repo, "A") if e["type"] == "task.failed")["data"]
    assert data["error"].startswith("worktree.setup (") and "exit 3" in data["error"]
    assert "no network" in data["check_output"]


def test_an_untrusted_setup_is_refused_before_any_claim(repo: Repo, tmp_path: Path) -> None:
    use_executor(repo, tmp_path, 'log("ran")\n')
    cfg = repo.path / ".flow/config.yaml"
    cfg.write_text(cfg.read_text() + "worktree:\n  setup: [make, deps]\n")
    repo.git("commit", "-q", "-am", "someone adds a setup command")
    repo.plan("p", plan_yaml("{id: A, title: Alpha}"))
    res = repo.proc("run", "p", timeout=60)
    assert res.returncode == 1
    assert "worktree.setup (make deps) is not trusted" in res.stderr
    assert events(repo, "A") == []


HOOK = """\
#!/bin/sh
if git diff --cached | grep -q FORBIDDEN; then
  echo "hook: FORBIDDEN is not allowed here"
  exit 1
fi
"""


def test_run_verify_commits_through_the_projects_hooks(repo: Repo, tmp_path: Path) -> None:
    hook = repo.path / ".git/hooks/pre-commit"
    hook.write_text(HOOK)
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    ctl = use_executor(repo, tmp_path, """\
        Path("out.txt").write_text("FORBIDDEN\\n" if ATTEMPT == 1 else "fine\\n")
        """)
    repo.plan("p", plan_yaml("{id: A, title: Alpha}"))
    res = repo.proc("run", "p", "--verify", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    data = next(e for e in events(repo, "A") if e["type"] == "task.failed")["data"]
    assert "hooks refused the commit" in data["error"]
    assert "FORBIDDEN is not allowed" in data["check_output"]
    assert "FORBIDDEN is not allowed" in (ctl / "A.2.prompt.md").read_text()
    assert repo.git("show", "main:out.txt") == "fine"


def test_without_verify_run_commits_past_the_hooks(repo: Repo, tmp_path: Path) -> None:
    hook = repo.path / ".git/hooks/pre-commit"
    hook.write_text(HOOK)
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    use_executor(repo, tmp_path, 'Path("out.txt").write_text("FORBIDDEN\\n")\n')
    repo.plan("p", plan_yaml("{id: A, title: Alpha}"))
    res = repo.proc("run", "p", "--json", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert repo.git("show", "main:out.txt") == "FORBIDDEN"


def test_commit_hooks_in_config_is_run_verify(repo: Repo, tmp_path: Path) -> None:
    hook = repo.path / ".git/hooks/pre-commit"
    hook.write_text(HOOK)
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    use_executor(repo, tmp_path, 'Path("out.txt").write_text("FORBIDDEN\\n")\n',
                 config_extra="run:\n  commit_hooks: true\n")
    repo.plan("p", plan_yaml("{id: A, title: Alpha, retry: {max_attempts: 1}}"))
    res = repo.proc("run", "p", "--json", timeout=60)
    assert res.returncode == 1
    assert "hooks refused" in json.dumps(events(repo, "A"))


def test_bad_run_settings_are_one_line_errors(repo: Repo) -> None:
    cfg = repo.path / ".flow/config.yaml"
    base = cfg.read_text()
    base = base.replace("executors: {}\n", "")
    for extra, said in [("run:\n  commit_hooks: 1\n", "run.commit_hooks"),
                        ("run:\n  escalate: 2\n", "unknown key 'escalate'"),
                        ("worktree:\n  copy: [../x]\n", "worktree.copy[0]: invalid path '../x'"),
                        ("worktree:\n  setup: []\n", "worktree.setup: must not be empty"),
                        ("executors:\n  select:\n    - {executor: nope}\n",
                         "executors.select[0].executor: unknown executor 'nope'")]:
        cfg.write_text(base + extra)
        res = repo.proc("status", timeout=30)
        assert res.returncode == 1, extra
        assert said in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        res = repo.proc("validate", timeout=30)
        assert res.returncode == 1 and said in res.stdout + res.stderr
    plan = repo.path.parent / "bad.yaml"
    plan.write_text(plan_yaml("{id: A, title: Alpha, verify: []}"))
    cfg.write_text(base + "executors: {}\n")
    res = repo.run("plan", "new", "p", "--from", str(plan))
    assert res.code == 1 and "verify" in res.err and len(res.err.strip().splitlines()) == 1, res.err
    assert not (repo.path / ".flow/plans/p").exists()


def test_verify_commands_show_in_trust_and_diff(repo: Repo, tmp_path: Path) -> None:
    repo.plan("p", plan_yaml("{id: A, title: Alpha}"))
    base = repo.git("rev-parse", "HEAD")
    plan = repo.path / ".flow/plans/p/plan.yaml"
    plan.write_text("verify: [make, lint]\n" + plan.read_text().replace("title: Alpha}", "title: Alpha, verify: [make, test]}"))
    repo.git("commit", "-q", "-am", "verify commands")
    listed = repo.ok("trust", "p", "--list", "--json").out
    assert "tasks[A].verify" in listed and '"verify"' in listed
    diff = repo.ok("diff", base, "HEAD", "--format", "json").out
    assert "tasks[A].verify" in diff and "make lint" in diff.replace('", "', " ")
    assert os.environ.get("FLOWGIT_AGENT") is None
