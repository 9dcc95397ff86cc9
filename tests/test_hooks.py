"""The pre-commit hook: `hooks install` (hooksPath, chaining, refusals), the hook itself under a
real `git commit`, and `.pre-commit-hooks.yaml` under the real pre-commit framework (issue 5)."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, Repo, copy_repo, git, make_git_repo, prebuilt

from flowgit.ops import clone_setup as hooks

VALID = """\
id: ok
title: A valid plan
goal: Pass the hook
tasks:
  - id: T1
    title: One
"""

INVALID = """\
id: bad
titel: a typo
tasks: []
"""

CONFLICTED = """\
id: p
<<<<<<< HEAD
title: Ours
=======
title: Theirs
>>>>>>> other
"""

FOREIGN = """\
#!/bin/sh
echo "ran $*" >> "{marker}"
exit {code}
"""


# ----- helpers ------------------------------------------------------------------------------------

def hook_env(**extra: str) -> dict[str, str]:
    """The environment of a user's `git commit`: flowgit resolvable through PATH."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def commit(path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "commit", "-q", "-m", "change", *args], cwd=path,
                          capture_output=True, text=True, env=env or hook_env(), check=False)


def head(path: Path) -> str:
    return git(path, "rev-parse", "HEAD")


def bin_dir(tmp_path: Path, python: str | None) -> str:
    """A PATH with git and dirname but no flowgit; `python3` runs `python`, or fails."""
    d = tmp_path / "bin"
    d.mkdir()
    for tool in ("git", "dirname"):
        found = shutil.which(tool)
        assert found
        (d / tool).symlink_to(found)
    body = f'exec "{python}" "$@"' if python else "exit 1"
    (d / "python3").write_text(f"#!/bin/sh\n{body}\n")
    (d / "python3").chmod(0o755)
    return str(d)


def install(repo: Repo, *args: str) -> dict[str, str | None]:
    res = repo.run("hooks", "install", "--json", *args)
    assert res.code == 0, res.out + res.err
    return res.json  # type: ignore[no-any-return]


def pre_commit_hook(repo: Repo) -> Path:
    return repo.path / ".git" / "hooks" / "pre-commit"


@pytest.fixture
def worked(_worked: Path, tmp_path: Path) -> Repo:
    """A plan whose task log has two committed events (claimed, started)."""
    return copy_repo(_worked, tmp_path / "repo")


def _work(repo: Repo) -> None:
    repo.ok("plan", "new", "p", "--title", "P", "--goal", "g")
    repo.ok("task", "add", "p", "T1", "--title", "one")
    repo.ok("claim", "p", "--worker", "w")
    repo.ok("start", "p/T1", "--worker", "w")


@pytest.fixture(scope="module")
def _worked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prebuilt(tmp_path_factory, _work)


def rewrite_event(repo: Repo, lineno: int) -> Path:
    log = repo.path / ".flow/plans/p/events/T1.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    obj = json.loads(lines[lineno - 1])
    obj["actor"] = "mallory"
    lines[lineno - 1] = json.dumps(obj, separators=(",", ":")) + "\n"
    log.write_text("".join(lines))
    return log


# ----- the script ---------------------------------------------------------------------------------

def test_builtin_copy_is_the_shipped_script() -> None:
    shipped = (ROOT / "hooks" / "pre-commit").read_text()
    assert hooks.PRE_COMMIT_SCRIPT == shipped
    assert hooks.MARKER in shipped.splitlines()
    assert hooks.is_ours(hooks.hook_script())
    assert os.access(ROOT / "hooks" / "pre-commit", os.X_OK)


@pytest.mark.parametrize("current, local, action", [
    (None, False, "installed"),
    (None, True, "installed"),
    (b"OURS", False, "unchanged"),
    (b"#!/bin/sh\n# flowgit pre-commit hook\nold\n", True, "updated"),
    (b"#!/bin/sh\nmake lint\n", False, "chained"),
    (b"#!/bin/sh\nmake lint\n", True, "refuse"),
])
def test_decide(current: bytes | None, local: bool, action: str) -> None:
    ours = b"#!/bin/sh\n# flowgit pre-commit hook\nnew\n"
    assert hooks.decide(ours if current == b"OURS" else current, ours, local) == action


