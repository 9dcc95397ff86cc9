"""The fifth session's adversary: what a hostile collaborator (who can push any branch,
`flow/state` and the claim refs) or a careless teammate can make another clone do through
what arrives by `git pull`, `git fetch`, `flowgit sync`, `claim --sync` and merges. Each case
drives real clones of one bare remote, or a real repository, the way the attack arrives.

Open findings (in files another helper owns this session) are strict xfails naming what is
open; /work/team/adv5-findings.md routes them."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import Repo
from test_adversary_gates import clone, published
from test_paths import hand_plan, hook_refuses, refused_alike
from test_state_plan import PLAN, state_repo

from flowgit.formats import yamlio
from flowgit.store.state import log_path


# ----- plumbing an attacker uses: a state tree written by hand -----------------------------------

def _git(r: Repo, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=r.path, input=stdin, capture_output=True, text=True,
                          check=True).stdout


def _tree_with(r: Repo, tree: str | None, path: str, mode: str, kind: str, sha: str, dup: bool = False) -> str:
    """`tree` with the entry `path` set (`dup`: added beside the one there, under the same name,
    as `git mktree` allows and `git fsck` calls duplicateEntries)."""
    lines = [ln for ln in _git(r, "ls-tree", tree).splitlines() if ln] if tree else []
    name, _, rest = path.partition("/")
    if not rest:
        if not dup:
            lines = [ln for ln in lines if ln.split("\t", 1)[1] != name]
        lines.append(f"{mode} {kind} {sha}\t{name}")
    else:
        sub = next((ln.split()[2] for ln in lines if ln.split("\t", 1)[1] == name and ln.split()[1] == "tree"), None)
        lines = [ln for ln in lines if ln.split("\t", 1)[1] != name]
        lines.append(f"040000 tree {_tree_with(r, sub, rest, mode, kind, sha, dup)}\t{name}")
    lines.sort(key=lambda ln: ln.split("\t", 1)[1] + ("/" if ln.split()[1] == "tree" else ""))
    return _git(r, "mktree", "--missing", stdin="\n".join(lines) + "\n").strip()


def _push_state_tree(r: Repo, tree: str) -> None:
    commit = _git(r, "commit-tree", tree, "-p", "flow/state", "-m", "flow: sync").strip()
    _git(r, "update-ref", "refs/heads/flow/state", commit)
    _git(r, "push", "-q", "origin", "flow/state")


def _executing(tmp_path: Path) -> tuple[Repo, Repo, Path]:
    """A maintainer's clone with plan P executing (approvals off), published; the attacker's clone."""
    victim = state_repo(tmp_path / "victim", approvals=None)
    victim.plan("P", PLAN)
    victim.ok("submit", "P")
    bare, mallory = published(victim, tmp_path)
    victim.ok("sync")
    return victim, mallory, bare


# ----- finding 1 (high, fixed): a duplicate tree entry made `sync` drop a claim -------------------

def test_a_duplicate_tree_entry_pushed_to_the_state_does_not_drop_a_claim(tmp_path: Path) -> None:
    """A log that one side holds every line of is taken whole (`_merge_by_ids`), and a side's
    change is read from `diff-tree base theirs`. A tree holding the path twice (the real log,
    then an empty one: `git mktree` writes it, a remote without receive.fsckObjects takes it)
    reads in diff-tree as the empty log *added*, with no base version: the merge took the empty
    log over ours, `_loses_events` never saw the drop, and w1's claim, already on flow/state and
    folded here, was gone. The victim then claimed the task too (exit 0): two winners of T1,
    and `validate` and `doctor` saw nothing."""
    victim, mallory, bare = _executing(tmp_path)
    w1 = clone(bare, tmp_path / "w1", "w1")
    w1.ok("sync")
    assert w1.proc("claim", "P/T1", "--worker", "w1", "--sync").returncode == 0
    w1.ok("sync")
    victim.ok("sync")
    mallory.ok("sync")
    path = log_path("P", "T1")
    held = _git(victim, "show", f"flow/state:{path}")
    assert '"actor":"w1"' in held
    empty = _git(mallory, "hash-object", "-w", "--stdin", stdin="").strip()
    tree = _git(mallory, "rev-parse", "flow/state^{tree}").strip()
    _push_state_tree(mallory, _tree_with(mallory, tree, path, "100644", "blob", empty, dup=True))
    res = victim.proc("claim", "P/T1", "--worker", "w2", "--sync")
    assert res.returncode == 1 and ("claimed by w1" in res.stderr or "twice" in res.stderr), (
        res.returncode, res.stdout, res.stderr)
    assert '"actor":"w1"' in _git(victim, "show", f"flow/state:{path}")
    # sync names the copy in one line and merges nothing
    before = _git(victim, "rev-parse", "flow/state")
    res = victim.proc("sync")
    assert res.returncode == 1 and f"{path}: the path is in its tree twice" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert _git(victim, "rev-parse", "flow/state") == before


# ----- finding 2 (low, fixed): `task add` ended the last task's `|` text -------------------------

def test_task_add_keeps_the_last_tasks_block_text_at_a_file_end_without_a_line_break(repo: Repo) -> None:
    """A teammate's plan.yaml ending in a `|` block with no final line break (an editor that
    strips it): the text is 'line one\\nline two'. `task add` splices the new task after the
    last task's lines and first ends that line, so the untouched task's description became
    'line one\\nline two\\n' (its plan hash, its prompt): every path of `task add` does it."""
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - id: t0\n    title: zero\n")
    path = repo.path / ".flow/plans/p/plan.yaml"
    path.write_text("id: p\ntitle: P\ntasks:\n  - id: t0\n    title: zero\n  - id: t1\n    title: one\n"
                    "    description: |\n      line one\n      line two")
    repo.git("commit", "-q", "--no-verify", "-am", "a teammate's edit, pulled")
    assert yamlio.loads(path.read_text(), "x")["tasks"][1]["description"] == "line one\nline two"
    repo.ok("task", "add", "p", "n1", "--title", "New")
    tasks = yamlio.loads(path.read_text(), "x")["tasks"]
    assert [t["id"] for t in tasks] == ["t0", "t1", "n1"]
    assert tasks[1]["description"] == "line one\nline two"


# ----- finding 3 (low, fixed): an id ending in `.lock` -------------------------------------------

def test_a_task_id_ending_in_lock_is_refused_as_git_refuses_its_branches(repo: Repo) -> None:
    """git refuses a ref name whose part ends in `.lock`. A pulled plan with the task `x.lock`
    read fine, but in format 2 its claim ref `flow/state-claims/P/x.lock` could never be pushed
    (`claim --sync` failed every time with git's 'invalid refspec'), and `run`'s branch
    `flow/P/x.lock` could not be made (the claimed task failed). The id is refused as a device
    name is: by every command alike, the hook and `task add`."""
    hand_plan(repo, "p", "tasks:\n  - {id: A, title: a}\n  - {id: x.lock, title: b}\n")
    first = refused_alike(repo, ("status", "p"), ("claim", "p", "--worker", "w"))
    assert "invalid id 'x.lock'" in first and ".lock" in first
    hook_refuses(repo, ".flow")
    repo.git("clean", "-fdq", ".flow/plans/p")
    repo.plan("q", "id: q\ntitle: q\ntasks:\n  - {id: A, title: a}\n")
    before = repo.commits()
    res = repo.run("task", "add", "q", "B.lock", "--title", "x")
    assert res.code == 2 and ".lock" in res.err and repo.commits() == before, res.err
    res = repo.run("plan", "new", "r.lock")
    assert res.code == 2 and ".lock" in res.err, res.err


def test_a_claim_ref_of_a_lock_task_is_never_read(tmp_path: Path) -> None:
    """Format 2: the id is no task, so a claim ref under it is no claim (never read, never
    pushed), and the plan's other tasks claim with `--sync` as before."""
    victim, _, _ = _executing(tmp_path)
    assert victim.proc("claim", "P/x.lock", "--worker", "w", "--sync").returncode == 2
    res = victim.proc("claim", "P/T1", "--worker", "w", "--sync")
    assert res.returncode == 0, res.stderr


# ----- finding 4 (high, fixed): a timeout that is no number ---------------------------------------

BAD_TIMEOUT_CONFIG = 'validations: [{name: v, run: ["true"], timeout: abc}]'


@pytest.mark.parametrize("bad", [BAD_TIMEOUT_CONFIG, "validations: []\nsignals: [a]"])
def test_a_recorded_config_with_a_timeout_that_is_no_number_leaves_sync_and_doctor_working(
        tmp_path: Path, bad: str) -> None:
    """`Validation.from_any` read a validation's timeout with `float()`, so a config saying
    `timeout: abc` raised ValueError, not the one-line InvalidFile. Pushed to flow/state as the
    recorded config, it made every command of every clone that synced print a traceback,
    `sync` and `doctor --fix` too: the two ways out of a recorded config that does not read
    (SECURITY.md) were closed. Now it is a config that does not read, named in one line."""
    victim, mallory, _ = _executing(tmp_path)
    cfg = _git(mallory, "show", "main:.flow/config.yaml").replace("validations: []", bad)
    assert bad in cfg
    from test_adversary_gates import push_state_file

    push_state_file(mallory, tmp_path, ".flow/config.yaml", cfg)
    for args, code in ((("sync",), 0), (("status", "P"), 1), (("claim", "P/T1", "--worker", "w"), 1)):
        res = victim.proc(*args)
        assert res.returncode == code and "Traceback" not in res.stderr, (args, res.returncode, res.stderr)
    res = victim.proc("status", "P")
    assert res.stderr.strip().splitlines()[-1].startswith("flowgit: error: flow/state:.flow/config.yaml"), res.stderr
    assert ("timeout" if bad == BAD_TIMEOUT_CONFIG else "signals") in res.stderr
    res = victim.proc("doctor", "--json")
    assert "Traceback" not in res.stderr and "recorded_config" in res.stdout, (res.stdout, res.stderr)
    res = victim.proc("doctor", "--fix")
    assert "Traceback" not in res.stderr, res.stderr
    assert victim.proc("status", "P").returncode == 0


def test_a_pulled_checkpoint_validation_timeout_that_is_no_number_is_one_line(repo: Repo) -> None:
    """The same in a plan: every command on it raised ValueError (`validate` too)."""
    hand_plan(repo, "p", "tasks:\n  - {id: A, title: a}\ncheckpoints:\n  - id: cp\n    after: [A]\n"
                         '    validations:\n      - {name: v, run: ["true"], timeout: abc}\n')
    first = refused_alike(repo, ("status", "p"), ("claim", "p", "--worker", "w"))
    assert "timeout" in first


def test_a_pulled_wait_timeout_that_is_no_number_does_not_stop_the_watcher(repo: Repo, watchers: list) -> None:
    """`watch` read a wait's timeout with `float()` before anything else: a teammate's plan
    saying `timeout: abc` killed every clone's watcher on its first pass (a traceback), trusted
    command or not, and no other wait, signal or schedule ran. Now that wait is left unchecked,
    said once, and the others go on."""
    from helpers.procs import Watcher, stop_cleanly, wait_for
    from helpers.state import of_type

    repo.plan("p", 'id: p\ntitle: p\ntasks:\n  - id: bad\n    title: b\n    wait: {run: [sh, -c, "exit 1"], timeout: 5}\n'
                   '  - id: good\n    title: g\n    wait: {run: [sh, -c, "exit 0"], timeout: 5}\n')
    repo.ok("submit", "p")
    plan = repo.path / ".flow/plans/p/plan.yaml"
    plan.write_text(plan.read_text().replace("timeout: 5}\n  - id: good", "timeout: abc}\n  - id: good"))
    repo.git("commit", "-q", "--no-verify", "-am", "a teammate's edit, pulled")
    w = Watcher(repo, "--interval", "1")
    watchers.append(w)
    wait_for(lambda: of_type(repo, "p", "task.wait", "good") or w.proc.poll() is not None, 60, "the good wait's check")
    assert w.proc.poll() is None, w.output
    stop_cleanly(w)
    assert sum("wait condition not checked" in line and "p/bad" in line for line in w.lines) == 1, w.output
    assert not of_type(repo, "p", "task.wait", "bad")


# ----- finding 5 (medium, fixed): a list where text belongs --------------------------------------

@pytest.mark.parametrize("field", ["milestones: 5", "risks: 5", "scope: [a, b]", "executor: [a]",
                                   "executor: {a: 1}", "parent: [a]", "TASK executor: [a]"])
def test_a_pulled_plan_field_of_the_wrong_kind_is_one_line(repo: Repo, field: str) -> None:
    """Plan.from_dict took `scope`, `milestones`, `risks`, `parent` and the plan's and a task's
    `executor` as they came: `milestones: 5` made status, next, graph and claim fail with
    TypeError ('int' object is not iterable), a list as an executor or a parent made `status`
    fail (unhashable type), `scope: [a, b]` made every command on the plan fail. Each is now
    the model's one-line refusal naming the plan, as the schema already said."""
    key, _, value = field.partition(": ")
    if key.startswith("TASK "):
        body = f"tasks:\n  - {{id: A, title: a, {key[5:]}: {value}}}\n"
    else:
        body = f"{key}: {value}\ntasks:\n  - {{id: A, title: a}}\n"
    hand_plan(repo, "p", body)
    first = refused_alike(repo, ("status", "p"), ("claim", "p", "--worker", "w"), ("graph", "p"))
    assert key.split()[-1] in first, first
    res = repo.proc("status")
    assert "Traceback" not in res.stderr, res.stderr


# ----- finding 6 (low, fixed): a plan named like the state branch's last part --------------------

def test_run_of_a_plan_named_state_burns_no_attempt(tmp_path: Path) -> None:
    """`run` works each task on the branch `flow/PLAN/TASK`. In format 2 the state branch is
    `flow/state`, and git cannot create `flow/state/T1` beside it: a teammate's plan named
    `state` had its task claimed, failed with 'cannot lock ref', and the plan halted (stalled),
    an attempt burned in every clone that ran it; `claim` never said so. `run` should refuse
    before it claims (or the id be refused in format 2), in one line."""
    r = state_repo(tmp_path / "repo", approvals=None)
    r.plan("state", "id: state\ntitle: S\ntasks:\n  - {id: T1, title: one, run: [sh, -c, 'true']}\n")
    r.ok("submit", "state")
    res = r.proc("run", "state", "-n", "1", "--executor", "shell")
    assert "Traceback" not in res.stderr
    st = r.ok("status", "state", "--json").json
    assert st["phase"] == "execute" and st["counts"]["failed"] == 0, (res.stdout, res.stderr, st["counts"])
    assert st["counts"]["ready"] == 1 and "cannot be made beside flow/state" in res.stdout + res.stderr


# ----- finding 7 (medium, fixed): a hostile ref name inside a suggested command ---------------------

def test_the_command_a_held_claim_names_runs_nothing_but_the_deletion(tmp_path: Path) -> None:
    """A ref below a claim ref (`flow/state-claims/P/T1/...`) now holds its task, and `sync`,
    `claim --sync` and `doctor` say how to remove it: `git push origin --delete NAME`, with the
    name as the remote has it. git allows `;`, `$`, `|`, `(` and backquotes in a ref name, so
    a teammate's ref `.../T1/x;touch${IFS}pwned` made flowgit print a command that, pasted into
    a shell, runs the teammate's command (SECURITY.md: a refused value is never shown inside a
    suggested command). Run as the user would, it must delete that ref and do nothing else."""
    victim, mallory, bare = _executing(tmp_path)
    head = _git(mallory, "rev-parse", "flow/state").strip()
    _git(mallory, "push", "-q", "origin", f"{head}:refs/heads/flow/state-claims/P/T1/x;touch${{IFS}}pwned")
    res = victim.proc("sync")
    assert res.returncode == 0 and "git push origin --delete" in res.stderr, res.stderr
    suggested = res.stderr.rsplit("`git push", 1)[1].split("`", 1)[0]
    subprocess.run(["bash", "-c", "git push" + suggested], cwd=victim.path, capture_output=True, text=True)
    assert not (victim.path / "pwned").exists()
    left = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/heads/flow/state-claims/"],
                          cwd=bare, capture_output=True, text=True, check=True).stdout
    assert left.strip() == "", left


