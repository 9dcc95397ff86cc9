"""Docs that run (issue 15): every command example in README.md and docs/*.md runs as written.

The convention (README.md, "Docs that run"):

- An example is a fenced block whose info string is `sh`, `shell`, `bash` or `console`; other
  blocks (yaml, json, text, markdown, a bare fence, an indented block) are not run.
- In a block with `$ ` lines, each `$ ` line is a command and the lines after it, up to the next
  one, are its output (shown, not compared, except that the top-level keys of a JSON object
  shown must be in the command's JSON). A block without `$ ` lines is all commands, one a line:
  a trailing backslash continues a line, a heredoc (`<<'EOF'`) takes its lines up to the
  terminator, and blank lines and comment lines are skipped.
- `# exit N` at the end of a command, or of its last output line, is the exit code it must
  have; otherwise 0.
- A comment saying `not run here: REASON` (`# not run here: needs the claude CLI`) at the end
  of a command leaves that command out; as a line of its own it leaves out the rest of its block. The reason is visible to readers; this test lists
  every one and fails when there are more than NOT_RUN_CAP.
- A comment saying `runs until Ctrl-C` marks a command that serves or watches until stopped
  (`flowgit watch`, `flowgit board`): it is started, sent SIGINT once it has printed its first
  line, and must then stop with the exit code it documents (0 unless `# exit N`).
- Each document's examples run in order, in a fresh git repository with one commit where
  `flowgit init` has run. Git's default branch there is `master`, so that no example depends
  on a branch named `main`. Each command is its own `bash -c` process with this checkout's
  `flowgit` first on PATH; the working directory and exported variables carry over from one
  command to the next (so `cd app` and `export X=1` work; a variable that is not exported
  does not). No example may leave a process running in the background. `BROWSER=true`, so that
  `--open` opens nothing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import BIN, ROOT, Repo, git
from ruamel.yaml import YAML

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"sh", "shell", "bash", "console"}
# The examples that carry `# not run here:`; raise it only with a reason each reader can see.
NOT_RUN_CAP = 10
TIMEOUT = 180

FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")
NOT_RUN = re.compile(r"(?:^|\s)#[^#]*?\bnot run here:\s*(.+?)\s*$")
UNTIL_STOPPED = re.compile(r"(?:^|\s)#[^#]*?\bruns until Ctrl-C\b")
HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_]\w*)\1")


@dataclass
class Example:
    doc: str
    line: int
    command: str
    expect: int = 0
    output: str = ""
    not_run: str | None = None
    until_stopped: bool = False

    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(text: str) -> list[tuple[int, list[str]]]:
    """The shell blocks of a Markdown text: (line number of the first line, its lines)."""
    found: list[tuple[int, list[str]]] = []
    fence: str | None = None
    lang = ""
    start, body = 0, []
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence, lang, start, body = m.group(1), m.group(2).lower(), n + 1, []
        elif line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            if lang in SHELL:
                found.append((start, body))
            fence = None
        else:
            body.append(line)
    return found


def _take(lines: list[str], i: int) -> tuple[str, int]:
    """One command starting at lines[i] (continuations and heredoc bodies joined), and the
    index after it."""
    parts = [lines[i]]
    i += 1
    while parts[-1].endswith("\\") and i < len(lines):
        parts.append(lines[i])
        i += 1
    for m in HEREDOC.finditer("\n".join(parts)):
        while i < len(lines):
            parts.append(lines[i])
            i += 1
            if lines[i - 1].strip() == m.group(2):
                break
    return "\n".join(parts), i


def examples(path: Path) -> list[Example]:
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    found: list[Example] = []
    for start, lines in blocks(path.read_text(encoding="utf-8")):
        console = any(line.startswith("$ ") for line in lines)
        skip_rest: str | None = None
        i = 0
        while i < len(lines):
            line = lines[i]
            if console and not line.startswith("$ "):
                i += 1
                continue
            text = line[2:] if console else line
            stripped = text.strip()
            if not stripped or stripped.startswith("#"):
                m = NOT_RUN.search(stripped)
                if m and not console:
                    skip_rest = m.group(1)
                i += 1
                continue
            first = start + i
            lines_ = [text, *lines[i + 1:]]
            command, used = _take(lines_, 0)
            i += used
            output: list[str] = []
            if console:
                while i < len(lines) and not lines[i].startswith("$ "):
                    output.append(lines[i])
                    i += 1
            head = command.splitlines()[0]
            m_exit = EXIT.search(head) or (EXIT.search(output[-1]) if output else None)
            m_skip = NOT_RUN.search(head)
            found.append(Example(rel, first, command, int(m_exit.group(1)) if m_exit else 0,
                                 "\n".join(output), m_skip.group(1) if m_skip else skip_rest,
                                 bool(UNTIL_STOPPED.search(head))))
    return found


def top_keys(text: str) -> list[str]:
    """The keys of the outermost object in a JSON text that may have `...` in it."""
    keys: list[str] = []
    depth, i = 0, 0
    while i < len(text):
        c = text[i]
        if c == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if depth == 1 and text[j + 1:].lstrip().startswith(":"):
                keys.append(text[i + 1:j])
            i = j + 1
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
        i += 1
    return keys


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    config = Path(env["GIT_CONFIG_GLOBAL"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[init]\n\tdefaultBranch = master\n"
                      "[user]\n\tname = Docs Reader\n\temail = reader@example.com\n")
    env["HOME"] = str(home)
    env["BROWSER"] = "true"
    return env


SCRIPT = """{command}
__docs_rc=$?
{{ pwd > "$__DOCS_STATE/cwd"; env -0 > "$__DOCS_STATE/env"; }} 2>/dev/null
exit $__docs_rc
"""


def run_one(command: str, cwd: Path, env: dict[str, str], state: Path,
            until_stopped: bool = False) -> tuple[int, str, str]:
    proc = subprocess.Popen(["bash", "-c", SCRIPT.format(command=command)], cwd=cwd,
                            env={**env, "__DOCS_STATE": str(state)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda f, into: into.extend(iter(f.readline, "")),
                                args=(pipe, into), daemon=True)
               for pipe, into in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + TIMEOUT
    if until_stopped:
        while not (out or err) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None:
            for reader in readers:
                reader.join(5)
            return proc.returncode, "".join(out), "".join(err) + "\n(it stopped before Ctrl-C)"
        os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 30
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        err.append(f"\n(killed: still running after {'Ctrl-C' if until_stopped else f'{TIMEOUT} s'})")
        return -1, "".join(out), "".join(err)
    for reader in readers:
        reader.join(5)
    return proc.returncode, "".join(out), "".join(err)


def fresh_repository(path: Path, env: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for args in (["git", "init", "-q"], ["git", "commit", "-q", "--allow-empty", "-m", "init"],
                 ["flowgit", "init"]):
        subprocess.run(args, cwd=path, env=env, check=True, capture_output=True)
    return path


def run_document(path: Path, tmp: Path) -> list[Example]:
    """Run a document's examples in order; fail at the first that does not do what it says.
    Returns the examples it ran."""
    home = tmp / "home"
    env = _env(home)
    cwd = fresh_repository(tmp / "repo", env)
    state = tmp / "state"
    state.mkdir()
    ran = []
    for ex in examples(path):
        if ex.not_run:
            continue
        code, out, err = run_one(ex.command, cwd, env, state, ex.until_stopped)
        if code != ex.expect:
            pytest.fail(f"{ex.where()}: `{ex.command}` exited {code}, the document says {ex.expect}"
                        f"\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}", pytrace=False)
        shown = ex.output.lstrip()
        if shown.startswith("{"):  # with --json, an error's object is on stdout too
            try:
                actual = json.loads(out)
            except ValueError:
                pytest.fail(f"{ex.where()}: `{ex.command}` shows JSON, printed:\n{out[-3000:]}",
                            pytrace=False)
            missing = [k for k in top_keys(shown) if k not in actual]
            assert not missing, f"{ex.where()}: `{ex.command}` has no {missing} (it printed {list(actual)})"
        cwd = Path((state / "cwd").read_text().strip())
        env = {k: v for k, _, v in (item.partition("=") for item in
                                    (state / "env").read_text().split("\0") if item)
               if k not in ("PWD", "SHLVL", "_", "__DOCS_STATE")}
        ran.append(ex)
    return ran


def _with_examples() -> list[Path]:
    return [p for p in DOCS if examples(p)]


@pytest.mark.parametrize("doc", _with_examples(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_examples_of_a_document_run_as_written(doc: Path, tmp_path: Path) -> None:
    ran = run_document(doc, tmp_path)
    assert ran or all(ex.not_run for ex in examples(doc))


def test_examples_not_run_here_say_why_and_are_capped() -> None:
    skipped = [ex for doc in DOCS for ex in examples(doc) if ex.not_run]
    listing = "\n".join(f"  {ex.where()}: {ex.command.splitlines()[0]}  ({ex.not_run})" for ex in skipped)
    assert len(skipped) <= NOT_RUN_CAP, (
        f"{len(skipped)} examples are not run (the cap is {NOT_RUN_CAP}): make an example run "
        f"here, or raise NOT_RUN_CAP with a reason\n{listing}")
    print(f"examples not run here ({len(skipped)}):\n{listing}")


CONVENTION = """\
Text.