# ----- hooks install ------------------------------------------------------------------------------

def test_install_into_a_fresh_repository(tmp_path: Path) -> None:
    r = Repo(make_git_repo(tmp_path / "fresh"))
    hook = pre_commit_hook(r)
    hook.unlink(missing_ok=True)
    assert install(r) == {"hook": str(hook), "action": "installed", "local": None,
                          "python": sys.executable}
    assert r.git("config", "flowgit.python") == sys.executable
    assert hook.read_bytes() == hooks.hook_script()
    assert stat.S_IMODE(hook.stat().st_mode) == 0o755
    assert install(r)["action"] == "unchanged"
    text = r.ok("hooks", "install").out
    assert "up to date" in text and str(hook) in text


def test_init_installs_the_hook(repo: Repo) -> None:
    assert pre_commit_hook(repo).read_bytes() == hooks.hook_script()
    assert repo.ok("init").code == 0
    assert install(repo)["action"] == "unchanged"


def test_an_older_copy_of_ours_is_updated(repo: Repo) -> None:
    pre_commit_hook(repo).write_text(f"#!/bin/sh\n{hooks.MARKER}\nexit 0\n")
    assert install(repo)["action"] == "updated"
    assert pre_commit_hook(repo).read_bytes() == hooks.hook_script()


@pytest.mark.parametrize("absolute", [False, True])
def test_core_hooks_path_is_respected(repo: Repo, absolute: bool, tmp_path: Path) -> None:
    target = tmp_path / "shared-hooks" if absolute else repo.path / ".githooks"
    repo.git("config", "core.hooksPath", str(target) if absolute else ".githooks")
    pre_commit_hook(repo).unlink()
    sub = repo.path / "sub"
    sub.mkdir()
    res = Repo(sub).run("hooks", "install", "--json")
    assert res.code == 0, res.err
    assert res.json["hook"] == str(target / "pre-commit")
    assert (target / "pre-commit").read_bytes() == hooks.hook_script()
    assert not pre_commit_hook(repo).exists()
    # and git runs it from there
    repo.write(".flow/plans/bad/plan.yaml", INVALID)
    repo.git("add", ".flow")
    assert commit(repo.path).returncode == 1


def test_a_linked_worktree_shares_the_common_hooks(repo: Repo, tmp_path: Path) -> None:
    pre_commit_hook(repo).unlink()
    repo.git("worktree", "add", "-q", str(tmp_path / "wt"))
    res = Repo(tmp_path / "wt").run("hooks", "install", "--json")
    assert res.json["hook"] == str(pre_commit_hook(repo))
    assert pre_commit_hook(repo).exists()


