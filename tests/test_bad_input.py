"""Bad input found by black-box review: each gets one line naming the file or task and what to
do, the contract's exit code, no traceback, and nothing written or committed."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import Repo


def unchanged(repo: Repo, commits: int) -> bool:
    return repo.commits() == commits and repo.git("status", "--porcelain", "--", ".flow") == ""


@pytest.mark.parametrize("args", [
    ["plan", "new", "nl\n"],
    ["task", "add", "p", "T1\n", "--title", "x"],
    ["claim", "p/T1\n"],
])
def test_an_id_ending_in_a_newline_is_a_usage_error(repo: Repo, args: list[str]) -> None:
    repo.ok("plan", "new", "p")
    n = repo.commits()
    res = repo.run(*args)
    assert res.code == 2 and "invalid" in res.err and "Traceback" not in res.err
    assert unchanged(repo, n)


def test_an_id_ending_in_a_newline_in_a_file_is_a_schema_error(repo: Repo) -> None:
    repo.write(".flow/plans/q/plan.yaml", 'id: q\ntitle: Q\ntasks:\n  - id: "T-1\\n"\n    title: x\n')
    res = repo.run("validate")
    assert res.code == 1
    assert ".flow/plans/q/plan.yaml:4: tasks[0].id: invalid id 'T-1\\n'" in res.err


@pytest.mark.parametrize("setting,field", [
    ('lease_seconds: "abc"', "lease_seconds"),
    ("lease_seconds: [1]", "lease_seconds"),
    ("lease_seconds: .nan", "lease_seconds"),
    ("lock_timeout: -1", "lock_timeout"),
    ("approvals: {required: x}", "approvals.required"),
    ("retry: {base: x}", "retry.base"),
])
def test_a_config_value_of_the_wrong_type_is_one_line(repo: Repo, setting: str, field: str) -> None:
    repo.ok("plan", "new", "p")
    repo.ok("task", "add", "p", "A", "--title", "a")
    repo.write(".flow/config.yaml", f"version: 1\n{setting}\n")
    for args in (["--json", "status", "p"], ["claim", "p", "--worker", "w"]):
        res = repo.run(*args)
        assert res.code == 1, res
        line = res.out if args[0] == "--json" else res.err
        assert ".flow/config.yaml" in line and field in line and "Traceback" not in res.err
    assert repo.run("validate").code == 1


@pytest.mark.parametrize("value", [".inf", ".nan", "-1"])
def test_a_non_finite_estimate_is_refused_everywhere(repo: Repo, value: str) -> None:
    repo.ok("plan", "new", "num")
    repo.write(".flow/plans/num/plan.yaml",
               f"id: num\ntitle: N\ntasks:\n  - id: T-1\n    title: x\n    estimate: {value}\n")
    res = repo.run("validate")
    assert res.code == 1 and ".flow/plans/num/plan.yaml:6: tasks[0].estimate" in res.err
    for args in (["status", "num"], ["graph", "num"], ["status"]):
        res = repo.run(*args)
        assert res.code == 1 and "num/plan.yaml" in res.err and "Traceback" not in res.err


def test_a_symlinked_plan_directory_is_reported_not_skipped(repo: Repo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "plan.yaml").write_text("id: s\ntitle: S\ntasks: []\n")
    os.symlink(outside, repo.path / ".flow/plans/s")
    res = repo.run("validate")
    assert res.code == 1 and ".flow/plans/s: is a symlink" in res.err
    for args in (["plan", "list"], ["status"]):
        assert ".flow/plans/s is a symlink and was left out" in repo.ok(*args).err


def test_parent_cycles_are_refused_and_status_still_shows_every_plan(repo: Repo) -> None:
    res = repo.run("plan", "new", "selfish", "--parent", "selfish")
    assert res.code == 1 and "is its own parent" in res.err
    repo.ok("plan", "new", "e")
    repo.ok("plan", "new", "f", "--parent", "e")
    plan = repo.path / ".flow/plans/e/plan.yaml"
    plan.write_text(plan.read_text().replace("title: e", "title: e\nparent: f"))
    res = repo.run("validate")
    assert res.code == 1 and "plans are each other's parents e -> f -> e" in res.err
    shown = repo.ok("status").out
    assert "e " in shown and "f " in shown


def test_dependencies_on_the_plan_itself(repo: Repo) -> None:
    src = repo.path.parent / "cp.yaml"
    src.write_text("id: cp\ntitle: C\ntasks:\n  - {id: T-1, title: a}\n"
                   "  - {id: T-2, title: b, depends_on: [cp]}\n")
    res = repo.run("plan", "new", "cp", "--from", str(src))
    assert res.code == 1 and "task T-2 depends on 'cp', which is this plan itself" in res.err
    src.write_text(src.read_text().replace("[cp]", "[cp/T-1]"))
    res = repo.run("plan", "new", "cp", "--from", str(src))
    assert res.code == 1 and "write 'T-1' without the 'cp/' prefix" in res.err


@pytest.mark.parametrize("title", ["", "  ", "two\nlines"])
def test_adr_new_needs_a_one_line_title(repo: Repo, title: str) -> None:
    n = repo.commits()
    res = repo.run("adr", "new", title)
    assert res.code == 2 and "one-line title" in res.err
    assert unchanged(repo, n)


def test_diff_and_history_say_a_plan_does_not_parse(repo: Repo) -> None:
    repo.ok("plan", "new", "a")
    plan = repo.path / ".flow/plans/a/plan.yaml"
    plan.write_text("id: a\ntitle: [\n")
    res = repo.run("diff", "HEAD")
    assert res.code == 1 and res.err.count("\n") == 1
    assert "working tree:.flow/plans/a/plan.yaml:3: invalid YAML" in res.err
    repo.git("commit", "-qam", "broken", "--no-verify")
    assert repo.run("--json", "diff", "HEAD~1", "HEAD").code == 1
    plan.write_text("id: a\ntitle: A\ntasks: [{id: t, title: T}]\n")
    repo.git("commit", "-qam", "fixed", "--no-verify")
    versions = repo.ok("--json", "history", "a").json["versions"]
    assert [v["summary"].split(" (")[0] for v in versions] == [
        "+1 task(s)", "invalid", "created with 0 task(s)"]
    assert "removed" not in repo.ok("diff", "HEAD~2", "HEAD").out


def test_staged_deletion_of_a_plan_others_wait_on_is_refused(repo: Repo) -> None:
    repo.plan("a2", "id: a2\ntitle: A\ntasks: [{id: T-1, title: x}]\n")
    repo.plan("b2", "id: b2\ntitle: B\nparent: a2\ntasks: [{id: T-1, title: x, depends_on: [a2/T-1]}]\n")
    repo.git("rm", "-q", ".flow/plans/a2/plan.yaml")
    res = repo.run("validate", "--staged")
    assert res.code == 1
    assert ("deleting plan a2 breaks plan b2 (task T-1 depends on 'a2/T-1')" in res.err
            and "(its parent is 'a2')" in res.err)


@pytest.mark.parametrize("args", [
    ["task", "add", "n", "X", "--title", "x"],
    ["adr", "new", "Pick one", "--plan", "n"],
])
def test_plan_editors_refuse_over_the_users_uncommitted_edits(repo: Repo, args: list[str]) -> None:
    repo.ok("plan", "new", "n")
    plan = repo.path / ".flow/plans/n/plan.yaml"
    plan.write_text(plan.read_text().replace("title: n", "title: edited by hand"))
    n = repo.commits()
    res = repo.run(*args)
    assert res.code == 1 and "n/plan.yaml has uncommitted changes" in res.err
    assert repo.commits() == n and "edited by hand" in plan.read_text()


def _claimed_then_cut(repo: Repo) -> tuple[Path, bytes]:
    repo.plan("n", "id: n\ntitle: N\ntasks:\n  - {id: A, title: a}\n  - {id: B, title: b}\n")
    repo.ok("claim", "n/A", "--worker", "w")
    log = repo.path / ".flow/plans/n/events/A.jsonl"
    good = log.read_bytes()
    log.write_bytes(good[:-10])  # the committed claim, cut short: not a crash of ours
    return log, good


@pytest.mark.format1
def test_doctor_fix_restores_cut_committed_events_instead_of_committing_the_loss(repo: Repo) -> None:
    log, good = _claimed_then_cut(repo)
    kinds = {p["kind"] for p in repo.run("--json", "doctor").json["problems"]}
    assert "rewritten" in kinds
    n = repo.commits()
    assert repo.ok("--json", "doctor", "--fix").json["ok"]
    assert log.read_bytes() == good and repo.commits() == n
    assert repo.ok("--json", "status", "n").json["counts"]["claimed"] == 1


@pytest.mark.format1
def test_a_transition_on_a_cut_log_restores_it_and_asks_to_retry(repo: Repo) -> None:
    log, good = _claimed_then_cut(repo)
    n = repo.commits()
    res = repo.run("claim", "n/A", "--worker", "other")  # the cut log made A look ready
    assert res.code == 4 and "restored from HEAD" in res.err
    assert log.read_bytes() == good and repo.commits() == n
    res = repo.run("claim", "n/A", "--worker", "other")
    assert res.code == 1 and "w" in res.err
    repo.ok("heartbeat", "n/A", "--worker", "w")
    assert repo.git("show", "HEAD:.flow/plans/n/events/A.jsonl").encode().startswith(good.rstrip(b"\n"))


def test_small_refusals_say_what_is_wrong(repo: Repo) -> None:
    repo.ok("plan", "new", "p")
    res = repo.run("validate", str(repo.path / "README.md"))
    assert res.code == 1 and "README.md: not under .flow/" in res.err
    assert repo.ok("validate", str(repo.path)).out.startswith("ok:")
    assert repo.run("plan", "list", "--phase", "bogus").code == 2
    res = repo.run("plan", "show", "p", "--rev", "no-such-rev")
    assert res.code == 1 and "unknown revision 'no-such-rev'" in res.err
    plan = repo.path / ".flow/plans/p/plan.yaml"
    plan.write_text(plan.read_text() + "milestones:\n  - {id: m1, due: not-a-date}\n")
    res = repo.run("validate")
    assert res.code == 1 and res.err.count("milestones[0].due") == 1


@pytest.mark.format1
def test_a_torn_line_committed_by_hand_is_dropped_not_a_wedge(repo: Repo) -> None:
    repo.plan("n", "id: n\ntitle: N\ntasks:\n  - {id: A, title: a}\n")
    repo.ok("claim", "n/A", "--worker", "w")
    log = repo.path / ".flow/plans/n/events/A.jsonl"
    with log.open("ab") as fh:
        fh.write(b'{"id":"01JX')
    repo.git("commit", "-qam", "a torn line, committed without the hook", "--no-verify")
    repo.ok("heartbeat", "n/A", "--worker", "w")
    lines = repo.git("show", "HEAD:.flow/plans/n/events/A.jsonl").splitlines()
    assert len(lines) == 2 and all(line.startswith("{") and line.endswith("}") for line in lines)
    assert repo.ok("--json", "doctor").json["ok"]


@pytest.mark.format1
@pytest.mark.parametrize("damage", ["cut in the middle", "id edited"])
def test_restoring_a_log_keeps_no_fragment_and_no_duplicate(repo: Repo, damage: str) -> None:
    repo.plan("n", "id: n\ntitle: N\ntasks:\n  - {id: A, title: a}\n")
    repo.ok("claim", "n/A", "--worker", "w")
    repo.ok("start", "n/A", "--worker", "w")
    log = repo.path / ".flow/plans/n/events/A.jsonl"
    good = log.read_bytes()
    first, second = good.splitlines(keepends=True)
    if damage == "cut in the middle":
        log.write_bytes(first[:40] + b"\n" + second + b'{"torn')
    else:
        log.write_bytes(first.replace(b'"id":"', b'"id":"X', 1) + second)
    repo.ok("doctor", "--fix")
    assert log.read_bytes() == good
    assert repo.git("status", "--porcelain", "--", ".flow") == ""


def test_a_misspelt_executor_placeholder_is_refused_other_braces_are_text(repo: Repo) -> None:
    cfg = repo.path / ".flow/config.yaml"
    text = cfg.read_text()
    cfg.write_text(text.replace("executors: {}", "executors:\n  mine: {argv: [agent, '{prompt_fiel}']}"))
    res = repo.run("validate")
    assert res.code == 1 and "unknown placeholder {prompt_fiel}: did you mean {prompt_file}?" in res.err
    cfg.write_text(text.replace("executors: {}", "executors:\n  mine: {argv: [awk, '{print}', "
                                                 "sh, -c, 'echo ${f}']}"))
    assert repo.run("validate").code == 0


@pytest.mark.parametrize("where", ["a-file/sub", "missing-parent-is-fine"])
def test_demo_into_a_directory_it_cannot_use(tmp_path: Path, where: str) -> None:
    import subprocess
    import sys

    (tmp_path / "a-file").write_text("x")
    target = tmp_path / where
    if where == "missing-parent-is-fine":
        target.mkdir()
        (target / "occupied").write_text("x")
    res = subprocess.run([sys.executable, "-m", "flowgit", "demo", str(target)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1


def test_plan_new_from_a_file_with_another_id_says_so(repo: Repo) -> None:
    src = repo.path.parent / "o.yaml"
    src.write_text("id: other\ntitle: T\ntasks: []\n")
    res = repo.ok("plan", "new", "renamed", "--from", str(src))
    assert "has id 'other': the plan is created as 'renamed'" in res.err
    assert (repo.path / ".flow/plans/renamed/plan.yaml").read_text().startswith("id: renamed\n")


@pytest.mark.format1
def test_a_log_cut_at_a_line_boundary_is_restored_not_committed(repo: Repo) -> None:
    """No torn tail to see: git's index still knows how long the committed log was."""
    repo.plan("n", "id: n\ntitle: N\ntasks:\n  - {id: A, title: a}\n  - {id: B, title: b}\n")
    repo.ok("claim", "n/A", "--worker", "w")
    repo.ok("start", "n/A", "--worker", "w")
    log = repo.path / ".flow/plans/n/events/A.jsonl"
    good = log.read_bytes()
    log.write_bytes(good.splitlines(keepends=True)[0])  # `task.started` gone, at a line end
    n = repo.commits()
    res = repo.run("heartbeat", "n/A", "--worker", "w")
    assert res.code == 4 and "restored from HEAD" in res.err
    assert log.read_bytes() == good and repo.commits() == n
    repo.ok("heartbeat", "n/A", "--worker", "w")
    assert repo.git("show", "HEAD:.flow/plans/n/events/A.jsonl").encode().startswith(good)


