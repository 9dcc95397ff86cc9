"""Git-native review: semantic plan diffs, plan history, and rollback of a definition."""
from __future__ import annotations

from typing import Any

from flowgit import git
from flowgit.cli.app import App
from flowgit.core.events import PLAN_LOG
from flowgit.errors import Dirty, ExitCode, FlowError, InvalidFile, NoCommits, NotFound
from flowgit.formats import commanddiff, yamlio
from flowgit.formats.plandiff import diff_plan, render_markdown, render_text
from flowgit.ids import check_id
from flowgit.ops.review import compare, completed_in
from flowgit.store.repo import actor_for
from flowgit.store.snapshot import Memo, at_rev, work_tree
from flowgit.store.writing import commit_message


def _commit(app: App, rev: str, what: str = "revision", then: str = "see `git log`") -> str:
    """The full id of the commit a revision the user typed names, or a one-line refusal."""
    sha = git.resolve_commit(app.repo.root, rev, what)
    if sha is None:
        raise NotFound(f"unknown revision {rev!r}: give a commit, branch or tag ({then})")
    return sha


def _default_base(app: App) -> str:
    root = app.repo.root
    if git.head(root) is None:
        raise NoCommits("the repository has no commits yet: nothing to compare")
    branch = git.default_branch(root)
    if branch is None:
        return "HEAD"
    return git.merge_base(root, "HEAD", branch) or "HEAD"


def diff(app: App, rev_a: str | None, rev_b: str | None, plan_id: str | None, fmt: str,
         fail_on_commands: bool = False) -> int:
    import gc

    gc.disable()  # two big plans parsed and compared: nothing of it is a cycle (issue 17)
    try:
        return _diff(app, rev_a, rev_b, plan_id, fmt, fail_on_commands)
    finally:
        gc.enable()


def _diff(app: App, rev_a: str | None, rev_b: str | None, plan_id: str | None, fmt: str,
          fail_on_commands: bool) -> int:
    repo = app.repo
    if plan_id:
        check_id(plan_id, "plan id")
    base = _commit(app, rev_a) if rev_a else _default_base(app)
    commit_b = _commit(app, rev_b) if rev_b else None
    from flowgit.store.kept import kept

    memo = Memo(kept=kept(repo))
    a = at_rev(repo.root, base, plan_id, memo, label=rev_a or base)
    b = at_rev(repo.root, commit_b, plan_id, memo, label=rev_b) if commit_b else work_tree(repo.root, plan_id, memo)
    if plan_id and plan_id not in a.plans and plan_id not in b.plans:
        raise NotFound(f"plan {plan_id} exists neither at {a.label} nor at {b.label}: see `flowgit plan list`")
    for snap in (a, b):
        broken = [ps.invalid for pid, ps in sorted(snap.plans.items())
                  if ps.invalid and (plan_id is None or pid == plan_id)] + snap.broken
        if broken:
            raise InvalidFile(f"{broken[0]}: a file that does not parse cannot be compared; fix it "
                              "(or compare other revisions)")
    result = compare(a, b, plan_id)
    tip = commit_b or git.head(repo.root)
    if repo.state_store is not None and tip and base:
        result["tasks_completed"] = completed_in(repo, base, tip, plan_id)
    if fmt == "json" or app.out.as_json:
        app.out.as_json = True
        app.out.result(result)
    elif fmt == "markdown":
        md = render_markdown(result)
        if result.get("tasks_completed"):
            md += "\n\n**Tasks worked on in this change**\n\n" + "".join(
                f"- `{t['plan']}/{t['task']}`: {', '.join(t['events'])}\n" for t in result["tasks_completed"])
        head, sep, rest = md.partition("\n\n")  # the commands come first, under the title
        app.out.result(result, head + sep + commanddiff.render_markdown(result) + rest)
    else:
        text = render_text(result)
        done = [f"{t['plan']}/{t['task']} ({', '.join(e.split('.', 1)[1] for e in t['events'])})"
                for t in result.get("tasks_completed") or []]
        if done:
            text = (text + "\n" if text.strip() != "no plan changes" else "") + "tasks worked on in this change: " + "; ".join(done)
        if result["commands_added"] or result["commands_changed"]:
            text = commanddiff.render_text(result) + (text if text.strip() != "no plan changes" else "")
        app.out.result(result, f"plan diff {a.label} .. {b.label}\n" + (text or "no plan changes"))
    if fail_on_commands and (result["commands_added"] or result["commands_changed"]):
        n = len(result["commands_added"]) + len(result["commands_changed"])
        first = (result["commands_added"] or result["commands_changed"])[0]
        app.out.err.write(f"flowgit: error: {a.label} .. {b.label} adds or changes {n} command(s) "
                          f"(first: {first['file']} {first['key']}): review them; a maintainer "
                          "approves the change (a label in CI), each clone trusts them with `flowgit trust`\n")
        return int(ExitCode.USER)
    return 0