```sh
git init -q app && cd app   # a comment
# a comment line
echo one \\
  two
cat > f.md <<'EOF'
# a heading, not a comment
EOF
false   # exit 1
agent go   # not run here: needs an agent
# not run here: needs the network
curl https://example.com
```

```bash
flowgit watch   # phases move; runs until Ctrl-C
```

```console
$ flowgit validate --json
{"ok": true, "files": 4, "errors": [{"a": 1}, ...], "more": {"x": [1, 2]}}
$ flowgit done T-1 --worker w2
flowgit: error: cannot mark done T-1   # exit 1
```

```yaml
run: [make]
```

    indented code is not run
"""


def test_the_convention(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(CONVENTION)
    got = [(ex.line, ex.command, ex.expect, ex.not_run) for ex in examples(doc)]
    assert [(line, cmd.splitlines()[0], code, why) for line, cmd, code, why in got] == [
        (4, "git init -q app && cd app   # a comment", 0, None),
        (6, "echo one \\", 0, None),
        (8, "cat > f.md <<'EOF'", 0, None),
        (11, "false   # exit 1", 1, None),
        (12, "agent go   # not run here: needs an agent", 0, "needs an agent"),
        (14, "curl https://example.com", 0, "needs the network"),
        (18, "flowgit watch   # phases move; runs until Ctrl-C", 0, None),
        (22, "flowgit validate --json", 0, None),
        (24, "flowgit done T-1 --worker w2", 1, None),
    ]
    assert [ex.until_stopped for ex in examples(doc)] == [False] * 6 + [True, False, False]
    assert got[2][1] == "cat > f.md <<'EOF'\n# a heading, not a comment\nEOF"
    assert top_keys(examples(doc)[7].output) == ["ok", "files", "errors", "more"]


def test_a_document_that_lies_fails(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("```sh\nmkdir sub && cd sub\nexport WHERE=here\n"
                   "test \"$WHERE\" = here && test \"$(basename \"$PWD\")\" = sub\n"
                   "git rev-parse --abbrev-ref HEAD | grep -qx master\n"
                   "flowgit status --json   # exit 1\n```\n")
    with pytest.raises(pytest.fail.Exception) as failed:
        run_document(doc, tmp_path)
    assert "doc.md:6: `flowgit status --json   # exit 1` exited 0, the document says 1" in str(failed.value)


# ----- the README's first two commands --------------------------------------------------------

def test_the_readme_starts_with_install_and_demo_then_install_and_tests() -> None:
    first = examples(ROOT / "README.md")[:2]
    assert first[0].command.endswith("&& .venv/bin/flowgit demo"), first[0].command
    assert ".venv/bin/pip install -q . &&" in first[0].command
    assert first[1].command.endswith("&& .venv/bin/python -m pytest -q"), first[1].command
    assert "'.[test,mcp]'" in first[1].command
    # .ci/run is where they run: the package installed, the demo, the suite
    ci = (ROOT / ".ci" / "run").read_text()
    assert "flowgit demo" in ci and "-m pytest -q" in ci


# ----- docs/hooks.md: the pre-commit framework's config pins a revision that exists --------------

def _yaml_blocks(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return re.findall(r"^```yaml\n(.*?)^```", text, flags=re.S | re.M)


def test_the_pre_commit_config_in_hooks_md_updates_to_a_commit(tmp_path: Path) -> None:
    """The config as written, with OWNER's repository standing in for a local copy of this one:
    `pre-commit autoupdate`, as the page says, pins the newest commit (flowgit has no tags)."""
    hooks_repo = tmp_path / "flowgit"
    hooks_repo.mkdir()
    (hooks_repo / ".pre-commit-hooks.yaml").write_text((ROOT / ".pre-commit-hooks.yaml").read_text())
    git(hooks_repo, "init", "-q", "-b", "main")
    git(hooks_repo, "add", "-A")
    git(hooks_repo, "commit", "-q", "-m", "hooks")
    head = git(hooks_repo, "rev-parse", "HEAD")
    [config] = [b for b in _yaml_blocks(ROOT / "docs" / "hooks.md") if "repos:" in b]
    assert "https://github.com/OWNER/flowgit" in config
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    (project / ".pre-commit-config.yaml").write_text(
        config.replace("https://github.com/OWNER/flowgit", hooks_repo.as_uri()))
    rev = YAML(typ="safe").load(config)["repos"][0]["rev"]
    assert git(hooks_repo, "rev-parse", "--verify", f"{rev}^{{commit}}") == head  # flowgit's branch
    ids = {h["id"] for h in YAML(typ="safe").load(config)["repos"][0]["hooks"]}
    assert ids <= {h["id"] for h in YAML(typ="safe").load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "autoupdate"], cwd=project, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pinned = YAML(typ="safe").load((project / ".pre-commit-config.yaml").read_text())
    assert pinned["repos"][0]["rev"] == head


# ----- docs/examples: the plan diff workflow and its commenter -----------------------------------

EXAMPLES = ROOT / "docs" / "examples"
DIFF = EXAMPLES / "flowgit-plan-diff.yml"
DIFF_COMMENT = EXAMPLES / "flowgit-plan-diff-comment.yml"


def _workflow(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text())


def _steps(workflow: Any) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_the_plan_diff_workflows_parse_and_are_fork_safe() -> None:
    diff, comment = _workflow(DIFF), _workflow(DIFF_COMMENT)
    for path in (DIFF, DIFF_COMMENT):
        assert "pull_request_target" not in path.read_text().replace("`pull_request_target`", "")
    assert set(diff["on"]) == {"pull_request"} and diff["on"]["pull_request"]["paths"] == [".flow/**"]
    assert diff["permissions"] == {"contents": "read"}
    checkout = [s for s in _steps(diff) if str(s.get("uses", "")).startswith("actions/checkout")]
    assert checkout and checkout[0]["with"]["persist-credentials"] is False
    assert checkout[0]["with"]["fetch-depth"] == 0  # the base's history, for the merge base
    runs = [s["run"] for s in _steps(diff) if "run" in s]
    assert 'python -m pip install "$FLOWGIT_SOURCE"' in runs
    [job] = diff["jobs"].values()
    assert job["env"]["FLOWGIT_SOURCE"].startswith("git+https://")  # from its repository
    commands = "\n".join(runs)
    assert "flowgit validate" in commands
    assert 'flowgit diff "$BASE" HEAD --format markdown > plan-diff/plan-diff.md' in commands
    assert "${{" not in commands  # event data reaches scripts through the environment only
    uploads = [s for s in _steps(diff) if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads[0]["with"] == {"name": "flowgit-plan-diff", "path": "plan-diff/"}
    # the commenter: triggered by the diff, never checks out or runs the pull request's code
    assert set(comment["on"]) == {"workflow_run"}
    assert comment["on"]["workflow_run"]["workflows"] == [diff["name"]]
    assert comment["permissions"] == {"actions": "read", "pull-requests": "write"}
    steps = _steps(comment)
    assert not [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout")]
    comment_runs = [s["run"] for s in steps if "run" in s]
    assert not [r for r in comment_runs if "flowgit" in r or "pip" in r]
    assert "--body-file plan-diff/plan-diff.md" in "\n".join(comment_runs)
    downloads = [s for s in steps if str(s.get("uses", "")).startswith("actions/download-artifact")]
    assert downloads[0]["with"]["name"] == "flowgit-plan-diff"


def test_no_example_workflow_installs_flowgit_from_a_package_index() -> None:
    for path in sorted(EXAMPLES.glob("*.yml")):
        for run in (s["run"] for s in _steps(_workflow(path)) if "run" in s):
            assert not re.search(r"pip install (-\S+ )*flowgit\b", run), (path.name, run)


def test_the_plan_diff_workflows_commands_on_a_pull_requests_branch(repo: Repo, tmp_path: Path) -> None:
    """The diff workflow's scripts, run for real (bash, the flowgit of this checkout) on a pull
    request's branch with the base fetched as origin/BASE; then the commenter's script with a
    fake `gh` that records what it was asked to post."""
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - {id: A, title: a}\n")
    base_branch = repo.git("branch", "--show-current")
    repo.git("update-ref", f"refs/remotes/origin/{base_branch}", "HEAD")
    repo.git("checkout", "-q", "-b", "pr")
    repo.ok("task", "add", "p", "B", "--title", "the new one", "--dep", "A")
    diff = _workflow(DIFF)
    [job] = diff["jobs"].values()
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"],
           "BASE": f"origin/{base_branch}", "PR": "42"}
    for script in (s["run"] for s in job["steps"] if "run" in s and "pip" not in s["run"]):
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=repo.path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (script, proc.stdout, proc.stderr)
    body = (repo.path / "plan-diff" / "plan-diff.md").read_text()
    assert "`B` the new one" in body and "```mermaid" in body
    assert (repo.path / "plan-diff" / "pr-number").read_text() == "42\n"
    # the commenter, in a directory holding only the artifact, with `gh` recording its arguments
    runner = tmp_path / "runner"
    (runner / "bin").mkdir(parents=True)
    shutil.copytree(repo.path / "plan-diff", runner / "plan-diff")
    gh = runner / "bin" / "gh"
    gh.write_text('#!/bin/sh\nprintf "%s\\n" "$*" >> "$GH_LOG"\n')
    gh.chmod(0o755)
    [script] = [s["run"] for s in _steps(_workflow(DIFF_COMMENT)) if "run" in s]
    log = runner / "gh.log"
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=runner, capture_output=True, text=True,
                          env={**env, "PATH": f"{runner / 'bin'}{os.pathsep}{env['PATH']}",
                               "GH_LOG": str(log), "REPO": "owner/app"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == "pr comment 42 --repo owner/app --body-file plan-diff/plan-diff.md --edit-last\n"
    # a number that is not one is refused before `gh` runs
    (runner / "plan-diff" / "pr-number").write_text("42; rm -rf /\n")
    log.unlink()
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=runner, capture_output=True, text=True,
                          env={**env, "PATH": f"{runner / 'bin'}{os.pathsep}{env['PATH']}",
                               "GH_LOG": str(log), "REPO": "owner/app"}, timeout=60)
    assert proc.returncode == 1 and "not a pull request number" in proc.stdout and not log.exists()


# ----- what the README's session needed: `approve` on a plan past its review ---------------------

def test_approve_on_a_plan_past_its_review_is_a_no_op_that_says_so(repo: Repo) -> None:
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - {id: A, title: a}\n")
    repo.ok("submit", "p")  # approvals.required 0 (the template's): straight to execute
    before = repo.commits()
    res = repo.ok("approve", "p", "--reviewer", "alice")
    assert res.out.startswith("nothing to approve: plan p is in execute, past its review")
    assert "nothing recorded" in res.out and "`flowgit trust p`" in res.out
    out = repo.ok("--json", "approve", "p", "--reviewer", "alice").json
    assert out["recorded"] is False and out["commit"] is None and out["trusted"] == []
    assert out["phase"] == "execute" and out["moves"] == [] and out["approvals"] == 0
    assert {"plan", "reviewer", "approvals", "required", "phase", "moves", "via", "identity",
            "trusted"} <= set(out)
    assert repo.commits() == before
    assert not [e for e in repo.ok("--json", "events", "p").json["events"] if e["type"] == "plan.approved"]
    # a draft is still refused; an approval that counts says it was recorded
    repo.plan("q", "id: q\ntitle: Q\ntasks:\n  - {id: A, title: a}\n")
    assert repo.run("approve", "q", "--reviewer", "alice").code == 1