def test_indexed_size_reads_index_versions_2_and_3_and_declines_4(repo: Repo) -> None:
    from flowgit import git

    repo.write("deep/file.txt", "12345\n")
    repo.write("file.txt", "1\n")  # a name that ends another: the entry's own length decides
    repo.git("add", "deep/file.txt", "file.txt")
    dirs = git.find_dirs(repo.path)
    assert git.indexed_size(dirs, "deep/file.txt") == 6 and git.indexed_size(dirs, "file.txt") == 2
    assert git.indexed_size(dirs, "no/such") is None
    repo.git("update-index", "--skip-worktree", "file.txt")  # extended flags: version 3
    assert git.indexed_size(dirs, "file.txt") == 2
    repo.git("update-index", "--no-skip-worktree", "file.txt")
    repo.git("update-index", "--index-version", "4")
    assert git.indexed_size(dirs, "file.txt") is None  # compressed names: not read, not guessed


@pytest.mark.format1
def test_compact_never_snapshots_a_cut_log(repo: Repo) -> None:
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - {id: A, title: a}\n")
    for _ in range(3):
        repo.ok("claim", "p/A", "--worker", "w1")
        repo.ok("release", "p/A", "--worker", "w1")
    log = repo.path / ".flow/plans/p/events/A.jsonl"
    good = log.read_bytes()
    log.write_bytes(b"".join(good.splitlines(keepends=True)[:-1]))  # the last release, cut
    n = repo.commits()
    res = repo.run("compact", "p", "--keep", "1")
    assert res.code == 4 and "restored from HEAD" in res.err
    assert log.read_bytes() == good and repo.commits() == n
    repo.ok("compact", "p", "--keep", "1")
    assert repo.ok("--json", "status", "p").json["counts"]["ready"] == 1