def _one_line(result: dict[str, Any]) -> str:
    if result.get("status") == "added":
        return f"created with {len(result.get('tasks_added', []))} task(s)"
    parts = []
    for key, sign in (("tasks_added", "+"), ("tasks_removed", "-")):
        items = result.get(key) or []
        if items:
            parts.append(f"{sign}{len(items)} task(s) ({', '.join(t['id'] for t in items[:4])})")
    mods = result.get("tasks_modified") or []
    if mods:
        parts.append("~" + ", ".join(f"{t['id']} ({', '.join(t['fields'])})" for t in mods[:4]))
    for key in ("checkpoints_added", "checkpoints_removed", "checkpoints_modified"):
        if result.get(key):
            parts.append(f"{key.replace('_', ' ')}: {', '.join(c['id'] for c in result[key])}")
    if result.get("fields_changed"):
        parts.append("changed " + ", ".join(result["fields_changed"]))
    return "; ".join(parts) or "no definition change"


def history(app: App, plan_id: str) -> int:
    """Versions of plan.yaml from git log (GitPython, behind the git door: no hot path)."""
    repo = app.repo
    check_id(plan_id, "plan id")
    rel = f".flow/plans/{plan_id}/plan.yaml"
    commits = git.file_history(repo.root, rel)
    if not commits:
        raise NotFound(f"plan {plan_id} has no history in git: is {rel} committed?")
    rows: list[dict[str, Any]] = []
    previous: dict[str, Any] | None = None
    for commit in reversed(commits):
        data = git.show_blob(repo.root, git.check_full_id(commit.commit, rel), rel)
        raw: Any = None
        summary = "deleted"
        if data is not None:
            try:
                raw = yamlio.loads(yamlio.decode(data, rel), rel)
                summary = "" if isinstance(raw, dict) else "invalid: not a mapping of plan keys"
            except FlowError as exc:
                summary = f"invalid ({exc.message})"
        if not isinstance(raw, dict):
            raw = None
        if raw is not None:
            summary = _one_line(diff_plan(previous, raw, plan_id=plan_id))
        rows.append({"commit": commit.commit, "author": commit.author, "date": commit.date,
                     "subject": commit.subject, "summary": summary,
                     "tasks": len(raw.get("tasks") or []) if raw is not None else 0})
        if raw is not None or data is None:
            previous = raw
    rows.reverse()
    text = "\n".join(f"{r['commit'][:10]}  {r['date'][:19]}  {r['tasks']:>4} tasks  {r['summary']}" for r in rows)
    app.out.result({"plan": plan_id, "versions": rows}, text)
    return 0


def rollback(app: App, plan_id: str, rev: str) -> int:
    """Restore the plan's definition (plan.yaml, and spec.yaml with it) as it was at REV, as
    one new commit. Event logs are never touched. The spec goes back with the plan: a spec
    left from later could name tasks the restored plan does not have (an invalid repository);
    a spec that did not exist at REV is removed (it stays in git history)."""
    from flowgit.store.planedit import check_plan_text

    repo = app.repo
    check_id(plan_id, "plan id")
    rel = f".flow/plans/{plan_id}/plan.yaml"
    spec_rel = f".flow/plans/{plan_id}/spec.yaml"
    commit = _commit(app, rev, "revision for --to", f"see `flowgit history {plan_id}`")
    data = git.show_blob(repo.root, commit, rel)
    if data is None:
        raise NotFound(f"{rel} does not exist at {rev!r}: see `flowgit history {plan_id}`")
    spec_data = git.show_blob(repo.root, commit, spec_rel)
    text = yamlio.decode(data, f"{rev}:{rel}")
    plan = check_plan_text(repo, text, f"{rev}:{rel}", plan_id)
    actor = actor_for(repo, None)
    repo.refuse_during_git_operation()
    with repo.writing(plan_id) as w:
        path = repo.plan_file(plan_id)
        spec_path = repo.spec_file(plan_id)
        dirty = [p for p in git.changed_paths(repo.root, f".flow/plans/{plan_id}") if p in (rel, spec_rel)]
        if dirty:
            raise Dirty(f"{dirty[0]} has uncommitted changes: commit or stash them before "
                            f"`flowgit rollback {plan_id}`")
        current_spec = spec_path.read_bytes() if spec_path.is_file() else None
        if path.exists() and path.read_bytes() == data and current_spec == spec_data:
            app.out.result({"plan": plan_id, "rev": rev, "commit": None, "orphans": [], "spec": "unchanged"},
                           f"plan {plan_id} already matches {rev}: nothing to do")
            return 0
        known = set(plan.node_ids())
        orphans = [s for s in repo.log_streams(plan_id) if s != PLAN_LOG and s not in known]
        full = git.short_id(repo.root, commit)
        w.message = commit_message(plan_id, None, f"rollback to {full}", actor)
        w.replace(path, data)
        if current_spec == spec_data:
            spec_change = "unchanged"
        elif spec_data is not None:
            spec_change = "restored"
            w.replace(spec_path, spec_data)
        else:
            spec_change = "removed"
            w.remove(spec_path)
    sha = w.sha
    for task in orphans:
        app.out.warn(f"task {plan_id}/{task} is not in the restored plan but has events (kept in its log)")
    extra = {"restored": " (spec restored too)", "removed": " (spec removed: it did not exist then)"}
    app.out.result({"plan": plan_id, "rev": rev, "commit": sha, "orphans": orphans, "spec": spec_change},
                   f"restored {plan_id} from {full} (events kept){extra.get(spec_change, '')}")
    return 0