# ----- finding 8 (medium, fixed): a file name inside a suggested command ---------------------------

def test_the_command_the_hook_suggests_for_a_merged_symlink_runs_nothing_else(repo: Repo) -> None:
    """A teammate's branch adds a symlink under .flow/ named `x;touch${IFS}pwned` (git takes
    any name). Merged with `--no-commit`, the commit's pre-commit hook refuses it and said
    `unstage it with git rm --cached .flow/plans/p/x;touch${IFS}pwned`: pasted into a shell,
    that runs the teammate's command. The path is now quoted as a shell reads it; the command
    unstages the link and does nothing else. (So are the append-only checks' `git restore` and
    `git checkout` suggestions, and `git add` for content that is not there.)"""
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: A, title: a}\n")
    repo.git("checkout", "-q", "-b", "teammate")
    name = ".flow/plans/p/x;touch${IFS}pwned"
    (repo.path / name).symlink_to("/etc/hostname")
    repo.git("add", name)
    repo.git("commit", "-q", "--no-verify", "-m", "a teammate's branch")
    repo.git("checkout", "-q", "main")
    repo.write("README.md", "changed on main\n")
    repo.git("commit", "-q", "-am", "main moves on")
    subprocess.run(["git", "merge", "-q", "--no-ff", "--no-commit", "teammate"], cwd=repo.path,
                   capture_output=True, check=True)
    proc = subprocess.run(["git", "commit", "-q", "-m", "merge"], cwd=repo.path, capture_output=True, text=True)
    assert proc.returncode != 0 and "git rm --cached" in proc.stderr, proc.stderr
    suggested = proc.stderr.split("`git rm --cached", 1)[1].split("`", 1)[0]
    subprocess.run(["bash", "-c", "git rm -q --cached" + suggested], cwd=repo.path, capture_output=True, text=True)
    assert not (repo.path / "pwned").exists()
    assert name not in repo.git("diff", "--cached", "--name-only")



