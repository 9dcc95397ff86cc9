"""A fake agent CLI that behaves like `claude -p PROMPT`: it reads its prompt (from `-p TEXT`,
or from stdin with `-p -` or no `-p`), writes files where the prompt says, calls `flowgit` and
exits. It knows three prompts by their first line: `# Explore:`, `# Plan:` and `# Task ...`
(what `flowgit run` gives an executor).

Behaviour a test can choose through the environment:
- FAKE_AGENT_LOG: a file to append one JSON line per call (role, round, what flowgit said).
- FAKE_AGENT_BAD_ROUNDS: how many plan rounds write an invalid plan first (default 1).
- FAKE_AGENT_MARKDOWN=1: the planner writes a Markdown plan.
- FAKE_AGENT_EXIT: the exit code to end with (default 0).
- FAKE_AGENT_EXPLORE_BAD: how many explore rounds write an ADR with one option first (default 0).
- FAKE_AGENT_RUN_CMD=1: the planner gives T1 a `run:` command.
- FAKE_AGENT_SLEEP: seconds to sleep first (to be interrupted), after writing FAKE_AGENT_LOG's line.
- FAKE_AGENT_ADD_TASK=1: the first task's agent adds a task to the plan with `flowgit task add`
  from its worktree (PlanEx's planner task).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


def flowgit(*args: str) -> subprocess.CompletedProcess[str]:
    """`flowgit` as an agent calls it: no --repo; FLOWGIT_REPO tells it where the repository is."""
    return subprocess.run([sys.executable, "-m", "flowgit", *args], capture_output=True, text=True)


def log(entry: dict[str, object]) -> None:
    path = os.environ.get("FAKE_AGENT_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def path_after(prompt: str, marker: str) -> Path:
    match = re.search(re.escape(marker) + r"\s*\n\s+(\S+)", prompt)
    if not match:
        raise SystemExit(f"fake agent: no path after {marker!r} in the prompt")
    return Path(match.group(1))


def explore(prompt: str) -> dict[str, object]:
    listed = flowgit("plan", "list", "--json")
    questions = path_after(prompt, "1. Your clarifying questions, as YAML, to this file:")
    adr = path_after(prompt, "2. One architecture decision record draft, as YAML, to this file:")
    questions.write_text(
        "questions:\n"
        "  - id: Q1\n"
        "    question: 'Where do greetings go: stdout or a file?'\n"
        "    options: [stdout, a file]\n"
        "  - id: Q2\n"
        "    question: Should the greeting name the user?\n"
        "requirements:\n"
        "  - id: R1\n"
        "    kind: ubiquitous\n"
        "    text: The tool shall greet in one line.\n")
    n = int(re.search(r"this is round (\d+)", prompt).group(1)) if "this is round" in prompt else 1
    if n <= int(os.environ.get("FAKE_AGENT_EXPLORE_BAD", "0")):
        adr.write_text("title: Greeting output\noptions:\n  - title: Write files\n")
        return {"round": n, "wrote": "invalid"}
    adr.write_text(
        "title: Greeting output\n"
        "context: The greeting must be easy to test.\n"
        "options:\n"
        "  - title: Write files\n"
        "    pros: [easy to check]\n"
        "    cons: [leaves files behind]\n"
        "  - title: Print to stdout\n"
        "    pros: [simple]\n"
        "    cons: [harder to check in a pipeline]\n"
        "decision: 'Recommended: write files, which a checkpoint can check'\n")
    return {"round": n, "wrote": "valid", "plan_list_exit": listed.returncode,
            "had_errors": "## Errors in what you wrote" in prompt}


GOOD_PLAN = """\
id: {plan}
title: Greeter
goal: {goal}
adrs: [{adrs}]
scope:
  assumptions: ["{answer}"]
tasks:
  - id: T1
    title: Write the greeting
    files: [greeting.txt]
    acceptance: ["greeting.txt says hello"]
  - id: T2
    title: Write the farewell
    files: [farewell.txt]
  - id: T3
    title: Write the summary
    depends_on: [T1, T2]
    files: [summary.txt]
checkpoints:
  - id: CP1
    after: [T3]
    validations:
      - name: files
        run: [python3, -c, "import os,sys; sys.exit(0 if os.path.exists('summary.txt') else 1)"]
"""

GOOD_MARKDOWN = """\
# Greeter

## Tasks