@pytest.mark.parametrize("broken", ["spec", "adr"])
def test_diff_refuses_a_spec_or_adr_that_does_not_parse(repo: Repo, broken: str) -> None:
    repo.ok("plan", "new", "p")
    repo.ok("adr", "new", "Use Postgres")
    if broken == "spec":
        path = repo.write(".flow/plans/p/spec.yaml", "plan: p\nrequirements: [\n")
    else:
        (path,) = (repo.path / ".flow/adrs").glob("ADR-0001-*.yaml")
        path.write_text(path.read_text() + ": [\n")
    res = repo.run("diff", "HEAD")
    assert res.code == 1 and res.err.count("\n") == 1 and "cannot be compared" in res.err
    assert path.name in res.err


def test_adr_references_are_checked(repo: Repo) -> None:
    repo.ok("plan", "new", "p")
    repo.ok("adr", "new", "One")
    repo.ok("adr", "new", "Two")
    (one,) = (repo.path / ".flow/adrs").glob("ADR-0001-*.yaml")
    (two,) = (repo.path / ".flow/adrs").glob("ADR-0002-*.yaml")
    one.write_text(one.read_text().replace("supersedes: []", "supersedes: [ADR-0002]")
                   .replace("plans: []", "plans: [nope]"))
    two.write_text(two.read_text().replace("supersedes: []", "supersedes: [ADR-0001]")
                   + "superseded_by: ADR-0099\n")
    (repo.path / ".flow/adrs/ADR-0002-again.yaml").write_text(two.read_text())
    err = repo.run("validate").err
    assert "ADRs supersede each other in a cycle" in err
    assert "plans lists 'nope', which is not a plan" in err
    assert "names 'ADR-0099' in supersedes/superseded_by, which does not exist" in err
    assert "ADR-0002-two.yaml: ADR-0002 is also .flow/adrs/ADR-0002-again.yaml" in err


