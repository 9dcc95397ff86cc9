"""`flowgit doctor [--fix]`: find and repair what a crash or a hand edit left behind."""
from __future__ import annotations

import os
import shutil
import stat
from typing import Any, Callable

from flowgit import git
from flowgit.cli.app import App
from flowgit.cli.output import shown
from flowgit.core.events import PLAN_LOG
from flowgit.errors import ExitCode, FlowError, InvalidFile, NotFound
from flowgit.formats.jsonlmerge import event_sort_key, parse_lines
from flowgit.ids import id_problem, is_valid_id
from flowgit.store.files import write_atomic
from flowgit.store.healing import heal_log
from flowgit.store.repo import FLOW, FlowRepo, iter_flow_files


def _problem(kind: str, path: str, message: str) -> dict[str, Any]:
    return {"kind": kind, "path": path, "message": message, "fixed": False}


def diagnose(repo: FlowRepo) -> list[dict[str, Any]]:
    problems = _followed_config(repo)
    busy = git.operation_in_progress(repo.dirs)
    if busy:
        problems.append(_problem("git_busy", "", f"{busy} is in progress: finish or abort it"))
    journal = repo.journal.path
    if journal.exists():
        problems.append(_problem("journal", repo.rel(journal) if journal.is_relative_to(repo.root) else str(journal),
                                 "a command was interrupted between appending and committing"))
    index_lock = git.index_lock(repo.dirs)
    if index_lock.exists():
        problems.append(_problem(
            "git_lock", str(index_lock),
            "git's index is locked: a git command is running, or one was killed; --fix removes it "
            "only when a flowgit command died mid-commit, else remove it once no git command runs"))
    if git.config_get(repo.root, "merge.flowgit-jsonl.driver") is None:
        problems.append(_problem("merge_driver", ".git/config", "the event-log merge driver is not configured in this clone"))
    for path in iter_flow_files(repo):
        rel = repo.rel(path)
        if path.is_symlink():
            problems.append(_problem("symlink", rel, "a symlink inside .flow/: replace it with a real file"))
            continue
        if not rel.endswith(".jsonl"):
            continue
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            problems.append(_problem("torn", rel, "torn last line (a write cut off by a crash)"))
        try:
            lines = parse_lines(data)
        except ValueError as exc:
            problems.append(_problem("bad_line", rel, f"{exc}: restore the file from git"))
            continue
        ids = [e["id"] for e in lines]
        if len(ids) != len(set(ids)):
            problems.append(_problem("duplicates", rel, f"{len(ids) - len(set(ids))} duplicate event(s)"))
    uncommitted = [p for p in git.changed_paths(repo.root, FLOW) if p.endswith(".jsonl")]
    for rel in uncommitted:
        path = repo.root / rel
        if not _real_file(repo, rel):
            if not any(p["path"] == rel for p in problems):
                problems.append(_problem("symlink", rel, "not a plain file inside .flow/ (a symlink, "
                                         "or under one): remove it; --fix never commits it"))
            continue
        head = git.show_blob(repo.root, "HEAD", rel) or b""
        if path.is_file() and not path.read_bytes().startswith(head[: head.rfind(b"\n") + 1]):
            problems.append(_problem("rewritten", rel, "committed events were cut or edited (event "
                                     "logs are append-only): --fix takes them back from HEAD"))
        else:
            why = _not_committable(repo, rel, tracked=bool(head))
            if why:
                problems.append(_problem("unvalidated", rel, f"uncommitted events that --fix will not "
                                         f"commit: {why}"))
            else:
                problems.append(_problem("uncommitted", rel, "events appended but not committed"))
    from flowgit.formats.validation import validate_files
    from flowgit.store.planedit import adr_ids

    files = {repo.rel(p): p.read_bytes() for p in iter_flow_files(repo)
             if not p.is_symlink() and p.is_file()}
    report = validate_files(files, None, adr_ids(repo))
    for line in report.warnings:
        problems.append(_problem("unknown_type", line.split(":", 1)[0], line))
    for line in report.errors:
        if "torn last line" in line or "duplicate event id" in line:
            continue
        problems.append(_problem("invalid", line.split(":", 1)[0], line))
    rules = new_rule_problems(repo)
    if rules:  # said once, each case with its fix, not again as validate's first line per file
        marks = ("invalid path", "differ only by case", "Windows device", "ends with '.'",
                 "inside a script", "cannot end with '.'")
        problems = [p for p in problems if p["kind"] != "invalid" or not any(m in p["message"] for m in marks)]
    problems += rules
    for pid in repo.plan_ids():
        try:
            plan = repo.load_plan(pid).plan
        except (InvalidFile, NotFound):
            continue
        known = set(plan.node_ids())
        for task in repo.log_streams(pid):
            if task != "_plan" and task not in known:
                problems.append(_problem("orphan_log", repo.log_display(pid, task),
                                         f"events for task {task}, which is no longer in plan {pid} (kept; informational)"))
    problems += _trust_problems(repo)
    try:
        store = repo.state_store
    except FlowError:
        store = None  # the config's own problem is reported above
    if store is not None:
        from flowgit.ops.migrate import unmigrated_branches
        from flowgit.store.imports import stray_logs

        for ref in unmigrated_branches(repo):
            problems.append(_problem("unmigrated_branch", ref, "this branch is still format 1 (event logs in the "
                                     "branch): merging it brings its logs, which the next write moves to the state branch"))
        for rel in stray_logs(repo):
            problems.append(_problem("stray_log", rel, "an in-branch event log in a format 2 repository: "
                                     "the next write moves it to the state branch (commit or discard edits to it first)"))
        from flowgit.ops.claimrefs import held

        holding, unknown = held(repo, repo.work_config.remote)
        for line in holding:  # fetched claim refs that hold their task
            ref, _, what = line.partition(": ")
            problems.append(_problem("held_claim", ref, what))
        for line in unknown:  # claims of tasks no plan here has: not folded (yet)
            ref, _, what = line.partition(": ")
            problems.append(_problem("unknown_claim", ref, what))
        problems += _state_log_problems(repo)
    return problems + _work_tree_cache(repo)


