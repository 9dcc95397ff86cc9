"""Prompts reach agent CLIs through stdin when they are large (issue 15): one argv element holds
128 KiB at most on Linux, so a larger `{prompt}` failed with "Argument list too long". Fake
agent CLIs (small Python scripts named `claude`, on PATH) record what they were given."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from helpers import Repo

RECORDER = f'''#!{sys.executable}
import json, os, sys
from pathlib import Path
data = sys.stdin.read() if not sys.stdin.isatty() else ""
out = Path(os.environ["TEST_CTL"]) / (os.environ["FLOWGIT_TASK"] + ".json")
out.write_text(json.dumps({{"argv": sys.argv[1:], "stdin": data,
                           "prompt": Path(os.environ["FLOWGIT_PROMPT_FILE"]).read_text()}}))
Path(os.environ["FLOWGIT_TASK"] + ".txt").write_text("done\\n")
'''

BIG = "x" * 200_000  # over 128 KiB


def setup(repo: Repo, tmp_path: Path, config_extra: str = "") -> tuple[Path, dict[str, str]]:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("claude", "recorder"):
        path = bin_dir / name
        path.write_text(RECORDER)
        path.chmod(0o755)
    if config_extra:
        cfg = repo.path / ".flow/config.yaml"
        cfg.write_text(cfg.read_text().replace("executors: {}\n", "") + config_extra)
        repo.git("commit", "-q", "-am", "test: executors")
        repo.ok("trust")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TEST_CTL": str(ctl)}
    return ctl, env


def plan(repo: Repo, *tasks: str) -> None:
    src = repo.path.parent / "p.yaml"
    src.write_text("id: p\ntitle: Big prompts\ntasks:\n" + "".join(f"  - {t}\n" for t in tasks))
    repo.ok("plan", "new", "p", "--from", str(src))


def seen(ctl: Path, task: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((ctl / f"{task}.json").read_text())
    return result


def test_the_builtin_agent_reads_a_large_prompt_from_stdin(repo: Repo, tmp_path: Path) -> None:
    ctl, env = setup(repo, tmp_path)
    plan(repo, "{id: SMALL, title: Small, executor: claude}",
         f"{{id: BIG, title: Big, executor: claude, description: {BIG}}}")
    res = repo.proc("run", "p", "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["done"] == 2
    small = seen(ctl, "SMALL")
    assert small["argv"] == ["-p", small["prompt"], "--permission-mode", "acceptEdits"]
    assert small["stdin"] == ""
    big = seen(ctl, "BIG")
    assert big["argv"] == ["-p", "--permission-mode", "acceptEdits"]  # no prompt argument
    assert big["stdin"] == big["prompt"] and BIG in big["stdin"]


def test_the_threshold_is_configurable(repo: Repo, tmp_path: Path) -> None:
    ctl, env = setup(repo, tmp_path, "run:\n  prompt_stdin_over: 10\n")
    plan(repo, "{id: A, title: Small, executor: claude}")
    res = repo.proc("run", "p", "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    a = seen(ctl, "A")
    assert "-p" in a["argv"] and a["prompt"] not in a["argv"] and a["stdin"] == a["prompt"]


def test_stdin_prompt_in_a_template(repo: Repo, tmp_path: Path) -> None:
    ctl, env = setup(repo, tmp_path, "executors:\n  mine:\n    argv: [recorder, '{task}']\n"
                                     "    stdin: prompt\n")
    plan(repo, f"{{id: A, title: Big, executor: mine, description: {BIG}}}")
    res = repo.proc("run", "p", "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    a = seen(ctl, "A")
    assert a["argv"] == ["A"] and a["stdin"] == a["prompt"] and BIG in a["stdin"]


def test_a_prompt_too_large_for_an_argument_fails_with_the_way_out(repo: Repo, tmp_path: Path) -> None:
    ctl, env = setup(repo, tmp_path, "executors:\n  mine:\n    argv: [recorder, '{prompt}']\n")
    plan(repo, f"{{id: A, title: Big, executor: mine, description: {BIG}}}")
    res = repo.proc("run", "p", "--json", env=env, timeout=120)
    assert res.returncode == 1
    assert not (ctl / "A.json").exists()
    events = json.loads(repo.ok("events", "p", "A", "--json").out)["events"]
    error = next(e for e in events if e["type"] == "task.failed")["data"]["error"]
    assert re.search(r"the prompt is \d+ bytes, more than one argument can carry", error)
    assert "{prompt_file} or `stdin: prompt`" in error and "executors.mine" in error
    assert "Argument list too long" not in res.stdout + res.stderr


def test_a_bad_stdin_value_is_refused(repo: Repo) -> None:
    cfg = repo.path / ".flow/config.yaml"
    cfg.write_text(cfg.read_text().replace("executors: {}\n", "")
                   + "executors:\n  mine:\n    argv: [x]\n    stdin: yes\n")
    res = repo.proc("status")
    assert res.returncode == 1 and "executors.mine.stdin" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