def test_spec_checks(repo: Repo) -> None:
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - {id: T-1, title: a}\ncheckpoints:\n  - {id: CP-1, after: [T-1]}\n")
    repo.write(".flow/plans/p/spec.yaml",
               "plan: other\nrequirements:\n  - {id: R1, kind: ubiquitous, text: 'The system shall x.', tasks: [CP-1]}\n"
               "questions:\n  - {id: Q1, question: 'a?'}\n  - {id: Q1, question: 'b?'}\n")
    repo.write(".flow/plans/ghost/spec.yaml", "plan: ghost\nrequirements: []\n")
    err = repo.run("validate").err
    assert "plan 'other' does not match its directory 'p'" in err
    assert "duplicate question id 'Q1'" in err
    assert "refers to task 'CP-1', not in plan p" in err
    assert "ghost/spec.yaml: there is no plan ghost" in err


def test_adr_slugs_keep_the_letters_of_accented_titles(repo: Repo) -> None:
    assert repo.ok("--json", "adr", "new", "Ünïcode ✓ title").json["path"].endswith(
        "ADR-0001-unicode-title.yaml")


def test_the_hook_sees_what_a_change_breaks_in_files_it_leaves_alone(repo: Repo) -> None:
    repo.plan("base", "id: base\ntitle: B\nadrs: []\ntasks:\n  - {id: T-1, title: a}\n  - {id: T-2, title: b}\n")
    repo.plan("dep", "id: dep\ntitle: D\ntasks:\n  - {id: D-1, title: d, depends_on: [base/T-1]}\n")
    repo.write(".flow/plans/base/spec.yaml", "plan: base\nrequirements:\n"
               "  - {id: R1, kind: ubiquitous, text: 'The system shall x.', tasks: [T-2]}\n")
    repo.ok("adr", "new", "Keep it", "--plan", "dep")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "spec", "--no-verify")
    plan = repo.path / ".flow/plans/base/plan.yaml"
    plan.write_text("id: base\ntitle: B\nadrs: []\ntasks: []\n")
    repo.git("add", str(plan))
    err = repo.run("validate", "--staged").err
    assert "T-1 is gone, but plan dep task D-1 depends on 'base/T-1'" in err
    assert "T-2 is gone, but .flow/plans/base/spec.yaml requirement R1 names it" in err
    repo.git("reset", "-q")
    repo.git("checkout", "-q", "--", str(plan))
    (adr,) = (repo.path / ".flow/adrs").glob("ADR-0001-*.yaml")
    repo.git("rm", "-q", str(adr))
    res = repo.run("validate", "--staged")
    assert res.code == 1 and "deleting ADR-0001 breaks plan dep, which lists it" in res.err


def test_a_schedule_interval_past_ten_years_is_a_config_error(repo: Repo) -> None:
    cfg = repo.path / ".flow/config.yaml"
    cfg.write_text(cfg.read_text() + "schedules:\n  - {id: s, every: 4000d, plan: p, run: [echo]}\n")
    res = repo.run("validate")
    assert res.code == 1 and "schedules[0].every: expected a number >= 0 and <= 3.1536e+08" in res.err