def _state_log_problems(repo: FlowRepo) -> list[dict[str, Any]]:
    """Lines of the state branch's logs the checker refuses (a fetch or a hand-made state
    commit brought them): each holds its task, or its plan for the plan log, until removed."""
    from flowgit.store import plansplice
    from flowgit.store.statelogs import check_state_logs

    _, errors, warnings = check_state_logs(repo)
    plansplice.store(repo).save()
    out = [_problem("invalid", line.partition(": ")[0], line + " (it holds its task, or its plan for "
                    "_plan.jsonl, until the line is removed)") for line in errors]
    return out + [_problem("unknown_type", line.partition(": ")[0], line) for line in warnings]


def _work_tree_cache(repo: FlowRepo) -> list[dict[str, Any]]:
    """A `.flow/.cache/` in the work tree: the derived cache lives in the git dir (ADR 0012), so
    one committed there (a teammate's) or left by an older flowgit is never read; said, with
    how to remove it."""
    rel = f"{FLOW}/.cache"
    committed = git.tree_blob_ids(repo.root, "HEAD", rel + "/") if git.head(repo.root) else {}
    if committed:
        return [_problem("committed_cache", rel + "/", f"{len(committed)} derived-cache file(s) committed in "
                         "this branch: flowgit never reads them (its cache is in .git/flowgit/); remove "
                         f"them from the branch with `git rm -r --cached {rel}` and commit")]
    old = repo.flow / ".cache"
    if not old.is_symlink() and old.is_dir() and any(old.glob("*.marshal")):
        return [_problem("old_cache", rel + "/", "an older flowgit's derived cache, no longer read "
                         f"(the cache is in .git/flowgit/): delete it with `rm {rel}/*.marshal`")]
    return []


def _followed_config(repo: FlowRepo) -> list[dict[str, Any]]:
    """The config execution follows, when it does not read: recorded in the state by a sync
    (`--fix` puts back the last one that read), or a default branch's (fixed by a commit there).
    The rest of the diagnosis runs on this work tree's config."""
    from flowgit.store.configpin import REPAIR, follow_work

    try:
        bad = follow_work(repo)
    except FlowError:
        return []  # the work tree's own config: validate's lines below say what is wrong
    if bad is None:
        return []

    bad = bad.removesuffix(REPAIR)
    if bad.startswith("no default branch"):
        return [_problem("default_branch", ".git/config", bad)]
    store = repo.state_store
    where = f"{store.branch}:.flow/config.yaml" if store is not None else ""
    if where and bad.startswith(where + ":"):
        rest = bad[len(where) + 1:].lstrip()
        what = rest if bad.startswith(where + ": ") else f"line {rest}"  # PATH:LINE: ...
        return [_problem("recorded_config", where, f"{what}: every command but sync and "
                         "doctor stops on it; `flowgit doctor --fix` puts back the last recorded config "
                         "that reads (or removes it), then `flowgit sync` shares the repair")]
    path, _, what = bad.partition(": ")
    return [_problem("followed_config", path, f"{what}: execution follows this config (approvals off or "
                     "via: merge); every command but sync and doctor stops on it: commit a fix to that branch")]