def test_an_existing_hook_is_chained_and_still_runs(repo: Repo, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    hook = pre_commit_hook(repo)
    foreign = FOREIGN.format(marker=marker, code=0)
    hook.write_text(foreign)
    hook.chmod(0o755)
    res = repo.ok("hooks", "install")
    assert "pre-commit.local" in res.out and "still runs" in res.out
    local = hook.with_name("pre-commit.local")
    assert local.read_text() == foreign and os.access(local, os.X_OK)
    assert hook.read_bytes() == hooks.hook_script()
    assert install(repo) == {"hook": str(hook), "action": "unchanged", "local": str(local),
                             "python": sys.executable}

    repo.write("notes.txt", "no .flow/ here\n")
    repo.git("add", "notes.txt")
    assert commit(repo.path).returncode == 0
    assert marker.read_text() == "ran \n"

    repo.write(".flow/plans/ok/plan.yaml", VALID)
    repo.git("add", ".flow")
    assert commit(repo.path).returncode == 0
    assert marker.read_text() == "ran \nran \n"

    repo.write(".flow/plans/bad/plan.yaml", INVALID)
    repo.git("add", ".flow")
    assert commit(repo.path).returncode == 1
    assert marker.read_text() == "ran \nran \n", "validation failed: the chained hook must not run"


def test_a_failing_chained_hook_still_blocks_the_commit(repo: Repo, tmp_path: Path) -> None:
    hook = pre_commit_hook(repo)
    hook.write_text(FOREIGN.format(marker=tmp_path / "marker", code=3))
    hook.chmod(0o755)
    assert install(repo)["action"] == "chained"
    before = head(repo.path)
    repo.write(".flow/plans/ok/plan.yaml", VALID)
    repo.git("add", ".flow")
    assert commit(repo.path).returncode == 1  # git reports any hook failure as 1
    assert (tmp_path / "marker").read_text() == "ran \n"
    assert head(repo.path) == before


def test_refuses_when_pre_commit_local_is_taken(repo: Repo) -> None:
    hook = pre_commit_hook(repo)
    hook.write_text("#!/bin/sh\nmake lint\n")
    local = hook.with_name("pre-commit.local")
    local.write_text("#!/bin/sh\nmake test\n")
    res = repo.run("hooks", "install")
    assert res.code == 1
    assert "pre-commit.local" in res.err and "flowgit hooks install" in res.err
    assert res.err.count("\n") == 1 and "Traceback" not in res.err
    assert hook.read_text() == "#!/bin/sh\nmake lint\n"
    assert local.read_text() == "#!/bin/sh\nmake test\n"
    res = repo.run("hooks", "install", "--json")
    assert res.code == 1 and res.json["error"]["code"] == "hook_exists"
    # init is safe to run anyway: a warning, not a failure
    res = repo.run("init")
    assert res.code == 0 and "pre-commit hook not installed" in res.err


def test_never_follows_a_symlinked_hook(repo: Repo, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.sh"
    target.write_text("#!/bin/sh\nexit 0\n")
    hook = pre_commit_hook(repo)
    hook.unlink()
    hook.symlink_to(target)
    res = repo.run("hooks", "install")
    assert res.code == 1 and "symlink" in res.err
    assert hook.is_symlink() and target.read_text() == "#!/bin/sh\nexit 0\n"
    assert not hook.with_name("pre-commit.local").exists()


def test_ours_moved_aside_by_the_pre_commit_framework_is_kept_there(repo: Repo) -> None:
    hook = pre_commit_hook(repo)
    legacy = hook.with_name("pre-commit.legacy")
    hook.rename(legacy)
    hook.write_text("#!/usr/bin/env bash\n# File generated by pre-commit: https://pre-commit.com\n")
    res = install(repo)
    assert res["hook"] == str(legacy) and res["action"] == "unchanged"
    assert not hook.with_name("pre-commit.local").exists()


# ----- the hook under a real `git commit` ---------------------------------------------------------

def test_blocks_an_invalid_plan(repo: Repo) -> None:
    before = head(repo.path)
    repo.write(".flow/plans/bad/plan.yaml", INVALID)
    repo.git("add", ".flow")
    res = commit(repo.path)
    assert res.returncode == 1
    assert ".flow/plans/bad/plan.yaml" in res.stderr
    assert "commit refused" in res.stderr and "Traceback" not in res.stderr
    assert head(repo.path) == before


@pytest.mark.format1
@pytest.mark.parametrize("lineno", [1, 2])
def test_blocks_a_rewritten_event_line(worked: Repo, lineno: int) -> None:
    before = head(worked.path)
    rewrite_event(worked, lineno)
    worked.git("add", ".flow")
    res = commit(worked.path)
    assert res.returncode == 1
    assert f".flow/plans/p/events/T1.jsonl:{lineno}: event line edited" in res.stderr
    assert head(worked.path) == before


@pytest.mark.format1
def test_blocks_a_deleted_log(worked: Repo) -> None:
    worked.git("rm", "-q", ".flow/plans/p/events/T1.jsonl")
    res = commit(worked.path)
    assert res.returncode == 1
    assert ".flow/plans/p/events/T1.jsonl: an event log was deleted" in res.stderr


@pytest.mark.format1
def test_blocks_a_truncated_log(worked: Repo) -> None:
    log = worked.path / ".flow/plans/p/events/T1.jsonl"
    log.write_text(log.read_text().splitlines(keepends=True)[0])
    worked.git("add", ".flow")
    res = commit(worked.path)
    assert res.returncode == 1
    assert "T1.jsonl:2: event line deleted" in res.stderr


@pytest.mark.format1
@pytest.mark.parametrize("rel", [".flow/plans/p/plan.yaml", ".flow/plans/p/events/T1.jsonl"])
def test_blocks_conflict_markers(worked: Repo, rel: str) -> None:
    path = worked.path / rel
    if rel.endswith(".jsonl"):
        first, second = path.read_text().splitlines(keepends=True)
        path.write_text(f"{first}<<<<<<< HEAD\n{second}=======\n{second}>>>>>>> other\n")
    else:
        path.write_text(CONFLICTED)
    worked.git("add", ".flow")
    res = commit(worked.path)
    assert res.returncode == 1
    assert "conflict markers" in res.stderr and rel in res.stderr


@pytest.mark.format1
def test_lets_valid_changes_through(worked: Repo) -> None:
    worked.write(".flow/plans/ok/plan.yaml", VALID)
    worked.git("add", ".flow")
    res = commit(worked.path)
    assert res.returncode == 0, res.stderr
    # an appended event (made by flowgit, committed by hand) is fine too
    worked.ok("heartbeat", "p/T1", "--worker", "w")
    worked.git("reset", "-q", "--soft", "HEAD~1")
    assert "T1.jsonl" in worked.git("diff", "--cached", "--name-only")
    res = commit(worked.path)
    assert res.returncode == 0, res.stderr
    assert worked.git("status", "--porcelain", "--", ".flow") == ""


def test_skips_flowgits_own_commits(repo: Repo) -> None:
    repo.write(".flow/plans/bad/plan.yaml", INVALID)
    repo.git("add", ".flow")
    assert commit(repo.path, env=hook_env(FLOWGIT_INTERNAL="1")).returncode == 0


def test_uses_the_interpreter_that_installed_it(repo: Repo, tmp_path: Path) -> None:
    env = hook_env(PATH=bin_dir(tmp_path, python=None))
    repo.write(".flow/plans/bad/plan.yaml", INVALID)
    repo.git("add", ".flow")
    res = commit(repo.path, env=env)
    assert res.returncode == 1 and ".flow/plans/bad/plan.yaml" in res.stderr
    repo.git("rm", "-q", "-r", "--cached", ".flow/plans/bad")
    repo.write(".flow/plans/ok/plan.yaml", VALID)
    repo.git("add", ".flow/plans/ok")
    assert commit(repo.path, env=env).returncode == 0


def test_commits_without_flow_changes_need_no_flowgit(repo: Repo, tmp_path: Path) -> None:
    env = hook_env(PATH=bin_dir(tmp_path, python=None))
    repo.git("config", "--unset", "flowgit.python")
    repo.write(".flow/plans/bad/plan.yaml", INVALID)  # not staged: not this commit's business
    repo.write("notes.txt", "x\n")
    repo.git("add", "notes.txt")
    assert commit(repo.path, env=env).returncode == 0
    repo.git("add", ".flow")
    res = commit(repo.path, env=env)
    assert res.returncode == 1 and "flowgit is not on PATH" in res.stderr


def test_falls_back_to_python3_dash_m(repo: Repo, tmp_path: Path) -> None:
    env = hook_env(PATH=bin_dir(tmp_path, python=sys.executable))
    repo.git("config", "flowgit.python", str(tmp_path / "gone" / "python"))  # a deleted venv
    repo.write(".flow/plans/bad/plan.yaml", INVALID)
    repo.git("add", ".flow")
    res = commit(repo.path, env=env)
    assert res.returncode == 1 and ".flow/plans/bad/plan.yaml" in res.stderr
    repo.git("rm", "-q", "-r", "--cached", ".flow/plans/bad")
    repo.write(".flow/plans/ok/plan.yaml", VALID)
    repo.git("add", ".flow/plans/ok")
    assert commit(repo.path, env=env).returncode == 0


@pytest.mark.format1
@pytest.mark.parametrize("how", ["-a", "path"])
def test_commit_all_and_commit_path_are_checked(worked: Repo, how: str) -> None:
    log = rewrite_event(worked, 1)
    res = commit(worked.path, *(["-a"] if how == "-a" else ["--", str(log)]))
    assert res.returncode == 1 and "T1.jsonl:1: event line edited" in res.stderr


# ----- the pre-commit framework -------------------------------------------------------------------

HOOK_REPO_EXTRA = (".pre-commit-hooks.yaml", "hooks/pre-commit", "flowgit/commands/hooks.py")


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed copy of this checkout (its tracked files, plus the hook files)."""
    dest = tmp_path_factory.mktemp("hook-repo")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for rel in sorted({*filter(None, tracked), *HOOK_REPO_EXTRA}):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True, env=env)
    return dest


HOOK_IDS = ("flowgit-validate", "flowgit-validate-repo", "flowgit-validate-staged")


def run_hooks(project: Path, hook_repo: Path, cache: Path) -> dict[str, tuple[str, str]]:
    """Run every hook of `hook_repo` on the staged files, as a user's `.pre-commit-config.yaml`
    naming it at a rev does: hook id -> (status, output). pre-commit clones the hook repository
    and pip-installs flowgit into its store once (PRE_COMMIT_HOME); a second call reuses it
    (`try-repo` made a fresh store and a fresh pip install each time)."""
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=hook_repo, capture_output=True, text=True,
                         check=True).stdout.strip()
    config = cache / "pre-commit-config.yaml"
    config.write_text(f"repos:\n  - repo: {hook_repo}\n    rev: {rev}\n    hooks:\n"
                      + "".join(f"      - id: {hook}\n" for hook in HOOK_IDS))
    env = hook_env(PRE_COMMIT_HOME=str(cache / "pre-commit"), PIP_CACHE_DIR=str(cache / "pip"),
                   PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)  # the hooks must run the flowgit that pre-commit installed
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "run", "--config", str(config),
                           "--verbose", "--color", "never"],
                          cwd=project, capture_output=True, text=True, env=env, timeout=900,
                          check=False)
    assert "- hook id: " in proc.stdout, proc.stdout + proc.stderr
    chunks = proc.stdout.split("\n- hook id: ")
    results = {}
    for before, chunk in itertools.pairwise(chunks):
        status = before.rstrip().splitlines()[-1].rsplit(".", 1)[-1]
        hook_id, _, output = chunk.partition("\n")
        results[hook_id.strip()] = (status, output)
    assert set(results) == set(HOOK_IDS)
    assert proc.returncode == (1 if any(s == "Failed" for s, _ in results.values()) else 0)
    return results


@pytest.mark.skipif(os.environ.get("FLOWGIT_SKIP_PRECOMMIT") == "1",
                    reason="FLOWGIT_SKIP_PRECOMMIT=1")
@pytest.mark.format1
def test_pre_commit_framework(worked: Repo, hook_repo: Path, tmp_path: Path) -> None:
    # a valid change passes every hook
    worked.write(".flow/plans/ok/plan.yaml", VALID)
    worked.git("add", ".flow")
    results = run_hooks(worked.path, hook_repo, tmp_path)
    assert {hook: status for hook, (status, _) in results.items()} == {
        "flowgit-validate": "Passed", "flowgit-validate-repo": "Passed",
        "flowgit-validate-staged": "Passed"}, results
    worked.git("commit", "-q", "--no-verify", "-m", "ok plan")

    # an invalid plan, a rewritten event line and a deleted log, staged together
    worked.write(".flow/plans/bad/plan.yaml", INVALID)
    rewrite_event(worked, 2)
    worked.git("add", ".flow")
    worked.git("rm", "-q", ".flow/plans/p/events/_plan.jsonl")
    results = run_hooks(worked.path, hook_repo, tmp_path)
    for hook in results:
        status, output = results[hook]
        assert status == "Failed", (hook, output)
        assert ".flow/plans/bad/plan.yaml" in output, (hook, output)
    # only the staged check compares with HEAD, so only it sees the history being rewritten
    output = results["flowgit-validate-staged"][1]
    assert ".flow/plans/p/events/T1.jsonl:2: event line edited" in output
    assert ".flow/plans/p/events/_plan.jsonl: an event log was deleted" in output