# ----- finding 9 (high, fixed): a config key of the wrong kind --------------------------------------

@pytest.mark.parametrize("bad", ["default_executor: [a]", "executors: {x: {argv: [a], env: 5}}", "validations: 5",
                                 "schedules: 5", "signals: 5", "signals: [a]", "run: {land: [a]}"])
def test_a_pulled_config_key_of_the_wrong_kind_is_one_line(repo: Repo, bad: str) -> None:
    """Config.from_dict took these as they came: `signals: [a]` or `validations: 5` made every
    command fail with a traceback, `validate` and `doctor` too (and, recorded in flow/state by a
    teammate, `sync` and `doctor --fix`: the recorded-config test above). Each is now the
    config's one-line refusal (runconfig.config_parts)."""
    cfg = repo.path / ".flow/config.yaml"
    key = bad.split(":")[0]
    lines = [ln for ln in cfg.read_text().splitlines() if not ln.startswith(f"{key}:")]
    cfg.write_text("\n".join(lines) + f"\n{bad}\n")
    repo.git("commit", "-q", "--no-verify", "-am", "a teammate's config, pulled")
    for args in (("status", "p"), ("claim", "p", "--worker", "w"), ("validate",), ("doctor",)):
        # in-process: an exception escaping main() would fail the test (a process prints it)
        ran = repo.run(*args)
        assert ran.code == 1 and "Traceback" not in ran.err, (args, ran.code, ran.out, ran.err)
    res = repo.proc("status")  # and as a real process: exit 1, one line, no traceback
    assert res.returncode == 1 and "Traceback" not in res.stderr, (res.returncode, res.stdout, res.stderr)
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and ".flow/config.yaml" in res.stderr, res.stderr