def new_rule_problems(repo: FlowRepo) -> list[dict[str, Any]]:
    """What rules added in issue 13 refuse in this repository, every case with its fix (the
    commands stop at the first): files outside the repository, ids that differ only by case or
    name a Windows device, placeholders inside an executor's script. (Commands not yet trusted
    in this clone: `_trust_problems`.)"""
    from flowgit.core.semantic import config_breaks, rule_breaks
    from flowgit.formats import yamlio
    from flowgit.ids import case_twins

    lines: list[str] = []
    config = repo.flow / "config.yaml"
    if _real_file(repo, repo.rel(config)):
        lines += config_breaks(repo.rel(config), _raw_yaml(config, repo.rel(config), yamlio))
    plans = repo.flow / "plans"
    names = sorted(e.name for e in os.scandir(plans) if e.is_dir(follow_symlinks=False)) \
        if plans.is_dir() and not plans.is_symlink() else []
    for name in names:
        path = plans / name / "plan.yaml"
        if not _real_file(repo, repo.rel(path)):
            continue
        display = repo.rel(path)
        problem = id_problem(name)
        if problem and "Windows" in problem:
            lines.append(f"{display}: plan id {name!r}: {problem}")
        lines += rule_breaks(display, _raw_yaml(path, display, yamlio))
    for twins in case_twins(names):
        lines.append(f".flow/plans/{twins[0]}/plan.yaml: plan ids {' and '.join(map(repr, twins))} "
                     "differ only by case: on macOS and Windows they are one directory; rename one")
    return [_problem("new_rule", line.split(":", 1)[0], line.split(": ", 1)[1]) for line in lines]


def _raw_yaml(path: Any, display: str, yamlio: Any) -> Any:
    try:
        return yamlio.load_file(path, display)
    except InvalidFile:
        return None  # reported by validate's lines above


def _real_file(repo: FlowRepo, rel: str) -> bool:
    """A regular file under .flow/ with no symlink on the way to it."""
    path = repo.root
    for part in rel.split("/"):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return False
        if stat.S_ISLNK(mode):
            return False
    return stat.S_ISREG(mode)


def _not_committable(repo: FlowRepo, rel: str, tracked: bool) -> str | None:
    """Why an event log with uncommitted lines must not be committed by --fix: it does not
    validate, or it is a new log (nothing of it in HEAD) for a task its plan does not have."""
    from flowgit.formats.validation import LOG_RE, Report, check_log

    m = LOG_RE.match(rel)
    if not m or not is_valid_id(m.group(1)) or (m.group(2) != PLAN_LOG and not is_valid_id(m.group(2))):
        return "not an event log of a plan (.flow/plans/PLAN/events/TASK.jsonl)"
    plan_id, stream = m.groups()
    report = Report()
    data = (repo.root / rel).read_bytes()
    check_log(rel, data[: data.rfind(b"\n") + 1], plan_id, stream, report)
    if report.errors:
        return report.errors[0]
    if not tracked and stream != PLAN_LOG:
        try:
            known = set(repo.load_plan(plan_id).plan.node_ids())
        except (InvalidFile, NotFound):
            return f"plan {plan_id} does not load"
        if stream not in known:
            return f"a new log for {stream}, which is not a task of plan {plan_id}: remove it"
    return None


def _trust_problems(repo: FlowRepo) -> list[dict[str, Any]]:
    """Commands flowgit would refuse to run here (not trusted in this clone), and approvals
    that could not count, each with its fix."""
    from flowgit.errors import FlowError
    from flowgit.ops import trust
    from flowgit.store.approvals import signers_inside

    out = []
    config_ok = True
    try:
        repo.config
    except FlowError:
        config_ok = False  # reported as invalid above
    pids = []
    for pid in repo.plan_ids():
        try:
            repo.load_plan(pid)
            pids.append(pid)
        except FlowError:
            continue
    if config_ok:
        for cmd in trust.untrusted(repo, pids):
            why = trust.why_untrusted(repo, cmd)
            out.append(_problem("untrusted", cmd.file, f"{cmd.key}: not run: {why}"))
        inside = signers_inside(repo.root) if repo.config.approvals_signed else None
        if inside:
            out.append(_problem("signers_inside", inside, "approvals.signed: gpg.ssh.allowedSignersFile "
                                "lies inside the repository, where any commit can change it: no "
                                "approval counts; list the keys in a file outside the repository"))
    return out


INFO = ("orphan_log", "unknown_type", "unknown_claim", "unmigrated_branch", "stray_log", "committed_cache", "old_cache")  # said, never a failure
FIXABLE = ("journal", "torn", "rewritten", "duplicates", "uncommitted", "merge_driver", "git_lock",
           "recorded_config")


