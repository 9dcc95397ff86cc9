"""The built-in demo executor: writes each declared file of its task, for real.

Run as `python -m flowgit.demo_executor PROMPT_FILE` in a task's worktree (FLOWGIT_* set)."""
from __future__ import annotations

import os
import sys
from pathlib import Path


def check(paths: list[str]) -> int:
    """The demo's test command: every produced file exists and names its task."""
    bad = [p for p in paths if not Path(p).is_file() or "written by the flowgit demo executor" not in Path(p).read_text()]
    for p in paths:
        print(("FAIL " if p in bad else "ok   ") + p)
    return 1 if bad else 0


USAGE = """usage: python -m flowgit.demo_executor PROMPT_FILE
       python -m flowgit.demo_executor --check FILE...

flowgit's demo executor: run by `flowgit run` in a task's worktree (FLOWGIT_TASK, FLOWGIT_FILES
and FLOWGIT_TITLE set), it writes each file the task declares. --check: each FILE exists and
was written by it (exit 1 otherwise)."""


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        return check(argv[1:])
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    options = [a for a in argv if a.startswith("-")]
    if options or "FLOWGIT_TASK" not in os.environ:
        # it writes files where it runs: only when flowgit ran it, never on a mistyped option
        why = f"unknown option {options[0]!r}" if options else "FLOWGIT_TASK is not set (flowgit runs it)"
        print(f"flowgit.demo_executor: {why}\n{USAGE}", file=sys.stderr)
        return 2
    task = os.environ["FLOWGIT_TASK"]
    files = [f for f in os.environ.get("FLOWGIT_FILES", "").split("\n") if f]
    title = os.environ.get("FLOWGIT_TITLE", task)
    if not files:
        files = [f"notes/{task}.md"]
    for rel in files:
        path = Path(rel)
        if path.is_absolute() or ".." in path.parts:
            print(f"refusing to write outside the worktree: {rel}", file=sys.stderr)
            return 2
        path.parent.mkdir(parents=True, exist_ok=True)
        comment = "--" if rel.endswith(".sql") else "#" if rel.endswith((".py", ".sh", ".md")) else "//"
        path.write_text(f"{comment} {task}: {title}\n{comment} written by the flowgit demo executor\n")
        print(f"wrote {rel}")
    note = os.environ.get("FLOWGIT_NOTE_FILE")
    if note:  # the note the tasks depending on this one see in their prompts
        Path(note).write_text(f"{title}: wrote {', '.join(files)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