# ----- finding 10 (low, fixed): a spec whose lists are not lists ----------------------------------

@pytest.mark.parametrize("bad", ["requirements: 5", "questions: 5"])
def test_task_show_reads_a_pulled_spec_whose_lists_are_not_lists(repo: Repo, bad: str) -> None:
    """`task show` (an agent's context) iterated the spec's `requirements` and `questions` as
    they came: a teammate's spec.yaml saying `requirements: 5` made it fail with TypeError.
    What is no list is nothing there now, as in the executor's prompt (validate names it)."""
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: t0, title: a}\n")
    repo.write(".flow/plans/p/spec.yaml", f"{bad}\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "--no-verify", "-m", "a teammate's spec, pulled")
    for args in (("task", "show", "p/t0"), ("task", "show", "p/t0", "--json")):
        res = repo.proc(*args)
        assert res.returncode == 0 and "Traceback" not in res.stderr, (args, res.stderr)


# ----- finding 11 (low, fixed): a plan.yaml that is a directory -----------------------------------

def test_a_pulled_plan_yaml_that_is_a_directory_is_one_line(repo: Repo) -> None:
    """A teammate's commit holding `.flow/plans/x/plan.yaml/notes` (a folder where the plan file
    belongs): `status`, `plan list`, `trust --list` and `doctor` failed with IsADirectoryError."""
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: t0, title: a}\n")
    repo.write(".flow/plans/x/plan.yaml/notes", "hello\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "--no-verify", "-m", "a teammate's commit, pulled")
    for args in (("status",), ("status", "x"), ("plan", "list"), ("trust", "--list"), ("doctor",)):
        res = repo.proc(*args)
        assert "Traceback" not in res.stderr, (args, res.stderr)
    res = repo.proc("status", "x")
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        "flowgit: error: .flow/plans/x/plan.yaml: a directory, not a plan file: replace it with the plan's YAML"], res.stderr
    assert repo.proc("status", "p").returncode == 0