- [ ] T1: Write the greeting
- [ ] T2: Write the farewell
"""


def plan(prompt: str) -> dict[str, object]:
    status = flowgit("plan", "list", "--json")
    plan_file = path_after(prompt, "(it holds the plan as it is now):")
    rounds = int(re.search(r"this is round (\d+)", prompt).group(1)) if "this is round" in prompt else 1
    bad = int(os.environ.get("FAKE_AGENT_BAD_ROUNDS", "1"))
    plan_id = re.search(r"\(flowgit plan ([^)]+)\)", prompt).group(1)
    if rounds <= bad:  # depends on a task that does not exist
        plan_file.write_text(f"id: {plan_id}\ntitle: Greeter\ntasks:\n  - id: T1\n    title: One\n"
                             "    depends_on: [T9]\n")
        return {"round": rounds, "wrote": "invalid", "plan_list_exit": status.returncode}
    if os.environ.get("FAKE_AGENT_MARKDOWN"):
        plan_file.write_text(GOOD_MARKDOWN)
        return {"round": rounds, "wrote": "markdown"}
    adr_ids = re.findall(r"^### (ADR-\d+)", prompt, re.M)
    answer = re.search(r"Answer: (.*)", prompt)
    goal = re.search(r"## Goal\n\n(.*)", prompt).group(1)
    text = GOOD_PLAN.format(plan=plan_id, goal=goal, adrs=", ".join(adr_ids),
                            answer=answer.group(1) if answer else "none")
    if not adr_ids:
        text = text.replace("adrs: []\n", "")
    if os.environ.get("FAKE_AGENT_RUN_CMD"):
        text = text.replace("    files: [greeting.txt]\n", "    files: [greeting.txt]\n"
                            "    run: [python3, -c, \"open('greeting.txt', 'w').write('hi')\"]\n")
    if "## Changes the reviewers asked for" in prompt:
        text = text.replace("    title: Write the farewell\n",
                            "    title: Write the farewell\n    description: Say goodbye politely.\n")
    plan_file.write_text(text)
    return {"round": rounds, "wrote": "valid", "answered": answer.group(1) if answer else None,
            "had_errors": "## Errors in what you wrote" in prompt,
            "comments": re.findall(r"^- ((?:rejected|checkpoint) .*)$", prompt, re.M)}


def task(prompt: str) -> dict[str, object]:
    files = re.findall(r"^- (\S+)$", prompt.split("## Files", 1)[1].split("##", 1)[0], re.M) \
        if "## Files" in prompt else []
    for name in files:
        Path(name).write_text(f"written by {os.environ.get('FLOWGIT_TASK')}\n")
    status = flowgit("status", os.environ["FLOWGIT_PLAN"], "--json")
    entry: dict[str, object] = {"task": os.environ.get("FLOWGIT_TASK"), "cwd": os.getcwd(),
                                "status_exit": status.returncode,
                                "status_phase": json.loads(status.stdout).get("phase")
                                if status.returncode == 0 else status.stderr.strip()}
    if os.environ.get("FAKE_AGENT_ADD_TASK") and os.environ.get("FLOWGIT_TASK") == "T1":
        added = flowgit("task", "add", os.environ["FLOWGIT_PLAN"], "T1-followup",
                        "--title", "Follow up on the greeting", "--dep", "T1")
        entry["task_add_exit"] = added.returncode
        entry["task_add_err"] = added.stderr.strip()
    note = os.environ.get("FLOWGIT_NOTE_FILE")
    if note:
        Path(note).write_text(f"wrote {', '.join(files) or 'nothing'}")
    return entry


def main(argv: list[str]) -> int:
    if "-p" in argv and argv[argv.index("-p") + 1] != "-":
        prompt = argv[argv.index("-p") + 1]
    else:
        prompt = sys.stdin.read()
    if os.environ.get("FAKE_AGENT_SLEEP"):
        log({"role": "sleeper", "pid": os.getpid()})
        import time
        time.sleep(float(os.environ["FAKE_AGENT_SLEEP"]))
    first = prompt.split("\n", 1)[0]
    role = "explore" if first.startswith("# Explore:") else "plan" if first.startswith("# Plan:") \
        else "task" if first.startswith("# Task") else "unknown"
    entry = {"role": role, "agent": os.environ.get("FLOWGIT_AGENT"),
             "repo": os.environ.get("FLOWGIT_REPO")}
    entry.update({"explore": explore, "plan": plan, "task": task}.get(role, lambda _p: {})(prompt))
    log(entry)
    return int(os.environ.get("FAKE_AGENT_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