def fix(repo: FlowRepo, problems: list[dict[str, Any]], warn: Callable[[str], None]) -> None:
    from flowgit.ops.clone_setup import setup_local

    with repo.writing() as w:
        touched = []
        for p in problems:
            if p["kind"] == "journal":
                p["fixed"] = True
            elif p["kind"] == "git_lock":
                p["fixed"] = not git.index_locked(repo.dirs)
            elif p["kind"] == "merge_driver":
                setup_local(repo.root, warn)
                p["fixed"] = True
            elif p["kind"] == "recorded_config":
                from flowgit.store.configpin import restore

                warn(f"{p['path']}: {restore(repo)}")
                p["fixed"] = True
            elif p["kind"] in ("torn", "rewritten", "duplicates"):
                path = repo.root / p["path"]
                data = path.read_bytes()
                if p["kind"] in ("torn", "rewritten"):
                    heal_log(repo, path)
                else:
                    seen: dict[str, bytes] = {}
                    for raw in data.split(b"\n"):
                        if raw.strip():
                            ev = parse_lines(raw + b"\n")[0]
                            seen.setdefault(ev["id"], raw)
                    ordered = sorted(seen.values(), key=lambda r: event_sort_key(parse_lines(r + b"\n")[0]))
                    write_atomic(path, b"".join(r + b"\n" for r in ordered))
                touched.append(p["path"])
                p["fixed"] = True
            elif p["kind"] == "uncommitted":
                touched.append(p["path"])
                p["fixed"] = True
        touched = sorted(set(touched) & set(git.changed_paths(repo.root, FLOW)))
        # what goes into the commit is checked again as it is now, whatever was found before
        for rel in touched:
            if _real_file(repo, rel) and not _not_committable(
                    repo, rel, tracked=git.show_blob(repo.root, "HEAD", rel) is not None):
                w.replace(repo.root / rel, (repo.root / rel).read_bytes())  # as repaired
        w.message = "flow: doctor repaired event logs\n\nFlow-Event: doctor"
    cache = repo.cache.folder  # this work tree's derived cache (in its git dir), rebuilt from the files
    if cache.is_dir() and not cache.is_symlink():
        shutil.rmtree(cache, ignore_errors=True)


def _key(problem: dict[str, Any]) -> tuple[str, str, str]:
    return problem["kind"], problem["path"], problem["message"]


def doctor(app: App, do_fix: bool) -> int:
    repo = app.repo
    repo.require_init()
    problems = diagnose(repo)
    if do_fix and any(p["kind"] in FIXABLE for p in problems):
        fix(repo, problems, app.out.warn)
        # fixed is what a second look no longer finds (a repair can also clear a follow-on
        # problem, such as the schema error of a line restored from HEAD)
        repo.forget_all()
        still = diagnose(repo)
        left = {_key(p) for p in still}
        for p in problems:
            p["fixed"] = _key(p) not in left
        seen = {_key(p) for p in problems}
        problems += [p for p in still if _key(p) not in seen]
    remaining = [p for p in problems if not p["fixed"] and p["kind"] not in INFO]

    def text() -> str:
        if not problems:
            return "ok: no problems found"
        lines = []
        for p in problems:
            mark = "fixed" if p["fixed"] else "info" if p["kind"] in INFO else {"new_rule": "new rule", "untrusted": "new rule"}.get(
                p["kind"], "problem")
            lines.append(shown(f"[{mark}] {p['path']}: {p['message']}" if p["path"] else f"[{mark}] {p['message']}"))
        if remaining and not do_fix and any(p["kind"] in FIXABLE for p in remaining):
            lines.append("run `flowgit doctor --fix` to repair what can be repaired")
        return "\n".join(lines)
    app.out.result({"ok": not remaining, "problems": problems}, text)
    return ExitCode.USER if remaining else 0


def migrate(app: App, dry_run: bool) -> int:
    from flowgit.ops.migrate import migrate as run_migration
    from flowgit.store.repo import actor_for

    repo = app.repo
    repo.require_init()
    result = run_migration(repo, actor_for(repo, None), dry_run)
    if result.get("reason"):
        text = f"nothing to do: {result['reason']}"
    elif dry_run:
        text = (f"would move {result['logs']} event log(s) of {len(result['plans'])} plan(s) to "
                f"{result['state_branch']} and set version: 2 (run without --dry-run to do it)")
    else:
        text = (f"moved {result['logs']} event log(s) to {result['state_branch']} "
                f"({result['state_commit'][:10]}); the branch now has format 2 ({result['code_commit'][:10]}). "
                f"Push both: git push origin HEAD {result['state_branch']}")
    app.out.result(result, text)
    return 0