# ----- finding 12 (low, fixed): a config or a format 1 log that is a directory ---------------------

def test_a_pulled_config_yaml_that_is_a_directory_is_one_line(repo: Repo) -> None:
    """A teammate's commit replacing `.flow/config.yaml` with a folder: every command (validate
    and doctor too) failed with IsADirectoryError."""
    cfg = repo.path / ".flow/config.yaml"
    cfg.unlink()
    repo.write(".flow/config.yaml/notes", "hello\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "--no-verify", "-m", "a teammate's commit, pulled")
    for args in (("status",), ("validate",), ("doctor",)):
        res = repo.proc(*args)
        assert res.returncode == 1 and "Traceback" not in res.stderr, (args, res.stderr)
        assert ".flow/config.yaml" in res.stderr.strip().splitlines()[-1], (args, res.stderr)


@pytest.mark.format1
def test_a_pulled_task_log_that_is_a_directory_holds_its_task(repo: Repo) -> None:
    """Format 1: `.flow/plans/p/events/t0.jsonl/` a folder (a teammate's commit): `status`,
    `claim`, `task show` and `events` failed with IsADirectoryError."""
    repo.plan("p", "id: p\ntitle: p\ntasks:\n  - {id: t0, title: a}\n  - {id: t1, title: b}\n")
    repo.write(".flow/plans/p/events/t0.jsonl/notes", "hello\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "--no-verify", "-m", "a teammate's commit, pulled")
    for args in (("status", "p"), ("claim", "p/t1", "--worker", "w"), ("task", "show", "p/t0"), ("events", "p")):
        res = repo.proc(*args)
        assert "Traceback" not in res.stderr, (args, res.stderr)
        if res.returncode:  # stopped in one line naming the folder and what to do
            assert res.stderr.strip().splitlines() == [res.stderr.strip()], (args, res.stderr)
            assert "t0.jsonl" in res.stderr and "a folder where flowgit expects a file" in res.stderr
